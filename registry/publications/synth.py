"""Synthetic publications for a region: a fee cap, a placement protocol and a framework, labelled synthetic.

No RCC has published fee caps, so every figure here is invented — but in line with public cost facts:
a children's home place averaged about £6,100 a week in 2023-24 (quoted averages near £5,500), independent
fostering £800-1,500, LA fostering £400-800, supported accommodation £1,200-3,500, residential special
schools £3,000-7,000. Caps scale by region (London and the South East highest, the North East lowest) with
a seeded jitter of a few per cent, rounded to £5. Framework rate cards sit mostly under the cap, a few above
it, so the fee-cap check has something to say. Protocol duties follow the Care Planning, Placement and Case
Review (England) Regulations 2010 (reg 11 distance placements, reg 13 notification) and the Children's Homes
(England) Regulations 2015 (reg 41); regions differ in how many working days they allow, within the statute.

The same region, owner, seed and date always give the same documents, so a demo federation is repeatable.
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any

from registry.core.domain import english_regions, las_in_region
from registry.core.signing import canonical, sha256_hex
from registry.publications.kinds import Kind

# Base weekly caps (England, standard need and up), before the regional factor.
BASE_CAPS: dict[str, dict[str, int]] = {
    "childrens-home": {"standard": 5400, "enhanced": 6200, "complex": 7400, "specialist": 9500},
    "secure-childrens-home": {"standard": 8500, "enhanced": 9500, "complex": 11000, "specialist": 13000},
    "independent-fostering-agency": {"standard": 950, "enhanced": 1150, "complex": 1400, "specialist": 1750},
    "local-authority-fostering": {"standard": 450, "enhanced": 600, "complex": 750, "specialist": 900},
    "supported-accommodation-category-1": {"standard": 2400, "enhanced": 2900, "complex": 3400},
    "supported-accommodation-category-2": {"standard": 1600, "enhanced": 2000, "complex": 2500},
    "supported-accommodation-category-3": {"standard": 1400, "enhanced": 1700},
    "supported-accommodation-category-4": {"standard": 1200, "enhanced": 1400},
    "residential-special-school": {"standard": 4500, "enhanced": 5500, "complex": 6800},
    "residential-family-centre": {"standard": 3800, "enhanced": 4600},
}

# London and the South East cost most (as the foster carer minimum allowance bands also show).
REGION_FACTOR: dict[str, float] = {
    "E12000001": 0.92,
    "E12000002": 0.95,
    "E12000003": 0.94,
    "E12000004": 0.96,
    "E12000005": 0.97,
    "E12000006": 1.04,
    "E12000007": 1.15,
    "E12000008": 1.08,
    "E12000009": 1.00,
}

_LOTS: list[tuple[str, list[str], list[str], tuple[int, int]]] = [
    ("Children's homes", ["childrens-home"], ["standard", "enhanced", "complex"], (8, 17)),
    (
        "Independent fostering",
        ["independent-fostering-agency"],
        ["standard", "enhanced", "complex", "specialist"],
        (0, 17),
    ),
    (
        "Supported accommodation for 16 and 17 year olds",
        ["supported-accommodation-category-1", "supported-accommodation-category-2"],
        ["standard", "enhanced"],
        (16, 17),
    ),
    ("Residential special schools", ["residential-special-school"], ["enhanced", "complex"], (8, 17)),
]
_NAMES = ["Oakwood", "Riverside", "Meadowbank", "Hillcrest", "Beacon", "Harbour", "Willow", "Northgate", "Brookfield"]
_NAMES += ["Kestrel", "Lantern", "Orchard", "Heathside", "Larkspur", "Millbrook", "Ashdown", "Fernlea", "Calder"]
_TRADES = ["Care", "Children's Services", "Homes", "Futures", "Family Placements", "Young People's Services"]
_SUFFIXES = ["Ltd", "CIC", "Group Ltd"]

_LA_CODE = re.compile(r"E(06|07|08|09|10)[0-9]{6}")
CARE_PLANNING = "Care Planning, Placement and Case Review (England) Regulations 2010"
CHILDRENS_HOMES = "Children's Homes (England) Regulations 2015"


@dataclass(frozen=True)
class SyntheticPublication:
    """One generated document and the id to publish it under."""

    kind: Kind
    id: str
    document: dict[str, Any]


def default_owner(region_code: str) -> str:
    """A node id for a region's RCC: ``rcc-`` and the region's name (``rcc-south-east``)."""
    name = english_regions()[region_code]
    return "rcc-" + re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")


def financial_year(on: date) -> tuple[date, date]:
    """The English public-sector financial year (1 April - 31 March) containing ``on``."""
    start = date(on.year if on.month >= 4 else on.year - 1, 4, 1)
    return start, date(start.year + 1, 3, 31)


def synth_publications(
    region_code: str, *, owner: str, on: date, seed: int = 1, la_codes: list[str] | None = None
) -> list[SyntheticPublication]:
    """A fee cap, a placement protocol citing it, and a framework, in the order they must be published."""
    if region_code not in english_regions():
        raise ValueError(f"{region_code!r} is not an English region code (E12000001-E12000009)")
    # The LA list has a few combined rows ("E06000063 / E06000064"): documents take single codes only.
    region_las = [la.ons_code for la in las_in_region(region_code) if _LA_CODE.fullmatch(la.ons_code)]
    las = sorted(la_codes) if la_codes else region_las
    unknown = sorted(set(las) - set(region_las))
    if unknown:
        raise ValueError(f"not local authorities of {region_code}: {', '.join(unknown)}")
    rng = random.Random(f"{region_code}:{owner}:{seed}:{on.isoformat()}")  # noqa: S311 - demo data, not secrets
    fee_cap = _fee_cap(rng, region_code, owner, on, las if la_codes else None)
    fee_cap_id = f"{owner}-fee-caps"
    protocol = _protocol(rng, region_code, owner, on, las)
    protocol["fee_cap"] = {"id": fee_cap_id, "version": 1, "sha256": sha256_hex(canonical(fee_cap))}
    framework = _framework(rng, region_code, owner, on, fee_cap, las if la_codes else None)
    return [
        SyntheticPublication(Kind.fee_cap, fee_cap_id, fee_cap),
        SyntheticPublication(Kind.placement_protocol, f"{owner}-placement-protocol", protocol),
        SyntheticPublication(Kind.framework, f"{owner}-framework", framework),
    ]


def _round5(amount: float) -> int:
    return int(round(amount / 5) * 5)


def _fy_label(start: date) -> str:
    return f"{start.year}-{str(start.year + 1)[2:]}"


def _fee_cap(rng: random.Random, region_code: str, owner: str, on: date, la_codes: list[str] | None) -> dict[str, Any]:
    start, end = financial_year(on)
    factor = REGION_FACTOR[region_code]
    caps = [
        {
            "setting_type": setting,
            "need_level": need,
            "max_weekly_fee": _round5(base * factor * rng.uniform(0.96, 1.04)),
        }
        for setting, levels in BASE_CAPS.items()
        for need, base in levels.items()
    ]
    covers: dict[str, Any] = {"region_code": region_code}
    if la_codes:
        covers["la_codes"] = la_codes
    return {
        "title": f"{english_regions()[region_code]} fee caps {_fy_label(start)} (synthetic)",
        "owner": owner,
        "covers": covers,
        "effective_from": start.isoformat(),
        "effective_to": end.isoformat(),
        "currency": "GBP",
        "caps": caps,
        "uplift": {
            "index": rng.choice(["cpi", "cpih", "national-living-wage"]),
            "applies_on": date(end.year, 4, 1).isoformat(),
        },
        "exceptions": {
            "process": (
                "A placement above the cap needs a written case to the regional commissioning panel within "
                f"{rng.choice([1, 2, 3])} working days of the placement, with the reasons no capped placement "
                "would meet the child's needs. Synthetic demonstration text."
            ),
            "approver": "Regional commissioning panel",
            "contact": f"commissioning@{owner}.example.org",
        },
        "synthetic": True,
    }


def _timing(when: str, days: int) -> dict[str, Any]:
    return {"when": when, "working_days": days}


def _protocol(rng: random.Random, region_code: str, owner: str, on: date, las: list[str]) -> dict[str, Any]:
    start, _ = financial_year(on)
    before = rng.choice([0, 0, 2, 5])
    duties = [
        {
            "notify": "host-authority",
            "duty_holder": "placing-authority",
            "information": "Written notice of the placement with the placement plan summary and the child's needs.",
            "timing": _timing("before-placement", before),
            "emergency_timing": _timing("after-placement", rng.choice([1, 3, 5])),
            "regulations": [f"{CARE_PLANNING}, reg 13(4)"],
        },
        {
            "notify": "virtual-school",
            "duty_holder": "placing-authority",
            "information": "Notice to the host virtual school head so a school place follows the child.",
            "timing": _timing("after-placement", rng.choice([1, 3, 5])),
            "regulations": [f"{CARE_PLANNING}, reg 13"],
        },
        {
            "notify": "host-health",
            "duty_holder": "placing-authority",
            "information": "Notice to the host integrated care board and the child's GP practice.",
            "timing": _timing("after-placement", rng.choice([5, 5, 10])),
            "regulations": [f"{CARE_PLANNING}, reg 13"],
        },
        {
            "notify": "host-authority",
            "duty_holder": "provider",
            "information": "Admission and discharge of every child, by the home.",
            "timing": _timing("after-placement", rng.choice([1, 2])),
            "regulations": [f"{CHILDRENS_HOMES}, reg 41"],
        },
    ]
    if rng.random() < 0.5:
        duties.append(
            {
                "notify": "youth-justice-service",
                "duty_holder": "placing-authority",
                "information": "Notice to the host youth justice service where the child is open to one.",
                "timing": _timing("after-placement", rng.choice([2, 5])),
                "regulations": [f"{CARE_PLANNING}, reg 13"],
            }
        )
    return {
        "title": f"{english_regions()[region_code]} protocol for placements into another authority's area (synthetic)",
        "owner": owner,
        "parties": {"nodes": [owner], "las": las},
        "scope": {"placements": ["within-region", "across-regions"]},
        "notification_duties": duties,
        "distance_placements": {
            "approval_by": "Director of Children's Services",
            "consult_host_authority": True,
            "definition": "A placement neither in the home local authority nor in an authority adjoining it.",
            "regulations": [f"{CARE_PLANNING}, reg 11"],
        },
        "dispute_resolution": {
            "steps": ["Heads of service", "Assistant directors", "Directors of children's services"],
            "working_days_per_step": rng.choice([5, 10, 15]),
        },
        "effective_from": start.isoformat(),
        "synthetic": True,
    }


def _urn(rng: random.Random, newer: bool) -> str:
    return f"{rng.randrange(1_000_000, 10_000_000)}" if newer else f"SC{rng.randrange(100_000, 1_000_000)}"


def _framework(
    rng: random.Random, region_code: str, owner: str, on: date, fee_cap: dict[str, Any], la_codes: list[str] | None
) -> dict[str, Any]:
    start, _ = financial_year(on)
    end = date(start.year + 4, 3, 31)
    caps = {(c["setting_type"], c["need_level"]): c["max_weekly_fee"] for c in fee_cap["caps"]}
    route = rng.choice(["framework", "dynamic-purchasing-system", "flexible-purchasing-system"])
    lots = []
    for number, (title, settings, needs, (low, high)) in enumerate(_LOTS, start=1):
        providers = []
        for _ in range(rng.randint(3, 6)):
            name = f"{rng.choice(_NAMES)} {rng.choice(_TRADES)} {rng.choice(_SUFFIXES)}"
            rates = [
                {
                    "setting_type": setting,
                    "need_level": need,
                    # Mostly under the cap; about one in eight above it (agreed by exception).
                    "weekly_fee": _round5(caps[(setting, need)] * rng.uniform(0.85, 1.03)),
                }
                for setting in settings
                for need in needs
            ]
            providers.append({"urn": _urn(rng, newer=rng.random() < 0.3), "name": name, "rate_card": rates})
        lots.append(
            {
                "number": number,
                "title": title,
                "setting_types": settings,
                "need_levels": needs,
                "age_bands": [{"min_age": low, "max_age": high}],
                "providers": providers,
            }
        )
    call_off: dict[str, Any] = {"las": la_codes} if la_codes else {"regions": [region_code]}
    document: dict[str, Any] = {
        "title": f"{english_regions()[region_code]} children's placements {route.replace('-', ' ')} (synthetic)",
        "owner": owner,
        "procurement_route": route,
        "lots": lots,
        "effective_from": start.isoformat(),
        "effective_to": end.isoformat(),
        "call_off": call_off,
        "synthetic": True,
    }
    if route != "framework":
        document["reopening_dates"] = [(start + timedelta(days=182 * i)).isoformat() for i in range(1, 5)]
    return document
