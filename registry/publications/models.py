"""Storage and wire models of the publications register.

Two tables. ``publication`` is one row per document a node holds — its kind, its state and the number of
its latest version, which is what makes updates race-free: a new version is accepted only by a conditional
``UPDATE … WHERE latest_version = n`` (see ``service.update``). ``publication_version`` holds every version,
never changed after insert: the canonical JSON document, its SHA-256, the node's detached signature and
the effective dates copied out of the document so "what is in force on date D" is a query, not a scan.

Rows are keyed by ``(node_id, id)`` so documents copied from peers (phase 2) sit beside this node's own
without clashing ids; this node's routes address its own by ``id`` alone.
"""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal
from typing import Annotated, Any, Literal

import pydantic
from pydantic import BaseModel, ConfigDict, PlainSerializer
from sqlalchemy import Column, ForeignKeyConstraint, Index, Text
from sqlmodel import Field, SQLModel

from registry.core.db import UTCDateTime
from registry.core.domain import local_authorities
from registry.publications.kinds import Kind
from schemas import NeedLevel, SettingType

State = Literal["published", "withdrawn"]

Money = Annotated[Decimal, PlainSerializer(float, return_type=float, when_used="json")]
"""Pounds to the penny: exact in the code, a JSON number on the wire (as in the published documents)."""


# --- storage ---------------------------------------------------------------------------------------------


class Publication(SQLModel, table=True):
    """One document a node holds: kind, current state, latest version number (the update guard)."""

    __tablename__ = "publication"

    node_id: str = Field(primary_key=True, max_length=63)
    id: str = Field(primary_key=True, max_length=128)
    kind: str = Field(max_length=32, index=True)
    region_code: str | None = Field(default=None, max_length=9)
    latest_version: int
    state: str = Field(max_length=16)
    created_at: datetime = Field(sa_type=UTCDateTime)
    updated_at: datetime = Field(sa_type=UTCDateTime)


class PublicationVersion(SQLModel, table=True):
    """One immutable, signed version. ``document`` is the RFC 8785 canonical JSON that was signed."""

    __tablename__ = "publication_version"
    __table_args__ = (
        ForeignKeyConstraint(["node_id", "publication_id"], ["publication.node_id", "publication.id"]),
        Index("ix_publication_version_in_force", "kind", "effective_from", "effective_to"),
    )

    node_id: str = Field(primary_key=True, max_length=63)
    publication_id: str = Field(primary_key=True, max_length=128)
    version: int = Field(primary_key=True)
    kind: str = Field(max_length=32)
    state: str = Field(max_length=16)
    document: str = Field(sa_column=Column(Text, nullable=False))
    sha256: str = Field(max_length=64)
    schema_id: str = Field(max_length=200)
    schema_version: str = Field(max_length=32)
    effective_from: date
    effective_to: date | None = None
    published_at: datetime = Field(sa_type=UTCDateTime)
    reason: str | None = Field(default=None, max_length=300)
    signature: str = Field(sa_column=Column(Text, nullable=False))
    kid: str = Field(max_length=64)
    published_by: str | None = Field(default=None, max_length=200)


# --- requests ------------------------------------------------------------------------------------------------

_Identifier = Annotated[str, pydantic.Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")]


class PublicationCreate(BaseModel):
    """Body of ``POST /v1/publications``; ``id`` is optional (the node makes one from the kind if absent)."""

    model_config = ConfigDict(extra="forbid")

    kind: Kind
    document: dict[str, Any]
    id: _Identifier | None = None


class PublicationUpdate(BaseModel):
    """Body of ``PUT /v1/publications/{id}``: the whole next document (``kind`` may be repeated, not changed)."""

    model_config = ConfigDict(extra="forbid")

    document: dict[str, Any]
    kind: Kind | None = None


class WithdrawRequest(BaseModel):
    """Body of ``POST /v1/publications/{id}/withdraw``; the reason is signed with the withdrawn state."""

    model_config = ConfigDict(extra="forbid")

    reason: Annotated[str, pydantic.Field(min_length=1, max_length=300, pattern=r"^[^\x00-\x1f\x7f]+$")] | None = None


# --- responses -----------------------------------------------------------------------------------------------


class Verification(BaseModel):
    """Whether a stored version still matches the signature its node made; ``reason`` says why not."""

    ok: bool
    reason: str | None = None
    kid: str | None = None


class PublicationRef(BaseModel):
    """Exactly which signed document something came from."""

    node_id: str
    id: str
    version: int
    sha256: str
    title: str
    synthetic: bool = False


class VersionSummary(BaseModel):
    """One entry of a publication's history."""

    version: int
    state: State
    sha256: str
    etag: str
    published_at: datetime
    effective_from: date
    effective_to: date | None
    reason: str | None = None


class PublicationPublic(BaseModel):
    """A publication version as served.

    The signature is a detached JWS (typ ``rcc-publication+jws``) over the RFC 8785 canonical JSON of
    ``{node_id, id, kind, version, state, published_at, schema, document}`` (plus ``reason`` when withdrawn):
    the members of this object of those names, so anyone holding the node's JWKS can check it offline.
    """

    node_id: str
    id: str
    kind: str
    version: int
    state: State
    published_at: str
    schema_: str = pydantic.Field(alias="schema")
    document: dict[str, Any]
    reason: str | None = None
    sha256: str
    etag: str
    signature: str
    schema_version: str
    effective_from: date
    effective_to: date | None
    region_code: str | None
    synthetic: bool
    verification: Verification | None = None

    model_config = ConfigDict(validate_by_name=True, validate_by_alias=True, serialize_by_alias=True)


class PeerReport(BaseModel):
    """What became of one peer (for one kind) when this node gathered publications across regions.

    ``outcome`` is ``ok``, ``refused`` (``reason`` says why: the peer's or this node's policy decision),
    ``timeout``, ``unreachable``, ``bad-signature`` (the peer's answer, or one of its documents, failed
    verification: ``rejected`` names each document and why) or ``error``. ``stored`` counts the verified
    copies now held; a document that failed verification is never stored.
    """

    node_id: str
    kind: str
    dataset: str
    outcome: str
    reason: str | None = None
    detail: str | None = None
    agreement: str | None = None
    received: int = 0
    stored: int = 0
    rejected: list[dict[str, Any]] = pydantic.Field(default_factory=list)


class PublicationPage(BaseModel):
    """A page of publications (latest version of each); ``peers`` reports each peer asked (``scope=national``)."""

    items: list[PublicationPublic]
    count: int
    next_cursor: str | None = None
    peers: list[PeerReport] | None = None


class SchemaSummary(BaseModel):
    """A shipped JSON Schema."""

    name: str
    id: str
    version: str
    title: str | None = None


# --- fee caps --------------------------------------------------------------------------------------------------


class FeeCapCheckRequest(BaseModel):
    """Is this weekly fee within the cap for this setting, need level and LA on this date?"""

    model_config = ConfigDict(extra="forbid")

    setting_type: SettingType
    need_level: NeedLevel
    weekly_fee: Annotated[Decimal, pydantic.Field(ge=0, le=100000, decimal_places=2)]
    la: Annotated[str, pydantic.Field(pattern=r"^E(06|07|08|09|10)[0-9]{6}$", description="ONS code of the LA.")]
    on: date | None = None

    @pydantic.field_validator("la")
    @classmethod
    def _known_la(cls, value: str) -> str:
        if value not in local_authorities():
            raise ValueError("is not a known English local authority")
        return value


class CapFound(BaseModel):
    """The cap an answer rests on."""

    max_weekly_fee: Money
    publication: PublicationRef
    covers: dict[str, Any]
    effective_from: date
    effective_to: date | None
    signature: str
    verification: Verification | None = None


class FeeCapCheckResult(BaseModel):
    """The answer: within the cap (``within_cap`` true), over it (false, with ``excess``) or no cap (null)."""

    outcome: Literal["within", "exceeds", "no-cap"]
    within_cap: bool | None
    setting_type: SettingType
    need_level: NeedLevel
    weekly_fee: Money
    la: str
    region_code: str | None
    on: date
    cap: CapFound | None = None
    excess: Money | None = None
    upcoming: CapFound | None = None
    unverified: list[PublicationRef] = pydantic.Field(default_factory=list)
    detail: str


class FeeCapRow(BaseModel):
    """One region's (or LA group's) cap in the comparison table."""

    node_id: str
    region_code: str | None
    region_name: str | None
    covers: dict[str, Any]
    publication: PublicationRef
    max_weekly_fee: Money
    difference_from_median: Money
    percent_from_median: float | None
    effective_from: date
    effective_to: date | None


class FeeCapComparison(BaseModel):
    """Every cap in force on a date for one setting type and need level, against their median."""

    setting_type: SettingType
    need_level: NeedLevel
    on: date
    median: Money | None
    rows: list[FeeCapRow]
    regions_without_cap: list[str]
    unverified: list[PublicationRef] = pydantic.Field(default_factory=list)
    synthetic: bool


class DutyTiming(BaseModel):
    """When a duty falls due: before placement (at least N working days ahead) or after (within N)."""

    when: Literal["before-placement", "after-placement"]
    working_days: int


class DutyCell(BaseModel):
    """What one protocol says about one notification duty."""

    timing: DutyTiming
    emergency_timing: DutyTiming | None = None
    regulations: list[str]
    information: str


class DutyRow(BaseModel):
    """One notification duty (who is told, by whom) across every protocol; an empty list where one is silent."""

    notify: str
    duty_holder: str
    protocols: dict[str, list[DutyCell]]
    differs: bool


class ProtocolColumn(BaseModel):
    """One protocol in the comparison, with the terms that are not per-duty."""

    key: str
    publication: PublicationRef
    region_code: str | None
    las: int
    placements: list[str]
    distance_approval_by: str
    distance_consult_host_authority: bool
    dispute_steps: int
    dispute_working_days_per_step: int | None
    fee_cap: dict[str, Any] | None


class ProtocolComparison(BaseModel):
    """Placement protocols in force on a date, side by side."""

    on: date
    protocols: list[ProtocolColumn]
    duties: list[DutyRow]
    unverified: list[PublicationRef] = pydantic.Field(default_factory=list)
    synthetic: bool
