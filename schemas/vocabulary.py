"""The closed vocabularies every document and policy decision speaks in.

Each list here is also a ``$defs`` entry of ``vocabulary.schema.json`` (the name in :data:`VOCABULARIES`),
so a value the code accepts is exactly a value a schema accepts; a test keeps the two identical. Add a
value in both places or in neither. Values are kebab-case (or ``area.dataset``) because they travel in
signed documents and URLs, where they must never change spelling.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from types import MappingProxyType


class Dataset(StrEnum):
    """What an agreement grants access to: one register, or one family of published documents."""

    publications_frameworks = "publications.frameworks"
    publications_placement_protocols = "publications.placement-protocols"
    publications_fee_caps = "publications.fee-caps"
    capacity_vacancies = "capacity.vacancies"
    capacity_secure_beds = "capacity.secure-beds"
    statistics_looked_after = "statistics.looked-after"
    audit_tree_heads = "audit.tree-heads"


class Purpose(StrEnum):
    """Why data is asked for; an agreement names the purposes it allows, and nothing else is permitted."""

    placement_search = "placement-search"
    secure_placement = "secure-placement"
    sufficiency_planning = "sufficiency-planning"
    national_statistics = "national-statistics"
    market_transparency = "market-transparency"
    audit_witnessing = "audit-witnessing"


class Role(StrEnum):
    """What a local user or client may do on its own node; every route names the roles it admits."""

    node_admin = "node-admin"
    publisher = "publisher"
    provider = "provider"
    commissioner = "commissioner"
    governance = "governance"
    analyst = "analyst"


class NodeKind(StrEnum):
    """A regional node speaks for one RCC; the national node has no region and may run the directory."""

    regional = "regional"
    national = "national"


@dataclass(frozen=True)
class Ssda903Codes:
    """How a setting type shows up in the SSDA903 return, so register data and statistics line up.

    ``place`` lists PLACE codes; ``place_provider`` the PLACE_PROVIDER codes that pick this type out among
    others sharing those PLACE codes (empty: any provider).
    """

    place: tuple[str, ...]
    place_provider: tuple[str, ...] = ()


class SettingType(StrEnum):
    """Kinds of placement a commissioner can search for, as Ofsted registers (or the LA runs) them."""

    childrens_home = "childrens-home"
    secure_childrens_home = "secure-childrens-home"
    independent_fostering_agency = "independent-fostering-agency"
    local_authority_fostering = "local-authority-fostering"
    supported_accommodation_category_1 = "supported-accommodation-category-1"
    supported_accommodation_category_2 = "supported-accommodation-category-2"
    supported_accommodation_category_3 = "supported-accommodation-category-3"
    supported_accommodation_category_4 = "supported-accommodation-category-4"
    residential_special_school = "residential-special-school"
    residential_family_centre = "residential-family-centre"

    @property
    def ssda903(self) -> Ssda903Codes:
        """The SSDA903 codes a placement in this setting is recorded under."""
        return SSDA903[self]

    @property
    def supported_accommodation(self) -> bool:
        """Supported accommodation takes 16- and 17-year-olds only (regulated since 28 October 2023)."""
        return self.value.startswith("supported-accommodation-")


_FOSTERING = ("U4", "U5", "U6")
# H5 was the code until the 2024-25 collection; K3 from it. Both stay so older returns still map.
_SUPPORTED = ("K3", "H5")

SSDA903: Mapping[SettingType, Ssda903Codes] = MappingProxyType(
    {
        SettingType.childrens_home: Ssda903Codes(("K2",)),
        SettingType.secure_childrens_home: Ssda903Codes(("K1",)),
        # IFA and LA carers share the U codes; only PLACE_PROVIDER (private/voluntary vs own/other LA) tells.
        SettingType.independent_fostering_agency: Ssda903Codes(_FOSTERING, ("PR4", "PR5")),
        SettingType.local_authority_fostering: Ssda903Codes(_FOSTERING, ("PR1", "PR2")),
        SettingType.supported_accommodation_category_1: Ssda903Codes(_SUPPORTED),
        SettingType.supported_accommodation_category_2: Ssda903Codes(_SUPPORTED),
        SettingType.supported_accommodation_category_3: Ssda903Codes(_SUPPORTED),
        SettingType.supported_accommodation_category_4: Ssda903Codes(_SUPPORTED),
        SettingType.residential_special_school: Ssda903Codes(("S1",)),
        SettingType.residential_family_centre: Ssda903Codes(("R3",)),
    }
)


def setting_types_for(place: str, place_provider: str | None = None) -> tuple[SettingType, ...]:
    """The setting types an SSDA903 episode may describe (several when the return cannot tell them apart).

    Without ``place_provider`` a fostering code matches both IFA and LA fostering; supported accommodation
    never says its category, so all four are returned.
    """
    return tuple(
        setting
        for setting, codes in SSDA903.items()
        if place in codes.place
        and (place_provider is None or not codes.place_provider or place_provider in codes.place_provider)
    )


class Need(StrEnum):
    """Needs a setting supports: Ofsted's registration categories, then risk and support flags."""

    emotional_behavioural_difficulties = "emotional-behavioural-difficulties"
    mental_disorders = "mental-disorders"
    learning_disability = "learning-disability"
    physical_disability = "physical-disability"
    sensory_impairment = "sensory-impairment"
    alcohol = "alcohol"
    drugs = "drugs"
    cse_risk = "cse-risk"
    cce_risk = "cce-risk"
    missing_episodes = "missing-episodes"
    self_harm = "self-harm"
    offending = "offending"
    uasc = "uasc"
    parent_and_child = "parent-and-child"
    deprivation_of_liberty = "deprivation-of-liberty"

    @property
    def ofsted_registration_category(self) -> bool:
        """True for the seven categories a children's home registers for (the rest are flags)."""
        return self in _OFSTED_CATEGORIES


_OFSTED_CATEGORIES = frozenset(
    {
        Need.emotional_behavioural_difficulties,
        Need.mental_disorders,
        Need.learning_disability,
        Need.physical_disability,
        Need.sensory_impairment,
        Need.alcohol,
        Need.drugs,
    }
)


class NeedLevel(StrEnum):
    """Bands of need that fee caps and framework rate cards price separately."""

    standard = "standard"
    enhanced = "enhanced"
    complex = "complex"
    specialist = "specialist"


class Reach(StrEnum):
    """How far a capacity search goes: own region, regions sharing a land border, or all of England."""

    region = "region"
    neighbours = "neighbours"
    national = "national"


class ProcurementRoute(StrEnum):
    """How a framework admits providers (Procurement Act 2023 and the regulations before it)."""

    framework = "framework"
    dynamic_purchasing_system = "dynamic-purchasing-system"
    flexible_purchasing_system = "flexible-purchasing-system"


class Sex(StrEnum):
    """Sex a setting accepts or a search describes; SSDA903's ``U`` (unknown) has no place in a search."""

    female = "female"
    male = "male"


class KeyStatus(StrEnum):
    """Retired keys stay published so old signatures verify, but nothing new may be signed with them."""

    active = "active"
    retired = "retired"


class PeerOutcome(StrEnum):
    """What became of one peer in a fan-out, so an answer says honestly which regions replied."""

    ok = "ok"
    refused = "refused"
    timeout = "timeout"
    unreachable = "unreachable"
    bad_signature = "bad-signature"
    error = "error"
    unauthorized = "unauthorized"


class AgreementKind(StrEnum):
    """The ICO data sharing code's two forms of a sharing arrangement."""

    memorandum_of_understanding = "memorandum-of-understanding"
    data_sharing_agreement = "data-sharing-agreement"


class AgreementEventType(StrEnum):
    """Signed lifecycle events; an agreement's state is computed from them, never stored on its own."""

    signed = "signed"
    proposed = "proposed"
    revoked = "revoked"
    withdrawn = "withdrawn"
    renewed = "renewed"
    suspended = "suspended"


class LawfulBasis(StrEnum):
    """UK GDPR Article 6(1)(a)-(f), in the order the Article lists them."""

    consent = "consent"
    contract = "contract"
    legal_obligation = "legal-obligation"
    vital_interests = "vital-interests"
    public_task = "public-task"
    legitimate_interests = "legitimate-interests"


class SpecialCategoryCondition(StrEnum):
    """UK GDPR Article 9(2)(a)-(j): needed as well as an Article 6 basis when special category data flows."""

    explicit_consent = "explicit-consent"
    employment_social_security = "employment-social-security"
    vital_interests = "vital-interests"
    not_for_profit_body = "not-for-profit-body"
    made_public = "made-public"
    legal_claims = "legal-claims"
    substantial_public_interest = "substantial-public-interest"
    health_social_care = "health-social-care"
    public_health = "public-health"
    archiving_research_statistics = "archiving-research-statistics"


VOCABULARIES: Mapping[str, type[StrEnum]] = MappingProxyType(
    {
        "dataset": Dataset,
        "purpose": Purpose,
        "role": Role,
        "node_kind": NodeKind,
        "setting_type": SettingType,
        "need": Need,
        "need_level": NeedLevel,
        "reach": Reach,
        "procurement_route": ProcurementRoute,
        "sex": Sex,
        "key_status": KeyStatus,
        "peer_outcome": PeerOutcome,
        "agreement_kind": AgreementKind,
        "agreement_event_type": AgreementEventType,
        "lawful_basis": LawfulBasis,
        "special_category_condition": SpecialCategoryCondition,
    }
)
"""``$defs`` name in ``vocabulary.schema.json`` → the enum holding the same values in the same order."""
