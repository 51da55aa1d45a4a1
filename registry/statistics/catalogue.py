"""The fixed catalogue of aggregate tables the statistics register publishes.

Every table is a cube: the geography (the LAs of the release, with the region — or England — as the
margin) by one or two breakdowns, counting one measure:

- ``looked-after-31-march``: children looked after at 31 March (an episode still open at the end of the
  collection year), each child once;
- ``started-in-year``: children who started to be looked after in the year (RNE ``S``), counted once, on
  their first start, as the DfE does;
- ``ceased-in-year``: children who ceased to be looked after in the year (DEC in the year, REC other than
  ``X1``), counted once, on their last ceasing.

Agreed series of short breaks (V3/V4) are left out of all three, as in the DfE's tables. Every breakdown
has a closed category list, so an empty cell is a true zero and every cube is complete. Age bands and
placement groups are the regional demand model's (domain README). Categories that exist only from some
collection year (sex "unknown", from 2024-25) are left out of earlier years' cubes rather than shown as
zeros that could not have been anything else.

The tables of one release share margins — every "looked after at 31 March" table carries the same LA
totals — and are protected together by :mod:`registry.statistics.disclosure`.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from itertools import product
from typing import Any

from registry.core.domain import local_authorities, regions
from registry.statistics.disclosure import Cube, Dimension, ProtectedTable, Symbol, percentage, protect, render
from registry.statistics.ssda903 import Episode, collection_year_bounds

GEOGRAPHY = "area"
ENGLAND = "E92000001"
TOTAL = "Total"

LOOKED_AFTER = "looked-after-31-march"
STARTED = "started-in-year"
CEASED = "ceased-in-year"
MEASURES = (LOOKED_AFTER, STARTED, CEASED)

AGE_BANDS = ("under 1", "1 to 4", "5 to 9", "10 to 15", "16 and over")
_AGE_BAND_STARTS = (0, 1, 5, 10, 16)
PLACEMENT_GROUP_NAMES = ("fostering", "residential", "supported", "other")
SEXES = {"F": "female", "M": "male", "U": "unknown"}
LEGAL_STATUS_GROUPS = (
    dict.fromkeys(("C1", "C2"), "care order")
    | dict.fromkeys(("D1", "E1"), "placement order")
    | {"V2": "voluntary agreement (s20)"}
    | dict.fromkeys(("L1", "L2", "L3"), "detained for child protection")
    | dict.fromkeys(("J1", "J2", "J3"), "youth justice")
)
NEEDS = {
    "N1": "abuse or neglect",
    "N2": "child's disability",
    "N3": "parental illness or disability",
    "N4": "family in acute stress",
    "N5": "family dysfunction",
    "N6": "socially unacceptable behaviour",
    "N7": "low income",
    "N8": "absent parenting",
}
CEASED_GROUPS = (
    dict.fromkeys(("E4A", "E4B"), "returned home")
    | dict.fromkeys(("E11", "E12"), "adopted")
    | dict.fromkeys(("E45", "E46", "E47", "E48"), "special guardianship order")
    | {"E41": "child arrangements order"}
    | dict.fromkeys(("E5", "E6"), "independent living")
    | {"E17": "stayed with carers at 18 (staying put)", "E7": "transferred to adult social care"}
    | {"E9": "sentenced to custody"}
    | dict.fromkeys(("E13", "E14", "E15", "E16", "E2", "E3", "E8"), "other reason")
)
LOCATIONS = ("inside home LA", "outside home LA", "not recorded")
DISTANCES = ("20 miles or less", "over 20 miles", "not recorded")


def age_band(age: int) -> str:
    """The demand model's age band (lower bound inclusive) for an age in completed years."""
    if age < 0:
        raise ValueError("negative age")
    return next(band for band, start in zip(AGE_BANDS[::-1], _AGE_BAND_STARTS[::-1], strict=True) if age >= start)


def _distinct(values: Iterable[str]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(values))


def _recorded(flag: bool | None, labels: tuple[str, str, str]) -> str:
    return labels[2] if flag is None else labels[1] if flag else labels[0]


@dataclass(frozen=True)
class Breakdown:
    """A non-geographic dimension: its tidy-file column, closed categories and how an episode falls in one."""

    name: str
    title: str
    categories: tuple[str, ...]
    classify: Callable[[Episode], str]
    since: Mapping[str, int] = field(default_factory=dict)  # category -> first collection year

    def categories_in(self, year: int) -> tuple[str, ...]:
        """The categories that exist in that collection year."""
        return tuple(c for c in self.categories if self.since.get(c, 0) <= year)


PLACEMENT_GROUP = Breakdown("placement_group", "Placement group", PLACEMENT_GROUP_NAMES, lambda e: e.placement_group)
AGE_BAND = Breakdown("age_band", "Age at 31 March", AGE_BANDS, lambda e: age_band(e.age_at_31_march))
SEX = Breakdown("sex", "Sex", tuple(SEXES.values()), lambda e: SEXES[e.sex], since={"unknown": 2025})
LEGAL_STATUS = Breakdown(
    "legal_status", "Legal status", _distinct(LEGAL_STATUS_GROUPS.values()), lambda e: LEGAL_STATUS_GROUPS[e.ls]
)
NEED = Breakdown("category_of_need", "Category of need", tuple(NEEDS.values()), lambda e: NEEDS[e.cin])
UASC = Breakdown(
    "uasc", "Unaccompanied asylum-seeking child", ("UASC", "not UASC"), lambda e: "UASC" if e.uasc else "not UASC"
)
LOCATION = Breakdown(
    "location", "Placed inside or outside the home LA", LOCATIONS, lambda e: _recorded(e.outside_la, LOCATIONS)
)
DISTANCE = Breakdown("distance", "Distance from home", DISTANCES, lambda e: _recorded(e.at_distance, DISTANCES))
REASON_CEASED = Breakdown(
    "reason_ceased",
    "Reason ceased to be looked after",
    _distinct(CEASED_GROUPS.values()),
    lambda e: CEASED_GROUPS[e.rec or ""],
)


@dataclass(frozen=True)
class TableSpec:
    """One table of the catalogue."""

    name: str
    title: str
    measure: str
    breakdowns: tuple[Breakdown, ...]

    def dimensions(self, *, year: int, las: Collection[str], total: str | None) -> tuple[Dimension, ...]:
        """The cube's dimensions for a release: the geography, then the breakdowns."""
        geography = Dimension(GEOGRAPHY, tuple(sorted(las)), total, rounded_total=True)
        return (geography, *(Dimension(b.name, b.categories_in(year), TOTAL) for b in self.breakdowns))

    def build(self, episodes: Iterable[Episode], *, year: int, las: Collection[str], total: str | None) -> Cube:
        """The complete cube of this table from pseudonymised episodes."""
        return self.cube(counted(episodes, year=year, las=las)[self.measure], year=year, las=las, total=total)

    def cube(self, counted_episodes: Iterable[Episode], *, year: int, las: Collection[str], total: str | None) -> Cube:
        """The cube from episodes :func:`counted` already chose, so one pass serves every table."""
        dimensions = self.dimensions(year=year, las=las, total=total)
        counts = dict.fromkeys(product(*(d.categories for d in dimensions)), 0)
        for e in counted_episodes:
            cell = (e.la, *(b.classify(e) for b in self.breakdowns))
            if cell not in counts:
                raise ValueError(f"table {self.name!r}: an episode falls outside the closed categories")
            counts[cell] += 1
        return Cube(self.name, self.measure, dimensions, counts)


TABLES: tuple[TableSpec, ...] = (
    TableSpec(
        "cla-placement-group", "Children looked after at 31 March by placement group", LOOKED_AFTER, (PLACEMENT_GROUP,)
    ),
    TableSpec("cla-age-band", "Children looked after at 31 March by age", LOOKED_AFTER, (AGE_BAND,)),
    TableSpec("cla-sex", "Children looked after at 31 March by sex", LOOKED_AFTER, (SEX,)),
    TableSpec("cla-legal-status", "Children looked after at 31 March by legal status", LOOKED_AFTER, (LEGAL_STATUS,)),
    TableSpec("cla-category-of-need", "Children looked after at 31 March by category of need", LOOKED_AFTER, (NEED,)),
    TableSpec(
        "cla-uasc", "Children looked after at 31 March: unaccompanied asylum-seeking children", LOOKED_AFTER, (UASC,)
    ),
    TableSpec(
        "cla-placement-location",
        "Children looked after at 31 March placed outside the home LA and more than 20 miles from home",
        LOOKED_AFTER,
        (LOCATION, DISTANCE),
    ),
    TableSpec(
        "started-category-of-need",
        "Children who started to be looked after in the year by category of need at start",
        STARTED,
        (NEED,),
    ),
    TableSpec(
        "ceased-reason", "Children who ceased to be looked after in the year by reason", CEASED, (REASON_CEASED,)
    ),
)


def table(name: str) -> TableSpec:
    """The catalogue entry of that name."""
    for spec in TABLES:
        if spec.name == name:
            return spec
    raise KeyError(name)


def counted(episodes: Iterable[Episode], *, year: int, las: Collection[str]) -> dict[str, list[Episode]]:
    """For each measure, the one episode each child is counted on (see the module docstring)."""
    start, end = collection_year_bounds(year)
    found: dict[str, dict[tuple[str, str], Episode]] = {m: {} for m in MEASURES}
    cla, started, ceased = found[LOOKED_AFTER], found[STARTED], found[CEASED]
    for e in episodes:
        if e.year != year or e.la not in las:
            raise ValueError("an episode from another collection year or LA was passed to this release")
        if e.short_break:
            continue
        key = (e.la, e.child)
        if e.dec is None:
            if key not in cla or e.decom > cla[key].decom:
                cla[key] = e
        elif start <= e.dec <= end and e.rec != "X1":
            previous = ceased.get(key)
            if previous is None or previous.dec is None or e.dec >= previous.dec:
                ceased[key] = e
        if e.rne == "S" and start <= e.decom <= end and (key not in started or e.decom < started[key].decom):
            started[key] = e
    return {m: list(found[m].values()) for m in MEASURES}


def build_cubes(episodes: Iterable[Episode], *, year: int, las: Collection[str], total: str | None) -> list[Cube]:
    """Every catalogue table's cube, in catalogue order, from one pass over the episodes."""
    _check_geography(las, total)
    by_measure = counted(episodes, year=year, las=las)
    return [spec.cube(by_measure[spec.measure], year=year, las=las, total=total) for spec in TABLES]


def publish(
    episodes: Iterable[Episode],
    *,
    year: int,
    las: Collection[str],
    total: str | None,
    missing: Sequence[str] = (),
    min_cell_size: int | None = None,
) -> dict[str, list[dict[str, str | int]]]:
    """The disclosure-controlled release: tidy rows per table name.

    ``las`` are the LAs whose data the node holds; ``missing`` are LAs of the area that sent none. Their
    rows are ``x``, and so are the area totals, which would otherwise silently leave them out.
    """
    _check_geography([*las, *missing], total)
    if set(las) & set(missing):
        raise ValueError("an LA cannot be both present and missing")
    cubes = build_cubes(episodes, year=year, las=las, total=None if missing else total)
    release = protect(cubes, min_cell_size=min_cell_size)
    return {
        spec.name: tidy_rows(protected, spec, year=year, missing=missing, missing_total=total if missing else None)
        for spec, protected in zip(TABLES, release.tables, strict=True)
    }


def tidy_rows(
    protected: ProtectedTable,
    spec: TableSpec,
    *,
    year: int,
    missing: Sequence[str] = (),
    missing_total: str | None = None,
) -> list[dict[str, str | int]]:
    """One row per published figure, with its share of the area's total; unavailable areas as ``x``."""
    cube, figures = protected.cube, protected.figures
    names = [b.name for b in spec.breakdowns]
    area_total = (TOTAL,) * len(names)
    rows = []
    for coords in cube.coordinates():
        figure = figures[coords]
        share = percentage(figure, figures[(coords[0], *area_total)])
        rows.append(_row(year, coords[0], dict(zip(names, coords[1:], strict=True)), render(figure), render(share)))
    breakdown_labels = list(product(*(d.labels for d in cube.dimensions[1:])))
    for area in (*sorted(missing), *([missing_total] if missing_total else [])):
        for labels in breakdown_labels:
            x = Symbol.unavailable.value
            rows.append(_row(year, area, dict(zip(names, labels, strict=True)), x, x))
    return rows


def _row(year: int, area: str, breakdown: dict[str, str], number: str, percent: str) -> dict[str, str | int]:
    return {
        "year": year,
        "geographic_level": _level(area),
        "area_code": area,
        "area_name": _area_name(area),
        **breakdown,
        "number": number,
        "percent": percent,
    }


def _level(area: str) -> str:
    return "National" if area == ENGLAND else "Regional" if area.startswith("E12") else "Local authority"


def _area_name(area: str) -> str:
    if area == ENGLAND:
        return "England"
    return regions()[area] if area.startswith("E12") else local_authorities()[area].name


def _check_geography(las: Collection[str], total: str | None) -> None:
    known = local_authorities()
    if not las or any(la not in known for la in las):
        raise ValueError("a release needs at least one LA, each an English LA's ONS code")
    if total is not None and total != ENGLAND:
        if total not in regions() or not total.startswith("E12"):
            raise ValueError("the area total must be an English region (E12...) or England (E92000001)")
        if any(known[la].region_code != total for la in las):
            raise ValueError("every LA of a regional release must be in that region")


def row_schema(spec: TableSpec) -> dict[str, Any]:
    """JSON Schema (draft 2020-12) of one tidy row of the table, for any collection year."""
    symbol = "|".join(s.value for s in Symbol if s is not Symbol.not_applicable)
    properties: dict[str, Any] = {
        "year": {"type": "integer", "minimum": 2000, "description": "collection year ending 31 March"},
        "geographic_level": {"enum": ["Local authority", "Regional", "National"]},
        "area_code": {"type": "string", "pattern": "^E[0-9]{8}$"},
        "area_name": {"type": "string", "minLength": 1},
    }
    for b in spec.breakdowns:
        properties[b.name] = {"title": b.title, "enum": [*b.categories, TOTAL]}
    properties["number"] = {"type": "string", "pattern": f"^(0|[1-9][0-9]*|{symbol})$"}
    properties["percent"] = {"type": "string", "pattern": f"^(0|[1-9][0-9]*|{symbol}|z)$"}
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": f"urn:rcc-registry:statistics:{spec.name}:row",
        "title": spec.title,
        "description": f"One figure of the table; measure {spec.measure}; symbols c, z, x, low as GSS/DfE.",
        "type": "object",
        "properties": properties,
        "required": list(properties),
        "additionalProperties": False,
    }
