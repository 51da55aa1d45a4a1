"""Synthetic SSDA903 episode files: seeded, deterministic, shaped like the real thing, about no one.

Used to try a node out and to test and benchmark the statistics register without real data. The shape
follows the DfE's published national figures, rounded: about 70% of children looked after at 31 March
in foster care, 16% in residential settings, 8% in supported accommodation; ages skewed to 10-17; 56%
boys; about 7% unaccompanied asylum-seeking children nationally, far more in entry authorities such as
Kent; about a third of children start, and a third cease, in the year; some move placement or legal
status (several episodes). Placement codes follow the collection year (H5/P2 until 2024-25, K3 from
2024-25 for 16-17 year olds only, Z1 split into Z11-Z14 from 2025-26); SEX is 1/2 or M/F/U by year.

Postcodes use the area ``ZZ``, which no real postcode has, so they can never point at a real address;
PL_LA and PL_DISTANCE are drawn from LA centres. Every file validates cleanly against
:mod:`registry.statistics.ssda903`.
"""

from __future__ import annotations

import csv
import os
import random
from bisect import bisect
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import date, timedelta
from itertools import accumulate

from registry.core.domain import distance_miles, local_authorities, placement_types
from registry.statistics.ssda903 import (
    OPTIONAL_COLUMNS,
    REQUIRED_COLUMNS,
    TEMPORARY_PLACEMENTS,
    URN_EXEMPT_PLACEMENTS,
    age_on,
    collection_year_bounds,
)

COLUMNS = (*REQUIRED_COLUMNS, *OPTIONAL_COLUMNS)
# Share of an LA's children looked after who are UASC: entry authorities (ports, airports) receive most.
ENTRY_AUTHORITIES = {"E10000016": 0.30, "E09000008": 0.18, "E09000017": 0.15, "E06000044": 0.12}
DEFAULT_UASC_SHARE = 0.05


class _Weights:
    """Choices and their weights, with the running totals :meth:`random.Random.choices` would add up per call.

    Drawing from it (:meth:`_Maker.pick`) takes the same one ``random()`` and the same bisection as
    ``choices(keys, weights)[0]``, so a seed gives the same file as before, at a fraction of the cost.
    """

    __slots__ = ("cumulative", "items", "keys", "last", "total")

    def __init__(self, items: Sequence[tuple[str, float]]) -> None:
        self.items = tuple(items)
        self.keys = [key for key, _ in self.items]
        self.cumulative = list(accumulate(weight for _, weight in self.items))
        self.total = self.cumulative[-1] + 0.0
        self.last = len(self.keys) - 1

    def __iter__(self) -> Iterator[tuple[str, float]]:
        return iter(self.items)


def _weights(spec: str) -> _Weights:
    """``"a:3 b:1"`` → choices a and b weighted 3 and 1: keeps the distribution tables readable."""
    return _Weights([(key, float(weight)) for key, _, weight in (item.partition(":") for item in spec.split())])


_AGES = _weights("0:5 1-4:13 5-9:16 10-15:36 16-17:25 18:5")
_UASC_AGES = _weights("14:5 15:15 16:35 17:35 18:10")
_ETHNIC = _weights(
    "WBRI:68 WOTH:4 WIRI:0.3 WIRT:0.2 WROM:1 MWBC:3.5 MWBA:0.8 MWAS:1 MOTH:2.5 AIND:1 APKN:1.5 ABAN:0.5 "
    "AOTH:1.5 BCRB:1.2 BAFR:3 BOTH:1.5 CHNE:0.2 OOTH:3 REFU:0.2 NOBT:1"
)
_UASC_ETHNIC = _weights("AOTH:30 BAFR:35 OOTH:20 BOTH:10 WOTH:5")
_NEED = _weights("N1:65 N2:3 N3:3 N4:7 N5:13 N6:1 N7:0.2 N8:7.8")
_LEGAL_STATUS = _weights("C1:30 C2:40 V2:24 E1:3 L1:1 L2:1 J1:0.6 J2:0.4")
_LEGAL_CHANGE = {"C1": "C2", "V2": "C1", "L1": "C1", "L2": "C1", "J2": "V2", "J1": "C1"}
_CHANGE = _weights("P:70 L:15 T:5 B:5 U:5")
_GROUP_BY_AGE: dict[str, _Weights] = {
    "under 1": _weights("fostering:85 other:15"),
    "1-9": _weights("fostering:89 residential:4 other:7"),
    "10-15": _weights("fostering:64 residential:31 other:5"),
    "16-17": _weights("fostering:31 residential:21 supported:45 other:3"),
    "uasc under 16": _weights("fostering:85 residential:10 other:5"),
    "uasc 16-17": _weights("fostering:35 residential:5 supported:55 other:5"),
}
_CODES: dict[str, _Weights] = {
    "fostering": _weights("U1:6 U2:0.5 U3:10 U4:28 U5:1 U6:54.5"),
    "residential": _weights("K2:85 S1:8 R1:5 P3:2"),
    "supported": _weights("K3:55 H5:32 P2:13"),
    "other under 10": _weights("P1:45 A3:5 A4:5 A5:10 A6:15 R3:5 Z1:5 Z11:2 Z12:2 Z13:1 T1:3 T2:2"),
    "other 10+": _weights("P1:50 K1:10 R2:5 R5:5 Z1:15 Z11:5 Z12:5 Z14:5 T0:2 T4:3"),
}
_PROVIDER: dict[str, _Weights] = {
    "fostering": _weights("PR1:60 PR4:30 PR5:10"),
    "residential": _weights("PR4:75 PR1:15 PR5:10"),
    "supported": _weights("PR4:60 PR1:25 PR5:15"),
    "other": _weights("PR1:40 PR2:10 PR3:20 PR4:25 PR5:5"),
}
_REASON_PLACE_CHANGE = _weights(
    "CARPL:20 CHILD:15 LAREQ:20 PLACE:15 CREQB:5 CREQO:5 CLOSE:3 ALLEG:2 STAND:5 APPRR:5 CUSTOD:1 OTHER:4"
)
_CEASED_AT_18 = _weights("E5:25 E6:5 E17:30 E8:20 E7:5 E4A:10 E13:5")
_CEASED_YOUNG = _weights("E11:30 E12:5 E45:8 E46:5 E47:5 E48:5 E4A:25 E4B:5 E41:7 E13:3 E8:2")
_CEASED = _weights(
    "E4A:30 E4B:15 E41:5 E45:3 E46:3 E47:2 E48:2 E5:4 E6:1 E13:5 E8:18 E3:3 E9:2 E14:2 E16:1 E2:0.2 E11:2 E7:1"
)
_CEASED_NOT_YOUTH = _Weights([(c, w) for c, w in _CEASED if c != "E14"])  # E14: youth justice legal statuses only
_CEASED_UASC = _weights("E15:15 E8:30 E5:20 E3:20 E16:5 E4A:10")
_CHANGES_IN_YEAR = _weights("0:60 1:25 2:10 3:5")
_INWARD_LETTERS = "ABDEFGHJLNPQRSTUWXYZ"


def write_episodes(path: str | os.PathLike[str], *, la: str, year: int, children: int, seed: int) -> int:
    """Write a synthetic episode file for one LA and collection year; returns the number of episode rows."""
    rows = 0
    with open(path, "w", encoding="utf-8", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(COLUMNS)
        for row in generate_rows(la=la, year=year, children=children, seed=seed):
            writer.writerow(row)
            rows += 1
    return rows


def generate_rows(*, la: str, year: int, children: int, seed: int) -> Iterator[list[str]]:
    """The rows :func:`write_episodes` writes (columns as ``COLUMNS``), child by child, in date order."""
    if la not in local_authorities():
        raise ValueError("unknown local authority code")
    if children < 0:
        raise ValueError("children cannot be negative")
    maker = _Maker(random.Random(f"rcc-synth/{la}/{year}/{seed}"), la, year)  # noqa: S311 - not for security
    for n in range(children):
        yield from maker.child(f"C{n:07d}")


@dataclass
class _Placement:
    place: str
    provider: str
    urn: str
    pl_la: str
    distance: float
    pl_post: str


class _Maker:
    """One LA-year's generator: the random stream and what stays fixed across children."""

    def __init__(self, rng: random.Random, la: str, year: int) -> None:
        self.rng, self.la, self.year = rng, la, year
        self.start, self.end = collection_year_bounds(year)
        valid = {code for code, p in placement_types().items() if p.valid_in(year)}
        self.codes = {group: _Weights([(c, w) for c, w in weights if c in valid]) for group, weights in _CODES.items()}
        las = local_authorities()
        live = sorted(code for code, a in las.items() if a.live)
        self.region_las = [c for c in live if las[c].region_code == las[la].region_code and c != la] or [la]
        self.far_las = [c for c in live if las[c].region_code != las[la].region_code]
        self.district_base = {code: 1 + n % 90 for n, code in enumerate(live)}
        self.urns = [f"SC{rng.randrange(100_000, 1_000_000)}" for _ in range(80)]
        self.uasc_share = ENTRY_AUTHORITIES.get(la, DEFAULT_UASC_SHARE)
        self.sex_codes = ("1", "2") if year <= 2024 else ("M", "F")

    def pick(self, weights: _Weights) -> str:
        return weights.keys[bisect(weights.cumulative, self.rng.random() * weights.total, 0, weights.last)]

    def day_between(self, lo: date, hi: date) -> date:
        return lo + timedelta(days=self.rng.randint(0, (hi - lo).days))

    def child(self, child_id: str) -> Iterator[list[str]]:
        rng = self.rng
        uasc = rng.random() < self.uasc_share
        age = self._age(uasc)
        dob = self.day_between(date(self.year - age - 1, 4, 1), date(self.year - age, 3, 31))
        adult = _add_years(dob, 18)
        last_day = min(self.end, adult - timedelta(days=1))  # an episode must start before 18
        started = dob >= self.start or rng.random() < (0.8 if uasc else 0.3)
        if started and max(dob, self.start) > last_day:
            started = False
        if started:
            period_start = self.day_between(max(dob, self.start), last_day)
        else:
            period_start = self.day_between(
                max(dob, self.start - timedelta(days=8 * 365)), self.start - timedelta(days=1)
            )
        ceased = age >= 18 or rng.random() < 0.28
        first_in_year = max(period_start, self.start)
        end: date | None = None
        if ceased:
            end = adult if age >= 18 and rng.random() < 0.7 else self.day_between(first_in_year, min(self.end, adult))
        first_decom, first_rne = period_start, "S"
        if not started and rng.random() < 0.4:
            first_decom, first_rne = self.day_between(period_start, self.start - timedelta(days=1)), self.pick(_CHANGE)
        span = ((end or self.end) - first_in_year).days
        changes = min(int(self.pick(_CHANGES_IN_YEAR)), max(span - 1, 0))
        days = sorted(rng.sample(range(1, span if end else span + 1), changes)) if changes else []
        decoms = [first_decom, *(first_in_year + timedelta(days=d) for d in days)]
        decs: list[date | None] = [*decoms[1:], end]

        sex = self.sex_codes[0] if rng.random() < (0.92 if uasc else 0.56) else self.sex_codes[1]
        if self.year >= 2025 and rng.random() < 0.002:
            sex = "U"
        ethnic = self.pick(_UASC_ETHNIC if uasc else _ETHNIC)
        need = "N8" if uasc and rng.random() < 0.9 else self.pick(_NEED)
        home = self._postcode(self.la)
        ls = ("V2" if rng.random() < 0.9 else "C2") if uasc else self._legal_status(age_on(dob, first_decom))
        placement = self._placement(age_on(dob, first_decom), uasc)
        rne = first_rne
        for n, (decom, dec) in enumerate(zip(decoms, decs, strict=True)):
            if n:
                rne = self.pick(_CHANGE)
                if rne in {"L", "B", "U"}:
                    if ls not in _LEGAL_CHANGE:
                        rne = "P"
                    else:
                        ls = _LEGAL_CHANGE[ls]
                if rne != "L":
                    placement = self._placement(age_on(dob, decom), uasc)
            rec = (
                "" if dec is None else "X1" if n < len(decoms) - 1 else self._reason_ceased(age_on(dob, dec), ls, uasc)
            )
            yield [
                child_id, sex, _dmy(dob), ethnic, "1" if uasc else "0",
                _dmy(decom), rne, ls, need, placement.place, placement.provider, _dmy(dec), rec,
                self.pick(_REASON_PLACE_CHANGE) if n and rne in {"P", "B", "T", "U"} else "",
                home, placement.pl_post, placement.urn, placement.pl_la, f"{placement.distance:.1f}",
            ]  # fmt: skip

    def _age(self, uasc: bool) -> int:
        band = self.pick(_UASC_AGES if uasc else _AGES)
        low, _, high = band.partition("-")
        return self.rng.randint(int(low), int(high or low))

    def _legal_status(self, age: int) -> str:
        ls = self.pick(_LEGAL_STATUS)
        if ls == "E1" and age >= 10:
            return "C2"
        return "C2" if ls.startswith("J") and age < 10 else ls

    def _placement(self, age: int, uasc: bool) -> _Placement:
        rng = self.rng
        key = "under 1" if age < 1 else "1-9" if age < 10 else "10-15" if age < 16 else "16-17"
        group = self.pick(_GROUP_BY_AGE[("uasc 16-17" if age >= 16 else "uasc under 16") if uasc else key])
        codes = self.codes[group if group != "other" else "other under 10" if age < 10 else "other 10+"]
        place = self.pick(codes)
        provider = "" if place in TEMPORARY_PLACEMENTS else "PR0" if place == "P1" else self.pick(_PROVIDER[group])
        urn = ("XXXXXXX" if rng.random() < 0.5 else "") if place in URN_EXEMPT_PLACEMENTS else rng.choice(self.urns)
        where = rng.random()
        if place == "P1" or where < 0.6:
            pl_la, distance = self.la, rng.uniform(0.3, 12.0) if rng.random() < 0.95 else rng.uniform(12.0, 30.0)
        else:
            pl_la = rng.choice(self.region_las if where < 0.89 else self.far_las)
            distance = (distance_miles(self.la, pl_la) or 25.0) * rng.uniform(0.6, 1.3)
        return _Placement(place, provider, urn, pl_la, distance, self._postcode(pl_la))

    def _reason_ceased(self, age: int, ls: str, uasc: bool) -> str:
        if age >= 18:
            return self.pick(_CEASED_AT_18)
        if uasc and age >= 16:
            return self.pick(_CEASED_UASC)
        if ls == "E1" or age < 5:
            return self.pick(_CEASED_YOUNG)
        return self.pick(_CEASED if ls.startswith("J") else _CEASED_NOT_YOUTH)

    def _postcode(self, la: str) -> str:
        rng = self.rng
        district = self.district_base.get(la, 90) + rng.randrange(4)  # ZZ1..ZZ93: valid districts
        return f"ZZ{district} {rng.randrange(10)}{rng.choice(_INWARD_LETTERS)}{rng.choice(_INWARD_LETTERS)}"


def _add_years(day: date, years: int) -> date:
    try:
        return day.replace(year=day.year + years)
    except ValueError:  # 29 February: the birthday falls on 1 March, as age_on() counts it
        return date(day.year + years, 3, 1)


def _dmy(day: date | None) -> str:
    return "" if day is None else day.strftime("%d/%m/%Y")
