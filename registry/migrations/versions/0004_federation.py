"""federation: replay cache and held directories

Revision ID: 0004
Revises: 0001
Create Date: 2026-11-28 18:40:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel.sql.sqltypes
from alembic import op


import registry.core.db

revision: str = "0004"
down_revision: str | Sequence[str] | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "federation_directory",
        sa.Column("serial", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("issued_at", registry.core.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("expires_at", registry.core.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("digest", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("source", sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
        sa.Column("envelope", sa.Text(), nullable=False),
        sa.Column("loaded_at", registry.core.db.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("serial"),
    )
    op.create_table(
        "federation_replay",
        sa.Column("jti", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("issuer", sqlmodel.sql.sqltypes.AutoString(length=63), nullable=False),
        sa.Column("expires_at", registry.core.db.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("jti"),
    )
    with op.batch_alter_table("federation_replay", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_federation_replay_expires_at"), ["expires_at"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("federation_replay", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_federation_replay_expires_at"))
    op.drop_table("federation_replay")
    op.drop_table("federation_directory")
