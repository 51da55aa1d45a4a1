"""audit: entries, Merkle nodes, signed tree head

Revision ID: 0003
Revises: 0001
Create Date: 2026-11-28 18:19:40.144823
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel.sql.sqltypes
from alembic import op


import registry.core.db

revision: str = "0003"
down_revision: str | Sequence[str] | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# SHA-256 of the empty string: the root of the empty tree (RFC 9162 §2.1.1).
EMPTY_ROOT = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
SEQUENCED_INDEXES = [
    ("uq_audit_entry_seq", ["seq"], True),
    ("ix_audit_entry_ts", ["ts"], False),
    ("ix_audit_entry_actor_seq", ["actor_id", "seq"], False),
    ("ix_audit_entry_peer_seq", ["peer", "seq"], False),
    ("ix_audit_entry_agreement_seq", ["agreement", "seq"], False),
    ("ix_audit_entry_action_seq", ["action", "seq"], False),
]


def _where(condition: str) -> dict[str, sa.TextClause]:
    return {"postgresql_where": sa.text(condition), "sqlite_where": sa.text(condition)}


def upgrade() -> None:
    op.create_table(
        "audit_entry",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False),
        sa.Column("seq", sa.BigInteger(), nullable=True),
        sa.Column("ts", registry.core.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("entry", sa.Text(), nullable=False),
        sa.Column("leaf_hash", sa.LargeBinary(length=32), nullable=False),
        sa.Column("actor_id", sqlmodel.sql.sqltypes.AutoString(), nullable=True),
        sa.Column("peer", sqlmodel.sql.sqltypes.AutoString(), nullable=True),
        sa.Column("agreement", sqlmodel.sql.sqltypes.AutoString(), nullable=True),
        sa.Column("dataset", sqlmodel.sql.sqltypes.AutoString(), nullable=True),
        sa.Column("purpose", sqlmodel.sql.sqltypes.AutoString(), nullable=True),
        sa.Column("decision", sqlmodel.sql.sqltypes.AutoString(), nullable=True),
        sa.Column("action", sqlmodel.sql.sqltypes.AutoString(), nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("audit_entry", schema=None) as batch_op:
        # Partial indexes over sequenced entries: a request's insert touches only the table and the pending index.
        for name, columns, unique in SEQUENCED_INDEXES:
            batch_op.create_index(name, columns, unique=unique, **_where("seq IS NOT NULL"))
        batch_op.create_index("ix_audit_entry_pending", ["id"], unique=False, **_where("seq IS NULL"))

    head = op.create_table(
        "audit_head",
        sa.Column("id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("node_id", sqlmodel.sql.sqltypes.AutoString(), nullable=True),
        sa.Column("tree_size", sa.BigInteger(), nullable=False),
        sa.Column("root_hash", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("signed_at", registry.core.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("signature", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_table(
        "audit_node",
        sa.Column("level", sa.SmallInteger(), autoincrement=False, nullable=False),
        sa.Column("idx", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("digest", sa.LargeBinary(length=32), nullable=False),
        sa.PrimaryKeyConstraint("level", "idx"),
    )
    # The one head row the sequencer locks; unsigned until the node's first sequencer run signs it.
    op.bulk_insert(head, [{"id": 1, "node_id": None, "tree_size": 0, "root_hash": EMPTY_ROOT}])


def downgrade() -> None:
    op.drop_table("audit_node")
    op.drop_table("audit_head")
    with op.batch_alter_table("audit_entry", schema=None) as batch_op:
        batch_op.drop_index("ix_audit_entry_pending", **_where("seq IS NULL"))
        for name, _, _ in reversed(SEQUENCED_INDEXES):
            batch_op.drop_index(name, **_where("seq IS NOT NULL"))
    op.drop_table("audit_entry")
