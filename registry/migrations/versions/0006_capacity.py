"""capacity register: vacancies and secure children's homes

Revision ID: 0006
Revises: 0001
Create Date: 2026-11-28 18:40:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel.sql.sqltypes
from alembic import op


import registry.core.db

revision: str = "0006"
down_revision: str | Sequence[str] | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "capacity_secure_home",
        sa.Column("urn", sqlmodel.sql.sqltypes.AutoString(length=8), nullable=False),
        sa.Column("name", sqlmodel.sql.sqltypes.AutoString(length=300), nullable=False),
        sa.Column("la_code", sqlmodel.sql.sqltypes.AutoString(length=9), nullable=False),
        sa.Column("approved_places", sa.Integer(), nullable=False),
        sa.Column("welfare_beds", sa.Integer(), nullable=False),
        sa.Column("justice_beds", sa.Integer(), nullable=False),
        sa.Column("beds_free", sa.Integer(), nullable=False),
        sa.Column("beds_free_female", sa.Integer(), nullable=False),
        sa.Column("beds_free_male", sa.Integer(), nullable=False),
        sa.Column("min_age", sa.Integer(), nullable=False),
        sa.Column("max_age", sa.Integer(), nullable=False),
        sa.Column("as_of", registry.core.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("valid_until", registry.core.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("updated_at", registry.core.db.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("urn"),
    )
    with op.batch_alter_table("capacity_secure_home", schema=None) as batch_op:
        batch_op.create_index("ix_capacity_secure_home_la_code", ["la_code"], unique=False)
        batch_op.create_index("ix_capacity_secure_home_valid_until", ["valid_until"], unique=False)

    op.create_table(
        "capacity_vacancy",
        sa.Column("id", sqlmodel.sql.sqltypes.AutoString(length=128), nullable=False),
        sa.Column("urn", sqlmodel.sql.sqltypes.AutoString(length=8), nullable=False),
        sa.Column("provider_name", sqlmodel.sql.sqltypes.AutoString(length=300), nullable=False),
        sa.Column("setting_name", sqlmodel.sql.sqltypes.AutoString(length=300), nullable=False),
        sa.Column("setting_type", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("la_code", sqlmodel.sql.sqltypes.AutoString(length=9), nullable=False),
        sa.Column("postcode_district", sqlmodel.sql.sqltypes.AutoString(length=4), nullable=False),
        sa.Column("min_age", sa.Integer(), nullable=False),
        sa.Column("max_age", sa.Integer(), nullable=False),
        sa.Column("sexes_mask", sa.Integer(), nullable=False),
        sa.Column("needs_mask", sa.Integer(), nullable=False),
        sa.Column("needs_count", sa.Integer(), nullable=False),
        sa.Column("beds_free", sa.Integer(), nullable=False),
        sa.Column("weekly_fee_pence", sa.Integer(), nullable=False),
        sa.Column("framework_id", sqlmodel.sql.sqltypes.AutoString(length=128), nullable=True),
        sa.Column("framework_version", sa.Integer(), nullable=True),
        sa.Column("framework_sha256", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=True),
        sa.Column("available_from", sa.Date(), nullable=False),
        sa.Column("as_of", registry.core.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("as_of_epoch", sa.Float(), nullable=False),
        sa.Column("valid_until", registry.core.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("updated_at", registry.core.db.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("capacity_vacancy", schema=None) as batch_op:
        batch_op.create_index("ix_capacity_vacancy_la_code", ["la_code"], unique=False)
        batch_op.create_index("ix_capacity_vacancy_urn", ["urn"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("capacity_vacancy", schema=None) as batch_op:
        batch_op.drop_index("ix_capacity_vacancy_urn")
        batch_op.drop_index("ix_capacity_vacancy_la_code")
    op.drop_table("capacity_vacancy")

    with op.batch_alter_table("capacity_secure_home", schema=None) as batch_op:
        batch_op.drop_index("ix_capacity_secure_home_valid_until")
        batch_op.drop_index("ix_capacity_secure_home_la_code")
    op.drop_table("capacity_secure_home")
