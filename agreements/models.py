"""Storage tables and API shapes of the agreements part.

Documents, signatures and events are append-only rows: a version is stored once per (id, version) with the
canonical JSON it was signed over; signatures and events keep the JWS as received and the public key that
verified it (so the agreement can be re-verified without a directory). Nothing here stores a *state*: state
is computed (``agreements.lifecycle``). ``agreement_revision`` is one counter bumped by every write, so every
worker of a node notices a new signature or revocation with one primary-key read.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from pydantic import BaseModel, ConfigDict
from sqlalchemy import Text, UniqueConstraint
from sqlmodel import Field, SQLModel

from registry.core.db import UTCDateTime

BUNDLE_FORMAT = "rcc-agreement-bundle/1"
MESSAGE_FORMAT = "rcc-agreement-message/1"


# --- tables -------------------------------------------------------------------------------------------------


class AgreementVersion(SQLModel, table=True):
    """One immutable version of an agreement: the canonical JSON every party signs."""

    __tablename__ = "agreement_version"

    agreement_id: str = Field(primary_key=True, max_length=128)
    version: int = Field(primary_key=True)
    sha256: str = Field(max_length=64, unique=True)
    document: str = Field(sa_type=Text)
    schema_version: str = Field(max_length=32)
    origin: str = Field(max_length=64)
    recorded_at: datetime = Field(sa_type=UTCDateTime)


class AgreementSignature(SQLModel, table=True):
    """A party's detached JWS over one version's canonical document; one per party and document."""

    __tablename__ = "agreement_signature"
    __table_args__ = (UniqueConstraint("document_sha256", "node_id", name="uq_agreement_signature_party"),)

    id: int | None = Field(default=None, primary_key=True)
    document_sha256: str = Field(max_length=64, foreign_key="agreement_version.sha256", index=True)
    agreement_id: str = Field(max_length=128)
    version: int
    node_id: str = Field(max_length=64)
    kid: str = Field(max_length=64)
    jwk: str = Field(max_length=512)
    jws: str = Field(sa_type=Text)
    recorded_at: datetime = Field(sa_type=UTCDateTime)


class AgreementEvent(SQLModel, table=True):
    """A signed lifecycle event (``schemas/agreement-event.schema.json``), stored once per canonical digest."""

    __tablename__ = "agreement_event"

    id: int | None = Field(default=None, primary_key=True)
    sha256: str = Field(max_length=64, unique=True)
    document_sha256: str = Field(max_length=64, foreign_key="agreement_version.sha256", index=True)
    agreement_id: str = Field(max_length=128)
    version: int
    type: str = Field(max_length=16)
    by_node: str = Field(max_length=64)
    at: datetime = Field(sa_type=UTCDateTime)
    event: str = Field(sa_type=Text)
    kid: str = Field(max_length=64)
    jwk: str = Field(max_length=512)
    jws: str = Field(sa_type=Text)
    recorded_at: datetime = Field(sa_type=UTCDateTime)


class AgreementDelivery(SQLModel, table=True):
    """What one other party's node still has to hear about one agreement (the outbox; ``agreements.outbox``).

    One row per (agreement, party): every change queues it again (``generation`` + 1) in the change's own
    transaction, and the courier marks it ``delivered`` only if no newer change was queued while it was sending.
    What is sent is always everything this node holds about the agreement, so one delivery covers them all.
    """

    __tablename__ = "agreement_delivery"

    agreement_id: str = Field(primary_key=True, max_length=128)
    to_node: str = Field(primary_key=True, max_length=64)
    generation: int = Field(default=1)
    state: str = Field(max_length=16, index=True)
    attempts: int = Field(default=0)
    queued_at: datetime = Field(sa_type=UTCDateTime)
    next_attempt_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    last_attempt_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    delivered_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    outcome: str | None = Field(default=None, max_length=32)
    status: int | None = Field(default=None)
    detail: str | None = Field(default=None, max_length=512)


class AgreementRevision(SQLModel, table=True):
    """A single row (``id`` 1) counting writes to the three tables above: the policy cache's freshness check."""

    __tablename__ = "agreement_revision"

    id: int = Field(primary_key=True, sa_column_kwargs={"autoincrement": False})
    revision: int = Field(default=0)


# --- API shapes ---------------------------------------------------------------------------------------------


class SignedDocumentSignature(BaseModel):
    """A signature as it travels: who claims to have signed, and the detached JWS."""

    model_config = ConfigDict(extra="forbid")

    node_id: str
    jws: str


class SignedEvent(BaseModel):
    """A lifecycle event as it travels: the event document and its signer's detached JWS."""

    model_config = ConfigDict(extra="forbid")

    event: dict[str, Any]
    jws: str


class BundleVersion(BaseModel):
    """One version with everything needed to verify it offline."""

    model_config = ConfigDict(extra="forbid")

    document: dict[str, Any]
    sha256: str
    signatures: list[SignedDocumentSignature]
    events: list[SignedEvent]


class Bundle(BaseModel):
    """Every stored version of one agreement, its signatures and events: one JSON file for offline verification."""

    model_config = ConfigDict(extra="forbid")

    format: str = BUNDLE_FORMAT
    agreement: str
    versions: list[BundleVersion]


class AgreementMessage(BaseModel):
    """What one party's node sends another about one version (phase 2 carries it to the inbox).

    It always holds the whole document and every signature and event known, so receiving is idempotent and
    order-independent: a lost or repeated message never leaves two nodes disagreeing for long.
    """

    model_config = ConfigDict(extra="forbid")

    format: str = MESSAGE_FORMAT
    agreement: str
    version: int
    document: dict[str, Any]
    signatures: list[SignedDocumentSignature] = []
    events: list[SignedEvent] = []


class AttentionPublic(BaseModel):
    """A warning: ``review-due`` / ``expiry-due`` (``threshold`` 90 or 30 days) or ``review-lapsed``."""

    kind: str
    due: date
    days_left: int
    threshold: int | None


class SignaturePublic(BaseModel):
    """A stored signature."""

    node_id: str
    kid: str
    jws: str
    recorded_at: datetime


class EventPublic(BaseModel):
    """A stored lifecycle event."""

    sha256: str
    type: str
    by: str
    at: datetime
    reason: str | None
    review_by: date | None
    event: dict[str, Any]
    jws: str
    recorded_at: datetime


class VersionRef(BaseModel):
    """A version of the agreement and its state now."""

    version: int
    sha256: str
    state: str


class AgreementSummary(BaseModel):
    """One agreement version as the register lists it, with its state computed now."""

    agreement: str
    version: int
    sha256: str
    title: str
    kind: str
    state: str
    parties: list[str]
    missing_signatures: list[str]
    withdrawn: list[str]
    valid_from: date
    valid_until: date
    review_by: date
    attention: list[AttentionPublic]


class DeliveryPublic(BaseModel):
    """Whether one other party's node has everything this node holds about the agreement.

    ``state``: ``delivered``, ``pending`` (queued or failed; retried with backoff) or ``rejected`` (the party's
    node refused it for good — not a party there, a conflicting version — until the next change). ``outcome``,
    ``status`` and ``detail`` describe the last attempt (``ok``, ``unreachable``, ``timeout``, ``refused``…).
    """

    node_id: str
    state: str
    outcome: str | None
    status: int | None
    detail: str | None
    attempts: int
    queued_at: datetime
    last_attempt_at: datetime | None
    next_attempt_at: datetime | None
    delivered_at: datetime | None


class AgreementPublic(AgreementSummary):
    """One version in full: document, signatures, event history, the agreement's other versions, and whether
    each other party's node has been told of this node's latest change (``deliveries``)."""

    document: dict[str, Any]
    signatures: list[SignaturePublic]
    events: list[EventPublic]
    versions: list[VersionRef]
    deliveries: list[DeliveryPublic] = []


class SignRequest(BaseModel):
    """Sign a version (default: the newest); ``sha256`` pins the exact document the signer has read."""

    model_config = ConfigDict(extra="forbid")

    version: int | None = None
    sha256: str | None = None


class ReasonRequest(BaseModel):
    """Revoke or withdraw: the reason is recorded in the signed event that governance officers read."""

    model_config = ConfigDict(extra="forbid")

    reason: str


class RenewRequest(BaseModel):
    """Renew: this party's signed agreement to move the review date; it counts once every party has renewed."""

    model_config = ConfigDict(extra="forbid")

    review_by: date
    version: int | None = None


class SignatureCheck(BaseModel):
    """One signature, checked: who, with which key, valid or why not."""

    node_id: str
    kid: str | None
    valid: bool
    reason: str | None
    key_status: str | None
    checked_against: str


class EventCheck(BaseModel):
    """One event's signature, checked."""

    sha256: str
    type: str
    by: str
    valid: bool
    reason: str | None


class VersionCheck(BaseModel):
    """Every signature and event of one version, and whether the version is fully and validly signed."""

    version: int
    sha256: str
    digest_ok: bool
    valid: bool
    signatures: list[SignatureCheck]
    events: list[EventCheck]
    missing_signatures: list[str]


class VerifyReport(BaseModel):
    """The result of verifying an agreement (API) or a bundle (CLI): ``valid`` only if nothing failed."""

    agreement: str
    valid: bool
    versions: list[VersionCheck]
    notes: list[str] = []


class ReceiveResult(BaseModel):
    """What :func:`agreements.exchange.receive` added; all zero when the message was already known."""

    agreement: str
    version: int
    document_stored: bool
    signatures_stored: int
    events_stored: int
