"""Public domain facts the node relies on: English local authorities, regions, their borders,
LA centres for distance ordering, and SSDA903 placement codes.

The CSV files beside this module are copies of public data (see SOURCES.md); they ship inside the
package so a node never needs anything outside its own installation. Loaded once, read-only.
Imports nothing from the product.
"""

from __future__ import annotations

import csv
import io
import math
from dataclasses import dataclass
from datetime import date, datetime
from functools import cache
from importlib import resources


@dataclass(frozen=True)
class LocalAuthority:
    """An upper-tier English LA. ONS codes change on boundary changes; the DfE code stays."""

    ons_code: str
    name: str
    region_code: str
    dfe_code: str
    live: bool
    valid_from: date | None
    valid_until: date | None


@dataclass(frozen=True)
class PlacementType:
    """An SSDA903 placement code with the collection years (year the collection ends) it is valid for."""

    code: str
    description: str
    setting_group: str
    first_year: int | None
    last_year: int | None

    def valid_in(self, collection_year: int) -> bool:
        """Whether the code may be used in the collection ending 31 March of ``collection_year``."""
        if self.first_year is not None and collection_year < self.first_year:
            return False
        return self.last_year is None or collection_year <= self.last_year


def _rows(name: str) -> list[dict[str, str]]:
    text = resources.files(__package__).joinpath(name).read_text(encoding="utf-8")
    return list(csv.DictReader(io.StringIO(text, newline="")))


def _date(text: str) -> date | None:
    return datetime.strptime(text, "%d/%m/%Y").date() if text else None


@cache
def local_authorities() -> dict[str, LocalAuthority]:
    """Every LA ever listed (live and terminated), keyed by ONS code."""
    return {
        r["new_la_code"]: LocalAuthority(
            ons_code=r["new_la_code"],
            name=r["la_name"],
            region_code=r["parent_geography_code"],
            dfe_code=r["old_la_code"],
            live=r["status"] == "live",
            valid_from=_date(r["date_of_operation"]),
            valid_until=_date(r["date_of_termination"]),
        )
        for r in _rows("las.csv")
    }


@cache
def regions() -> dict[str, str]:
    """The nine English regions (E12…) and Inner/Outer London (E13…): code → name."""
    return {r["region_code"]: r["region_name"] for r in _rows("regions.csv")}


def english_regions() -> dict[str, str]:
    """The nine E12 regions only: the units RCCs and nodes are organised by."""
    return {code: name for code, name in regions().items() if code.startswith("E12")}


@cache
def neighbours() -> dict[str, frozenset[str]]:
    """Regions sharing a land border, both ways: region code → neighbouring region codes."""
    out: dict[str, set[str]] = {code: set() for code in english_regions()}
    for r in _rows("region-adjacency.csv"):
        out.setdefault(r["region_code"], set()).add(r["neighbour_code"])
        out.setdefault(r["neighbour_code"], set()).add(r["region_code"])
    return {code: frozenset(ns) for code, ns in out.items()}


@cache
def centroids() -> dict[str, tuple[float, float]]:
    """Approximate (lat, lon) centre of each LA that has one, for ordering by distance only."""
    return {r["ons_code"]: (float(r["lat"]), float(r["lon"])) for r in _rows("la-centroids.csv")}


@cache
def placement_types() -> dict[str, PlacementType]:
    """SSDA903 placement codes keyed by code."""
    return {
        r["code"]: PlacementType(
            code=r["code"],
            description=r["description"],
            setting_group=r["setting_group"],
            first_year=int(r["first_year"]) if r["first_year"] else None,
            last_year=int(r["last_year"]) if r["last_year"] else None,
        )
        for r in _rows("placement-types.csv")
    }


def las_in_region(region_code: str, *, live_only: bool = True) -> list[LocalAuthority]:
    """The LAs of one region, sorted by name."""
    return sorted(
        (la for la in local_authorities().values() if la.region_code == region_code and (la.live or not live_only)),
        key=lambda la: la.name,
    )


EARTH_RADIUS_MILES = 3958.8


def distance_miles(la_a: str, la_b: str) -> float | None:
    """Great-circle distance between two LA centres, or None where either has no known centre."""
    points = centroids()
    if la_a not in points or la_b not in points:
        return None
    (lat1, lon1), (lat2, lon2) = points[la_a], points[la_b]
    p1, p2 = math.radians(lat1), math.radians(lat2)
    dp, dl = p2 - p1, math.radians(lon2 - lon1)
    h = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 2 * EARTH_RADIUS_MILES * math.asin(math.sqrt(h))
