"""federation: peers' audit tree heads this node has witnessed

Revision ID: 0010
Revises: 0009
Create Date: 2026-11-28 22:30:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel.sql.sqltypes
from alembic import op

import registry.core.db

revision: str = "0010"
down_revision: str | Sequence[str] | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "federation_witnessed_head",
        sa.Column("peer", sqlmodel.sql.sqltypes.AutoString(length=63), nullable=False),
        sa.Column("tree_size", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("root_hash", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("timestamp", registry.core.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("signature", sa.Text(), nullable=False),
        sa.Column("witnessed_at", registry.core.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("verdict", sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
        sa.Column("detail", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("peer", "tree_size", "root_hash"),
    )


def downgrade() -> None:
    op.drop_table("federation_witnessed_head")
