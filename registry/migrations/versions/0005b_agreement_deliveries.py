"""agreements: outbox of deliveries to the other parties' nodes

Revision ID: 0005b
Revises: 0001
Create Date: 2026-11-28 19:40:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel.sql.sqltypes
from alembic import op


import registry.core.db

revision: str = "0005b"
down_revision: str | Sequence[str] | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "agreement_delivery",
        sa.Column("agreement_id", sqlmodel.sql.sqltypes.AutoString(length=128), nullable=False),
        sa.Column("to_node", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("generation", sa.Integer(), nullable=False),
        sa.Column("state", sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("queued_at", registry.core.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("next_attempt_at", registry.core.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("last_attempt_at", registry.core.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("delivered_at", registry.core.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("outcome", sqlmodel.sql.sqltypes.AutoString(length=32), nullable=True),
        sa.Column("status", sa.Integer(), nullable=True),
        sa.Column("detail", sqlmodel.sql.sqltypes.AutoString(length=512), nullable=True),
        sa.PrimaryKeyConstraint("agreement_id", "to_node"),
    )
    with op.batch_alter_table("agreement_delivery", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_agreement_delivery_state"), ["state"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("agreement_delivery", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_agreement_delivery_state"))
    op.drop_table("agreement_delivery")
