"""The audit log's tables and the shapes its API returns.

Three tables:

- ``audit_entry``: one row per recorded request. ``entry`` is the entry's RFC 8785 canonical JSON, the exact
  bytes its leaf hash covers; ``seq`` is its index in the Merkle tree, NULL until the sequencer assigns it
  (unique, so no index is ever used twice). The ``actor_id`` … ``action`` columns are copies of entry fields
  kept only so governance queries can use indexes; ``rcc-node audit verify --deep`` checks they still match.
- ``audit_node``: the hash of every perfect subtree ``(level, idx)`` (level 0: the leaf hashes), written once
  when its last leaf is sequenced, so tree heads and proofs need O(log n) reads at any size.
- ``audit_head``: a single row (``id = 1``) holding the latest signed tree head. The sequencer locks this row
  for its whole transaction, which is what makes one sequencer at a time assign indices across workers.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, Column, Index, Integer, LargeBinary, SmallInteger, Text, text
from sqlmodel import Field, SQLModel

from registry.core.db import UTCDateTime

HEAD_ROW_ID = 1
_SEQUENCED: dict[str, Any] = {
    "postgresql_where": text("seq IS NOT NULL"),
    "sqlite_where": text("seq IS NOT NULL"),
}


class AuditEntry(SQLModel, table=True):
    """A recorded request; internal columns only, the API shows :class:`AuditEntryPublic`."""

    __tablename__ = "audit_entry"
    __table_args__ = (
        # Indexes over sequenced entries only (partial, "seq IS NOT NULL"): a request's insert then touches just
        # the table and the small pending index, and the sequencer fills these in batches. Governance queries
        # always say "seq IS NOT NULL", so both engines use them.
        Index("uq_audit_entry_seq", "seq", unique=True, **_SEQUENCED),
        Index("ix_audit_entry_ts", "ts", **_SEQUENCED),
        Index("ix_audit_entry_actor_seq", "actor_id", "seq", **_SEQUENCED),
        Index("ix_audit_entry_peer_seq", "peer", "seq", **_SEQUENCED),
        Index("ix_audit_entry_agreement_seq", "agreement", "seq", **_SEQUENCED),
        Index("ix_audit_entry_action_seq", "action", "seq", **_SEQUENCED),
        # Exactly the entries still waiting for an index, in arrival order: what the sequencer reads.
        Index("ix_audit_entry_pending", "id", postgresql_where=text("seq IS NULL"), sqlite_where=text("seq IS NULL")),
    )

    # SQLite autoincrements only an INTEGER primary key; PostgreSQL gets a 64-bit identity.
    id: int | None = Field(
        default=None,
        sa_column=Column(BigInteger().with_variant(Integer(), "sqlite"), primary_key=True, autoincrement=True),
    )
    seq: int | None = Field(default=None, sa_column=Column(BigInteger, nullable=True))
    ts: datetime = Field(sa_column=Column(UTCDateTime(), nullable=False))
    entry: str = Field(sa_column=Column(Text, nullable=False))
    leaf_hash: bytes = Field(sa_column=Column(LargeBinary(32), nullable=False))
    actor_id: str | None = None
    peer: str | None = None
    agreement: str | None = None
    dataset: str | None = None
    purpose: str | None = None
    decision: str | None = None
    action: str | None = None


class AuditNode(SQLModel, table=True):
    """The hash of the perfect subtree covering leaves ``[idx << level, (idx + 1) << level)``."""

    __tablename__ = "audit_node"

    level: int = Field(sa_column=Column(SmallInteger, primary_key=True, autoincrement=False))
    idx: int = Field(sa_column=Column(BigInteger, primary_key=True, autoincrement=False))
    digest: bytes = Field(sa_column=Column(LargeBinary(32), nullable=False))


class AuditHead(SQLModel, table=True):
    """The latest signed tree head; the one row the sequencer locks."""

    __tablename__ = "audit_head"

    id: int = Field(sa_column=Column(Integer, primary_key=True, autoincrement=False))
    node_id: str | None = None
    tree_size: int = Field(default=0, sa_column=Column(BigInteger, nullable=False))
    root_hash: str = Field(max_length=64)
    signed_at: datetime | None = Field(default=None, sa_column=Column(UTCDateTime(), nullable=True))
    signature: str | None = Field(default=None, sa_column=Column(Text, nullable=True))


# --------------------------------------------------------------------------------------------------
# What the API returns


class TreeHead(SQLModel):
    """The signed statement of the log's state: ``schemas/tree-head.schema.json``."""

    node_id: str
    tree_size: int
    root_hash: str
    timestamp: str


class SignedTreeHead(SQLModel):
    """A tree head and its detached JWS (``typ: rcc-tree-head+jws``) over ``JCS(tree_head)``."""

    tree_head: TreeHead
    signature: str


class InclusionProofPublic(SQLModel):
    """RFC 9162 §2.1.3 inclusion proof of leaf ``index`` in the tree of ``tree_size`` leaves."""

    index: int
    tree_size: int
    leaf_hash: str
    audit_path: list[str]


class ConsistencyProofPublic(SQLModel):
    """RFC 9162 §2.1.4 consistency proof from the tree of ``first`` leaves to the tree of ``second``."""

    first: int
    second: int
    proof: list[str]


class AuditEntryPublic(SQLModel):
    """One sequenced entry: its index, the entry itself and its leaf hash ``SHA-256(0x00 || JCS(entry))``."""

    index: int
    entry: dict[str, Any]
    leaf_hash: str


class AuditEntryPage(SQLModel):
    """A page of entries, oldest first; pass ``next_cursor`` back as ``cursor`` for the next page."""

    items: list[AuditEntryPublic]
    next_cursor: str | None
    tree_size: int


class AuditEntryWithProof(AuditEntryPublic):
    """An entry with its inclusion proof against the signed tree head returned beside it."""

    audit_path: list[str]
    signed_tree_head: SignedTreeHead
