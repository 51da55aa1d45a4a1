"""Synthetic capacity: plausible vacancies for a region's LAs and a national set of secure children's homes.

Seeded and deterministic: the same seed, region and clock give the same documents, byte for byte (the
random streams are seeded by strings, which Python hashes the same way in every process). Nothing here is
real: provider, setting and home names are made up from word lists and end in "(synthetic)", URNs are
Ofsted-shaped but invented, and no child appears anywhere. What is real is the geography (ONS LA codes,
plausible postcode districts) and the shape of the market, from the facts in ``registry/core/domain``:

* setting mix: children's homes ~40 %, independent fostering ~25 %, LA fostering ~12 %, supported
  accommodation ~12 % (16-17 only), residential special schools ~7 %, residential family centres ~4 %;
* weekly fees: children's homes £4,500-9,000, IFA £800-1,500, LA fostering £400-800, supported accommodation
  £1,200-3,500 (solo units dearest), residential special schools £3,000-7,000, family centres £3,000-6,000,
  higher within the range the more needs a setting supports;
* secure children's homes: 14 in England with 230 approved places between them, about 45 % contracted to the
  Youth Custody Service, a few beds free, ages 10-17, reports up to 30 hours old (so some are stale).

The national set of secure homes does not depend on the region asked for: each regional node takes the
homes whose LA is in its region, so together the nodes hold the whole set exactly once.
"""

from __future__ import annotations

import random
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlmodel import Session

from registry.capacity import synth_tables as tables
from registry.capacity.models import (
    LA_CODE_PATTERN,
    AgeRange,
    PublicationRef,
    VacancyBatch,
    VacancyDocument,
)
from registry.capacity.secure_models import (
    BedsBySex,
    SecureHomeCreate,
    SecureHomeDocument,
)
from registry.capacity.service import put_secure_home, put_vacancies
from registry.core import domain
from schemas.vocabulary import Need, SettingType, Sex

SYNTHETIC = "(synthetic)"
_LA_CODE = re.compile(LA_CODE_PATTERN)
VACANCIES_PER_LA = 25
SECURE_HOMES_BY_REGION = {
    "E12000001": 2,
    "E12000002": 2,
    "E12000003": 2,
    "E12000004": 2,
    "E12000005": 1,
    "E12000006": 1,
    "E12000007": 1,
    "E12000008": 2,
    "E12000009": 1,
}
SECURE_PLACES_TOTAL = 230
_BATCH = 1000


@dataclass(frozen=True)
class SyntheticCapacity:
    """One region's synthetic vacancies and the secure homes in it."""

    region_code: str
    seed: int
    generated_at: datetime
    vacancies: list[VacancyDocument]
    secure_homes: list[SecureHomeDocument]

    def document(self) -> dict[str, Any]:
        """The set as JSON, labelled synthetic (what ``rcc-node synth capacity --out`` writes)."""
        return {
            "synthetic": True,
            "note": "Synthetic data for trying rcc-registry out: no real child, provider or home.",
            "region_code": self.region_code,
            "seed": self.seed,
            "generated_at": self.generated_at.isoformat().replace("+00:00", "Z"),
            "vacancies": [v.document() for v in self.vacancies],
            "secure_homes": [h.document() for h in self.secure_homes],
        }


def region_las(region_code: str) -> list[domain.LocalAuthority]:
    """The live LAs of a region that have a proper ONS LA code (combined rows of the LA list are left out)."""
    return [la for la in domain.las_in_region(region_code) if _LA_CODE.match(la.ons_code)]


def _rng(seed: int, *parts: str) -> random.Random:
    return random.Random(":".join(["rcc-synth", str(seed), *parts]))  # noqa: S311 - not for security


def _postcode_district(rng: random.Random, la: domain.LocalAuthority) -> str:
    areas = (tables.AREAS_BY_LA.get(la.ons_code) or tables.AREAS_BY_REGION[la.region_code]).split()
    area = rng.choice(areas)
    return f"{area}{rng.randint(1, 20 if len(area) == 2 else 9)}"


def _urn(rng: random.Random, used: set[str], *, new_style: bool | None = None) -> str:
    """An unused Ofsted-shaped URN: ``SC`` + 6 digits (older settings) or 7 digits (newer); mixed unless told."""
    while True:
        newer = rng.random() >= 0.6 if new_style is None else new_style
        urn = str(rng.randint(2000000, 2999999)) if newer else f"SC{rng.randint(100000, 999999)}"
        if urn not in used:
            used.add(urn)
            return urn


def _place_name(rng: random.Random) -> str:
    return f"{rng.choice(tables.TREES)}{rng.choice(tables.PLACES)}"


def _ages(rng: random.Random, setting: SettingType) -> AgeRange:
    if setting.supported_accommodation:
        low, high = 16, 17
    elif setting is SettingType.childrens_home:
        low, high = rng.choice((8, 10, 10, 11, 11, 12, 12, 13)), rng.choice((17, 17, 17, 16, 15))
    elif setting is SettingType.residential_special_school:
        low, high = rng.choice((5, 7, 8, 10, 11)), 17
    elif setting is SettingType.residential_family_centre:
        low, high = 0, 17
    else:
        low, high = rng.choice(((0, 4), (0, 17), (5, 11), (8, 17), (11, 17), (0, 10), (0, 17)))
    return AgeRange(min_age=low, max_age=high)


def _sexes(rng: random.Random, setting: SettingType) -> list[Sex]:
    both = {
        SettingType.childrens_home: 0.7,
        SettingType.residential_family_centre: 0.3,
        SettingType.residential_special_school: 0.8,
    }.get(setting, 0.9 if "fostering" in setting.value else 0.7)
    if rng.random() < both:
        return [Sex.female, Sex.male]
    if setting is SettingType.residential_family_centre:
        return [Sex.female]
    return [rng.choice((Sex.female, Sex.male))]


def _needs(rng: random.Random, setting: SettingType) -> list[Need]:
    return [need for need, chance in tables.need_chances(setting).items() if rng.random() < chance]


def _fee(rng: random.Random, setting: SettingType, needs: int) -> float:
    low, high = tables.FEES[setting]
    position = min(1.0, 0.08 * needs + rng.uniform(0.0, 0.55))
    return float(round(low + (high - low) * position))


def _beds(rng: random.Random, setting: SettingType) -> int:
    if setting is SettingType.childrens_home:
        return rng.choices((1, 2, 3), weights=(60, 30, 10))[0]
    if "fostering" in setting.value:
        return rng.choices((1, 2), weights=(80, 20))[0]
    return rng.randint(1, 3)


def _fact_window(rng: random.Random, now: datetime, *, oldest: timedelta, lifetime: timedelta) -> dict[str, datetime]:
    # Most facts were confirmed recently; a tail is older than the stale threshold.
    age = oldest * (rng.random() ** 3)
    as_of = (now - age).replace(microsecond=0)
    return {"as_of": as_of, "valid_until": as_of + lifetime}


def synth_vacancies(
    region_code: str,
    *,
    seed: int,
    now: datetime,
    count: int | None = None,
    la_codes: Sequence[str] | None = None,
) -> list[VacancyDocument]:
    """``count`` vacancies (default 25 per LA) spread over the region's LAs (or just ``la_codes``)."""
    las = region_las(region_code)
    if la_codes:
        las = [la for la in las if la.ons_code in set(la_codes)]
    if not las:
        raise ValueError(f"no local authorities to place vacancies in for region {region_code}")
    count = VACANCIES_PER_LA * len(las) if count is None else count
    rng = _rng(seed, region_code, "vacancies")
    used: set[str] = set()
    # County councils (E10) cover far more children than a unitary or borough: weight them up.
    la_weights = [3 if la.ons_code.startswith("E10") else 1 for la in las]
    agencies = [(_urn(rng, used), f"{_place_name(rng)} Fostering {SYNTHETIC}") for _ in range(max(3, count // 40))]
    settings, weights = zip(*tables.MIX, strict=True)
    today = now.date()
    vacancies = []
    for index in range(count):
        setting: SettingType = rng.choices(settings, weights=weights)[0]
        la = rng.choices(las, weights=la_weights)[0]
        if setting is SettingType.independent_fostering_agency:
            urn, provider = rng.choice(agencies)
            setting_name = f"{provider.removesuffix(' ' + SYNTHETIC)} carers, {la.name}"
        elif setting is SettingType.local_authority_fostering:
            urn, provider = _urn(rng, used), f"{la.name} fostering service {SYNTHETIC}"
            setting_name = f"{la.name} foster carers"
        else:
            place = _place_name(rng)
            urn, provider = _urn(rng, used), f"{place} {rng.choice(tables.COMPANIES)} {SYNTHETIC}"
            setting_name = f"{_place_name(rng)} {rng.choice(tables.BUILDINGS)}"
        needs = _needs(rng, setting)
        framework = (
            PublicationRef(id=f"syn-framework-{region_code.lower()}")
            if setting is not SettingType.local_authority_fostering and rng.random() < 0.5
            else None
        )
        available = today + timedelta(days=0 if rng.random() < 0.5 else rng.randint(1, 28))
        vacancies.append(
            VacancyDocument(
                id=f"syn-{region_code.lower()}-{index + 1:05d}",
                urn=urn,
                provider_name=provider,
                setting_name=setting_name,
                setting_type=setting,
                la_code=la.ons_code,
                postcode_district=_postcode_district(rng, la),
                age_range=_ages(rng, setting),
                sexes=_sexes(rng, setting),
                needs_supported=needs,
                beds_free=_beds(rng, setting),
                weekly_fee=_fee(rng, setting, len(needs)),
                framework=framework,
                available_from=available,
                **_fact_window(rng, now, oldest=timedelta(days=12), lifetime=timedelta(days=rng.randint(21, 35))),
            )
        )
    return vacancies


def _split_places(rng: random.Random, homes: int, total: int) -> list[int]:
    """``homes`` sizes between 6 and 36 that add up to ``total`` exactly (largest remainder)."""
    weights = [rng.uniform(0.4, 1.6) for _ in range(homes)]
    shares = [total * w / sum(weights) for w in weights]
    sizes = [max(6, min(36, int(s))) for s in shares]
    order = sorted(range(homes), key=lambda i: shares[i] - int(shares[i]), reverse=True)
    step = 0
    while sum(sizes) != total:
        i = order[step % homes]
        if sum(sizes) < total and sizes[i] < 36:
            sizes[i] += 1
        elif sum(sizes) > total and sizes[i] > 6:
            sizes[i] -= 1
        step += 1
    return sizes


def synth_secure_homes(*, seed: int, now: datetime) -> list[SecureHomeDocument]:
    """The national set: 14 secure children's homes, 230 approved places, spread over the nine regions."""
    rng = _rng(seed, "secure-homes")
    used: set[str] = set()
    regions = [code for code, homes in SECURE_HOMES_BY_REGION.items() for _ in range(homes)]
    sizes = _split_places(rng, len(regions), SECURE_PLACES_TOTAL)
    homes = []
    for region_code, places in zip(regions, sizes, strict=True):
        la = rng.choice(region_las(region_code))
        justice = round(places * rng.uniform(0.3, 0.6))
        free = rng.randint(0, max(1, places // 6))
        flexible = sum(rng.random() < 0.7 for _ in range(free))
        female_only = sum(rng.random() < 0.5 for _ in range(free - flexible))
        male_only = free - flexible - female_only
        low, high = rng.choices(((10, 17), (12, 17), (10, 16)), weights=(80, 15, 5))[0]
        homes.append(
            SecureHomeDocument(
                urn=_urn(rng, used, new_style=False),
                name=f"{_place_name(rng)} Secure Children's Home {SYNTHETIC}",
                la_code=la.ons_code,
                approved_places=places,
                welfare_beds=places - justice,
                justice_beds=justice,
                beds_free=free,
                beds_free_by_sex=BedsBySex(female=flexible + female_only, male=flexible + male_only),
                age_range=AgeRange(min_age=low, max_age=high),
                **_fact_window(rng, now, oldest=timedelta(hours=30), lifetime=timedelta(hours=72)),
            )
        )
    return homes


def synth_capacity(
    region_code: str,
    *,
    seed: int,
    now: datetime,
    vacancies: int | None = None,
    la_codes: Sequence[str] | None = None,
) -> SyntheticCapacity:
    """One region's synthetic capacity: its vacancies and its share of the national secure homes.

    ``la_codes`` narrows the vacancies to some of the region's LAs (an RCC such as Greater Manchester covers
    part of a region); the region's secure homes are all included whatever it says, since secure welfare
    beds are commissioned nationally and a region has only one or two homes.
    """
    homes = [
        home
        for home in synth_secure_homes(seed=seed, now=now)
        if domain.local_authorities()[home.la_code].region_code == region_code
    ]
    return SyntheticCapacity(
        region_code=region_code,
        seed=seed,
        generated_at=now,
        vacancies=synth_vacancies(region_code, seed=seed, now=now, count=vacancies, la_codes=la_codes),
        secure_homes=homes,
    )


def store(session: Session, capacity: SyntheticCapacity, *, now: datetime) -> tuple[int, int]:
    """Put the synthetic set into this node's register through the ordinary services; (vacancies, homes) stored."""
    for start in range(0, len(capacity.vacancies), _BATCH):
        put_vacancies(session, VacancyBatch(vacancies=capacity.vacancies[start : start + _BATCH]), now=now)
    for home in capacity.secure_homes:
        put_secure_home(session, home.urn, SecureHomeCreate.model_validate(home.model_dump()), now=now)
    return len(capacity.vacancies), len(capacity.secure_homes)
