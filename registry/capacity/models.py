"""Storage and wire models of the capacity register's vacancies and search, and the building blocks shared
with the secure homes (:mod:`registry.capacity.secure_models`).

Each entity has its family: ``XBase`` (the fields a provider sends, as the JSON Schema ``vacancy/1`` spells
them), ``XCreate`` (a PUT body, whose id may come from the path), ``XDocument`` (the complete document, what
peers receive), ``XPublic`` (the document as a list shows it, with ``stale``) and ``X`` (the SQLModel table).
Wire models are pydantic models, as in the publications register. The table flattens what the documents nest,
so the search can filter and rank in SQL: ages as two columns, sexes and needs as bitmasks (``needs_mask &
wanted = wanted`` is "supports every need"), fees in pence (exact on both engines, no float drift).

Freshness: a vacancy is *stale* once its ``as_of`` is more than 7 days old. Stale facts are served, flagged;
expired ones (``valid_until`` passed) never are.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, date, datetime, timedelta
from enum import StrEnum
from functools import lru_cache
from typing import Annotated, Any, Literal

import sqlmodel
from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    StrictFloat,
    StrictInt,
    StringConstraints,
    field_validator,
    model_validator,
)
from sqlalchemy import Column, Index, Text
from sqlmodel import SQLModel

from registry.core import domain
from registry.core.db import UTCDateTime
from schemas.vocabulary import Need, PeerOutcome, Purpose, Reach, SettingType, Sex

VACANCY_STALE_AFTER = timedelta(days=7)

# Patterns as in schemas/common.schema.json (a test keeps them identical).
IDENTIFIER_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$"
URN_PATTERN = r"^(SC[0-9]{6}|[0-9]{7})$"
LA_CODE_PATTERN = r"^E(06|07|08|09|10)[0-9]{6}$"
POSTCODE_DISTRICT_PATTERN = r"^[A-Z]{1,2}[0-9][A-Z0-9]?$"
LINE_PATTERN = r"^[^\x00-\x1f\x7f]+$"
SHA256_PATTERN = r"^[0-9a-f]{64}$"
MAX_WEEKLY_FEE = 100_000

# Constrained strings, shared by every model that carries one.
Identifier = Annotated[str, StringConstraints(pattern=IDENTIFIER_PATTERN)]
Urn = Annotated[str, StringConstraints(pattern=URN_PATTERN)]
LaCode = Annotated[str, StringConstraints(pattern=LA_CODE_PATTERN)]
PostcodeDistrict = Annotated[str, StringConstraints(pattern=POSTCODE_DISTRICT_PATTERN)]
Line = Annotated[str, StringConstraints(min_length=1, max_length=300, pattern=LINE_PATTERN)]
Sha256 = Annotated[str, StringConstraints(pattern=SHA256_PATTERN)]
Fee = StrictFloat  # strict: a number, never a numeric string; ints are accepted as floats
# Optional members are left out of the JSON when absent, never sent as null (the schemas do not allow null).
OmitIfNone = Field(exclude_if=lambda value: value is None)

# Bit of each need in ``needs_mask``. Stored data depends on these numbers: never renumber, only append.
NEED_BITS: dict[Need, int] = {
    Need.emotional_behavioural_difficulties: 0,
    Need.mental_disorders: 1,
    Need.learning_disability: 2,
    Need.physical_disability: 3,
    Need.sensory_impairment: 4,
    Need.alcohol: 5,
    Need.drugs: 6,
    Need.cse_risk: 7,
    Need.cce_risk: 8,
    Need.missing_episodes: 9,
    Need.self_harm: 10,
    Need.offending: 11,
    Need.uasc: 12,
    Need.parent_and_child: 13,
    Need.deprivation_of_liberty: 14,
}
SEX_BITS: dict[Sex, int] = {Sex.female: 0, Sex.male: 1}


def needs_mask(needs: Iterable[Need]) -> int:
    """The bitmask of a set of needs."""
    return _needs_mask(tuple(needs))


# The masks and lists below are cached: a search builds or ranks hundreds of vacancies, and there are only a
# few dozen distinct need sets among them.
@lru_cache(maxsize=4096)
def _needs_mask(needs: tuple[Need, ...]) -> int:
    return sum(1 << NEED_BITS[need] for need in set(needs))


def needs_of(mask: int) -> list[Need]:
    """The needs in a bitmask, in vocabulary order (a new list: the caller may keep or change it)."""
    return list(_needs_of(mask))


@lru_cache(maxsize=4096)
def _needs_of(mask: int) -> tuple[Need, ...]:
    return tuple(need for need, bit in NEED_BITS.items() if mask >> bit & 1)


def sexes_mask(sexes: Iterable[Sex]) -> int:
    """The bitmask of a set of sexes."""
    return sum(1 << SEX_BITS[sex] for sex in set(sexes))


def sexes_of(mask: int) -> list[Sex]:
    """The sexes in a bitmask, in vocabulary order (a new list)."""
    return list(_SEXES_OF[mask]) if 0 <= mask < len(_SEXES_OF) else []


_SEXES_OF = [tuple(sex for sex, bit in SEX_BITS.items() if mask >> bit & 1) for mask in range(1 << len(SEX_BITS))]


def fee_to_pence(fee: float) -> int:
    """A fee in pounds, validated to whole pence (:func:`_check_fee`), as integer pence.

    ``fee`` is the double nearest some ``k / 100``; ``fee * 100`` is within a few units in the last place of
    ``k``, far under a half, for every fee up to £100,000, so rounding gives ``k`` exactly: what converting
    through the decimal text gives (a test compares the two over every amount), at a tenth of the cost.
    """
    return round(fee * 100)


def pence_to_fee(pence: int) -> float:
    """Integer pence as pounds for JSON (the shortest float repr of a two-decimal amount is exact text).

    ``pence / 100`` is the double nearest the exact quotient (Python's integer division is correctly rounded),
    the same double ``float(Decimal(pence) / 100)`` gives, at a fraction of the cost.
    """
    return pence / 100


def la_number(code: str) -> int:
    """An LA code as the integer its digits spell (``E06000035`` -> 6000035): one-to-one on valid codes.

    The search looks each vacancy's distance up by it: comparing integers costs the database a fraction of
    comparing text (PostgreSQL compares text through its collation), and it does so for every candidate.
    """
    return int(code[1:])


def live_la_problem(code: str) -> str | None:
    """Why ``code`` cannot be used as a current LA (unknown or abolished), or None if it can."""
    la = domain.local_authorities().get(code)
    if la is None:
        return "is not a known English local authority"
    if not la.live:
        return "is a local authority that no longer exists"
    return None


def region_of_la(code: str) -> str | None:
    """The E12 region an LA lies in, if known."""
    la = domain.local_authorities().get(code)
    return la.region_code if la is not None else None


def is_stale(as_of: datetime, now: datetime, threshold: timedelta) -> bool:
    """Whether a fact confirmed at ``as_of`` is older than ``threshold`` at ``now``."""
    return now - as_of > threshold


def _utc(value: datetime) -> datetime:
    return value.astimezone(UTC)


def _distinct(values: list[Any]) -> list[Any]:
    if len(set(values)) != len(values):
        raise ValueError("must not repeat an item")
    return values


def _canonical(values: list[StrEnum]) -> list[StrEnum]:
    """Distinct members of a closed vocabulary, in vocabulary order: one document, one spelling."""
    if not values:
        return values
    return sorted(_distinct(values), key=_vocabulary_order(type(values[0])).__getitem__)


@lru_cache(maxsize=64)
def _vocabulary_order(vocabulary: type[StrEnum]) -> dict[StrEnum, int]:
    """Each member's place in its vocabulary (cached: a node validates every result a peer sends, each with
    its needs and sexes, and building this for each list was a third of that validation)."""
    return {member: index for index, member in enumerate(vocabulary.__members__.values())}


class AgeRange(BaseModel):
    """Ages accepted, both ends inclusive."""

    model_config = ConfigDict(extra="forbid")

    min_age: StrictInt = Field(ge=0, le=17)
    max_age: StrictInt = Field(ge=0, le=17)

    @model_validator(mode="after")
    def _ordered(self) -> AgeRange:
        if self.min_age > self.max_age:
            raise ValueError("min_age must not be above max_age")
        return self


class PublicationRef(BaseModel):
    """A framework publication a vacancy is offered under; version and sha256 pin exactly which one."""

    model_config = ConfigDict(extra="forbid")

    id: Identifier
    version: Annotated[StrictInt | None, OmitIfNone] = Field(default=None, ge=1)
    sha256: Annotated[Sha256 | None, OmitIfNone] = None


def _check_fee(value: float) -> float:
    if not 0 <= value <= MAX_WEEKLY_FEE:
        raise ValueError(f"must be between 0 and {MAX_WEEKLY_FEE}")
    # Whole pence exactly when the shortest decimal text of ``value`` has at most two decimals (the JSON
    # Schema's decimal multipleOf: 0.01): round() rounds the exact binary value correctly, so it gives
    # ``value`` back just for those. A test holds it to the decimal test over random amounts.
    if round(value, 2) != value:
        raise ValueError("must be a whole number of pence")
    return float(value)


class FactWindow(BaseModel):
    """``as_of`` and ``valid_until``, kept in UTC, the window in order."""

    as_of: AwareDatetime
    valid_until: AwareDatetime

    @field_validator("as_of", "valid_until")
    @classmethod
    def _in_utc(cls, value: datetime) -> datetime:
        return _utc(value)

    @model_validator(mode="after")
    def _window(self) -> FactWindow:
        if self.valid_until <= self.as_of:
            raise ValueError("valid_until must be after as_of")
        return self


# ------------------------------------------------------------------------------------------------ vacancies


class VacancyBase(FactWindow):
    """A free place, as a provider describes it: never an address (LA and postcode district only)."""

    model_config = ConfigDict(extra="forbid")

    urn: Urn = Field(description="Ofsted URN: SC and six digits, or seven digits.")
    provider_name: Line
    setting_name: Line
    setting_type: SettingType
    la_code: LaCode = Field(description="ONS code of the LA the setting is in.")
    postcode_district: PostcodeDistrict = Field(description="Outward code only, e.g. ME14.")
    age_range: AgeRange
    sexes: list[Sex] = Field(min_length=1)
    needs_supported: list[Need]
    beds_free: StrictInt = Field(ge=0, le=100)
    weekly_fee: Fee = Field(description="GBP per week, to the penny.")
    framework: Annotated[PublicationRef | None, OmitIfNone] = None
    available_from: date

    @field_validator("la_code")
    @classmethod
    def _live_la(cls, value: str) -> str:
        if (problem := live_la_problem(value)) is not None:
            raise ValueError(problem)
        return value

    @field_validator("sexes", "needs_supported")
    @classmethod
    def _no_repeats(cls, value: list[StrEnum]) -> list[StrEnum]:
        return _canonical(value)

    @field_validator("weekly_fee")
    @classmethod
    def _pence(cls, value: float) -> float:
        return _check_fee(value)

    @model_validator(mode="after")
    def _supported_accommodation_ages(self) -> VacancyBase:
        if self.setting_type.supported_accommodation and self.age_range.min_age < 16:
            raise ValueError("supported accommodation is for 16- and 17-year-olds only (age_range.min_age >= 16)")
        return self

    def document(self) -> dict[str, Any]:
        """The JSON document as ``vacancy/1`` defines it."""
        return self.model_dump(mode="json", exclude={"stale"})


class VacancyCreate(VacancyBase):
    """The body of ``PUT /v1/capacity/vacancies/{id}``: the document, its ``id`` optional (the path names it)."""

    id: Identifier | None = None


class VacancyDocument(VacancyBase):
    """A complete vacancy document, as ``vacancy/1`` defines it and as peers receive it."""

    id: Identifier = Field(description="The provider's reference, unique within the node.")


class VacancyPublic(VacancyDocument):
    """A vacancy as this node lists it: the document and whether it is stale."""

    stale: bool = Field(description="as_of is more than 7 days old: still served, but ask before relying on it.")


class VacancyBatch(BaseModel):
    """The body of ``POST /v1/capacity/vacancies:batch``: stored all together or not at all."""

    model_config = ConfigDict(extra="forbid")

    vacancies: list[VacancyDocument] = Field(min_length=1, max_length=1000)


class VacancyBatchResult(BaseModel):
    """What a batch stored."""

    created: list[str]
    updated: list[str]


class VacancyPage(BaseModel):
    """One page of vacancies; pass ``next_after`` back as ``after`` for the next."""

    items: list[VacancyPublic]
    next_after: str | None


class Vacancy(SQLModel, table=True):
    """A stored vacancy, flattened for SQL filtering (see the module docstring)."""

    __tablename__ = "capacity_vacancy"
    # The search reads its candidates from ix_capacity_vacancy_search alone: every column it filters on or
    # scores by, and the id, so neither engine ever visits the table for a candidate (an index that held only
    # some of them would send SQLite to the table by a random lookup per row: measured 1.3-5x slower than a
    # plain scan). Nearly every vacancy is unexpired and most ages match most places, so no column narrows the
    # search much; what the index buys is a scan of narrow entries instead of wide rows (names, timestamps as
    # text on SQLite). The integers come first: PostgreSQL finds their offsets in an entry without walking
    # the variable-length columns. LA code and URN are selective and serve the list filters.
    __table_args__ = (
        Index("ix_capacity_vacancy_la_code", "la_code"),
        Index("ix_capacity_vacancy_urn", "urn"),
        Index(
            "ix_capacity_vacancy_search",
            "min_age",
            "max_age",
            "sexes_mask",
            "beds_free",
            "needs_mask",
            "needs_count",
            "weekly_fee_pence",
            "la_number",
            "as_of_epoch",
            "available_from",
            "valid_until",
            "setting_type",
            "id",
        ),
    )

    id: str = sqlmodel.Field(primary_key=True, max_length=128)
    urn: str = sqlmodel.Field(max_length=8)
    provider_name: str = sqlmodel.Field(max_length=300)
    setting_name: str = sqlmodel.Field(max_length=300)
    setting_type: str = sqlmodel.Field(max_length=64)
    la_code: str = sqlmodel.Field(max_length=9)
    la_number: int  # la_code's digits (see :func:`la_number`): the search looks distances up by it
    postcode_district: str = sqlmodel.Field(max_length=4)
    min_age: int
    max_age: int
    sexes_mask: int
    needs_mask: int
    needs_count: int  # bits set in needs_mask: lets SQL work out the fit to needs (there is no popcount in SQL)
    beds_free: int
    weekly_fee_pence: int
    # The framework reference as plain columns, not JSON: decoding JSON for every row a search returns cost
    # more than building the rest of the document.
    framework_id: str | None = sqlmodel.Field(default=None, max_length=128)
    framework_version: int | None = None
    framework_sha256: str | None = sqlmodel.Field(default=None, max_length=64)
    available_from: date
    as_of: datetime = sqlmodel.Field(sa_column=Column(UTCDateTime, nullable=False))
    # as_of again, as seconds since 1970: the search scores freshness in SQL, and parsing a timestamp per
    # row (SQLite keeps them as text) cost more than the rest of the score together.
    as_of_epoch: float
    valid_until: datetime = sqlmodel.Field(sa_column=Column(UTCDateTime, nullable=False))
    updated_at: datetime = sqlmodel.Field(sa_column=Column(UTCDateTime, nullable=False))
    # The whole vacancy/1 document as JSON, written when it is stored: a region's answer to a peer's search
    # copies it in as it is (see registry.capacity.search.search_local_json and migration 0014).
    document: str = sqlmodel.Field(sa_type=Text)


# ------------------------------------------------------------------------------------------------ search


class SearchRequest(BaseModel):
    """A commissioner's search: the child's needs, never the child. Every other member is refused (422)."""

    model_config = ConfigDict(extra="forbid")

    age: StrictInt = Field(ge=0, le=17)
    sex: Sex
    needs: list[Need]
    setting_types: list[SettingType] | None = Field(default=None, min_length=1, description="Absent: any type.")
    home_la: LaCode = Field(description="Distances are measured from this LA's centre.")
    needed_by: date
    max_weekly_fee: Fee | None = None
    within_fee_cap_only: StrictBool = False
    reach: Reach
    purpose: Literal[Purpose.placement_search, Purpose.secure_placement]
    deadline_ms: StrictInt = Field(default=3000, ge=100, le=10_000)

    @field_validator("needs", "setting_types")
    @classmethod
    def _no_repeats(cls, value: list[Any] | None) -> list[Any] | None:
        return None if value is None else _distinct(value)

    @field_validator("home_la")
    @classmethod
    def _live_la(cls, value: str) -> str:
        if (problem := live_la_problem(value)) is not None:
            raise ValueError(problem)
        return value

    @field_validator("max_weekly_fee")
    @classmethod
    def _pence(cls, value: float | None) -> float | None:
        return None if value is None else _check_fee(value)


class SearchResult(BaseModel):
    """One place found, with where it came from and the facts it was ranked on."""

    node_id: str
    region_code: str
    vacancy: VacancyDocument
    distance_miles: float | None = Field(description="Home LA centre to the vacancy's LA centre; null if unknown.")
    fee_within_cap: bool | None = Field(description="Null when no fee cap is known where the vacancy is.")
    freshness: Literal["fresh", "stale"]
    score: float = Field(ge=0, le=1, description="Higher is better; see registry.capacity.search.")


class PeerReport(BaseModel):
    """What became of one peer asked in a fan-out (phase 1 asks none)."""

    node_id: str
    region_code: str | None
    outcome: PeerOutcome
    reason: Annotated[str | None, OmitIfNone] = None
    latency_ms: float
    count: int


class SearchResponse(BaseModel):
    """Results ranked best first, and an honest account of every peer asked."""

    results: list[SearchResult]
    peers: list[PeerReport]
    generated_at: datetime

    def document(self) -> dict[str, Any]:
        """The JSON document as ``capacity-search-response/1`` defines it."""
        return self.model_dump(mode="json")
