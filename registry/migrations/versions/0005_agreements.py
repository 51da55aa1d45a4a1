"""agreements: immutable document versions, party signatures, signed lifecycle events, write counter

Revision ID: 0005
Revises: 0001
Create Date: 2026-11-28 18:18:50.905525
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel.sql.sqltypes
from alembic import op


import registry.core.db

revision: str = "0005"
down_revision: str | Sequence[str] | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    revision_table = op.create_table(
        "agreement_revision",
        sa.Column("id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("revision", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    # The one row every agreement write bumps; present from the start so writers only ever UPDATE it.
    op.bulk_insert(revision_table, [{"id": 1, "revision": 0}])
    op.create_table(
        "agreement_version",
        sa.Column("agreement_id", sqlmodel.sql.sqltypes.AutoString(length=128), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("sha256", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("document", sa.Text(), nullable=False),
        sa.Column("schema_version", sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
        sa.Column("origin", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("recorded_at", registry.core.db.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("agreement_id", "version"),
        sa.UniqueConstraint("sha256"),
    )
    op.create_table(
        "agreement_event",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("sha256", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("document_sha256", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("agreement_id", sqlmodel.sql.sqltypes.AutoString(length=128), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("type", sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
        sa.Column("by_node", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("at", registry.core.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("event", sa.Text(), nullable=False),
        sa.Column("kid", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("jwk", sqlmodel.sql.sqltypes.AutoString(length=512), nullable=False),
        sa.Column("jws", sa.Text(), nullable=False),
        sa.Column("recorded_at", registry.core.db.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["document_sha256"], ["agreement_version.sha256"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("sha256"),
    )
    with op.batch_alter_table("agreement_event", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_agreement_event_document_sha256"), ["document_sha256"], unique=False)
    op.create_table(
        "agreement_signature",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("document_sha256", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("agreement_id", sqlmodel.sql.sqltypes.AutoString(length=128), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("node_id", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("kid", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("jwk", sqlmodel.sql.sqltypes.AutoString(length=512), nullable=False),
        sa.Column("jws", sa.Text(), nullable=False),
        sa.Column("recorded_at", registry.core.db.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["document_sha256"], ["agreement_version.sha256"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("document_sha256", "node_id", name="uq_agreement_signature_party"),
    )
    with op.batch_alter_table("agreement_signature", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_agreement_signature_document_sha256"), ["document_sha256"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("agreement_signature", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_agreement_signature_document_sha256"))
    op.drop_table("agreement_signature")
    with op.batch_alter_table("agreement_event", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_agreement_event_document_sha256"))
    op.drop_table("agreement_event")
    op.drop_table("agreement_version")
    op.drop_table("agreement_revision")
