"""Federation tables (replay cache, held directories) and the shapes the transport hands to its callers."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from pydantic import BaseModel
from sqlalchemy import Text
from sqlmodel import Field, SQLModel

from registry.core.db import UTCDateTime
from schemas.vocabulary import PeerOutcome, Purpose


class ReplayEntry(SQLModel, table=True):
    """A request token ``jti`` already used: the primary key is the unique constraint that stops a replay.

    Kept until the token could no longer be accepted anyway (``expires_at`` = token ``exp`` + clock skew),
    then purged. One table for every worker of the node, so a replay is caught whichever worker it reaches.

    Every federated request inserts here, so the table is one B-tree and nothing else: on SQLite a
    ``WITHOUT ROWID`` table clustered on ``jti`` (time-ordered, so claims append at its right edge), and no
    index on ``expires_at``: the purge, once a minute, scans a table that holds at most a few minutes of
    claims, which costs less than keeping an index in step on every insert (migration 0013 has the figures).
    """

    __tablename__ = "federation_replay"
    __table_args__ = {"sqlite_with_rowid": False}

    jti: str = Field(primary_key=True, max_length=64)
    issuer: str = Field(max_length=63)
    expires_at: datetime = Field(sa_type=UTCDateTime)


class DirectoryRecord(SQLModel, table=True):
    """A signed directory this node accepted, as received. The highest serial is the one in force.

    Kept in the database (not only in memory or a file) so every worker and every restart agrees on the
    serial held, and an older directory can never be loaded back in.
    """

    __tablename__ = "federation_directory"

    serial: int = Field(primary_key=True, sa_column_kwargs={"autoincrement": False})
    issued_at: datetime = Field(sa_type=UTCDateTime)
    expires_at: datetime = Field(sa_type=UTCDateTime)
    digest: str = Field(max_length=64)
    source: str = Field(max_length=32)
    envelope: str = Field(sa_type=Text)
    loaded_at: datetime = Field(sa_type=UTCDateTime)


class WitnessedHead(SQLModel, table=True):
    """A peer's signed audit tree head as this node received it, with what witnessing concluded.

    Kept for good: a head is evidence. The latest ``first`` or ``consistent`` head of a peer is the one its next
    head must extend; an ``inconsistent`` head is kept beside it as proof that the peer's log forked.
    """

    __tablename__ = "federation_witnessed_head"

    peer: str = Field(primary_key=True, max_length=63)
    tree_size: int = Field(primary_key=True, sa_column_kwargs={"autoincrement": False})
    root_hash: str = Field(primary_key=True, max_length=64)
    timestamp: datetime = Field(sa_type=UTCDateTime)
    signature: str = Field(sa_type=Text)
    witnessed_at: datetime = Field(sa_type=UTCDateTime)
    verdict: str = Field(max_length=16)
    detail: str | None = Field(default=None, sa_type=Text)


class WitnessSchedule(SQLModel, table=True):
    """The node's last witnessing round, one row shared by every worker: who ran it, when, and what came of it.

    It is also the claim that keeps several workers of one node from running the same scheduled round: a
    worker starts a round only by moving ``started_at`` forward in one conditional ``UPDATE`` (see
    :mod:`federation.witness_schedule`), which exactly one of them can win per interval on SQLite and PostgreSQL.
    ``reports`` holds the JSON list of each peer's verdict once the round has finished.
    """

    __tablename__ = "federation_witness_schedule"

    id: int = Field(default=1, primary_key=True, sa_column_kwargs={"autoincrement": False})
    round: int = Field(sa_column_kwargs={"autoincrement": False})
    trigger: str = Field(max_length=16)
    worker: str = Field(max_length=128)
    started_at: datetime = Field(sa_type=UTCDateTime)
    finished_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    reports: str | None = Field(default=None, sa_type=Text)
    error: str | None = Field(default=None, sa_type=Text)


@dataclass(frozen=True)
class Peer:
    """A peer node authenticated for one request; what the policy decision (issue 6) decides on.

    ``agreement`` is the agreement id the caller relies on, carried as claimed: the guard authenticates,
    it does not authorise.
    """

    node_id: str
    name: str
    kind: str
    region_code: str | None
    kid: str
    jti: str
    purpose: Purpose
    agreement: str | None
    issued_at: int
    expires_at: int


@dataclass
class PeerResult:
    """What became of one call to one peer: outcome, HTTP status, answer and the peer's signed proof.

    ``body`` is the answer parsed as JSON; ``content`` its exact bytes, the ones the peer signed, for a caller
    that validates them straight into its models (pydantic reads JSON bytes several times faster than dicts).
    """

    peer: str
    outcome: PeerOutcome
    latency_ms: float
    status: int | None = None
    body: Any = None
    content: bytes = b""
    detail: str | None = None
    response_signature: str | None = None
    kid: str | None = None
    attempts: int = 1
    request_sha256: str | None = None
    response_sha256: str | None = None

    @property
    def ok(self) -> bool:
        """True when the peer answered 2xx with a valid signature."""
        return self.outcome is PeerOutcome.ok


@dataclass
class FanoutResult:
    """Every answer that arrived before the deadline, and each peer's outcome and latency."""

    results: list[PeerResult] = field(default_factory=list)
    elapsed_ms: float = 0.0

    @property
    def answers(self) -> dict[str, Any]:
        """The bodies of the peers that answered ``ok``, by node id."""
        return {r.peer: r.body for r in self.results if r.ok}

    def outcomes(self) -> dict[str, PeerOutcome]:
        """Each peer's outcome by node id."""
        return {r.peer: r.outcome for r in self.results}


class PingResponse(BaseModel):
    """The authenticated echo: who this node verified the caller to be, and this node's clock."""

    node_id: str
    peer: str
    kid: str
    purpose: Purpose
    agreement: str | None
    jti: str
    server_time: datetime
    echo: Any = None
