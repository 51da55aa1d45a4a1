"""statistics register: episodes and signed releases

Revision ID: 0008
Revises: 0001
Create Date: 2026-11-28 19:28:44.527372
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel.sql.sqltypes
from alembic import op


import registry.core.db

revision: str = "0008"
down_revision: str | Sequence[str] | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "statistics_episode",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("la", sqlmodel.sql.sqltypes.AutoString(length=9), nullable=False),
        sa.Column("year", sa.Integer(), nullable=False),
        sa.Column("pseudonym", sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
        sa.Column("sex", sqlmodel.sql.sqltypes.AutoString(length=1), nullable=False),
        sa.Column("birth_month", sa.Date(), nullable=False),
        sa.Column("ethnic", sqlmodel.sql.sqltypes.AutoString(length=4), nullable=False),
        sa.Column("uasc", sa.Boolean(), nullable=False),
        sa.Column("decom", sa.Date(), nullable=False),
        sa.Column("rne", sqlmodel.sql.sqltypes.AutoString(length=1), nullable=False),
        sa.Column("ls", sqlmodel.sql.sqltypes.AutoString(length=2), nullable=False),
        sa.Column("cin", sqlmodel.sql.sqltypes.AutoString(length=2), nullable=False),
        sa.Column("place", sqlmodel.sql.sqltypes.AutoString(length=4), nullable=False),
        sa.Column("place_provider", sqlmodel.sql.sqltypes.AutoString(length=3), nullable=True),
        sa.Column("dec", sa.Date(), nullable=True),
        sa.Column("rec", sqlmodel.sql.sqltypes.AutoString(length=3), nullable=True),
        sa.Column("reason_place_change", sqlmodel.sql.sqltypes.AutoString(length=6), nullable=True),
        sa.Column("home_district", sqlmodel.sql.sqltypes.AutoString(length=4), nullable=True),
        sa.Column("placement_district", sqlmodel.sql.sqltypes.AutoString(length=4), nullable=True),
        sa.Column("urn", sqlmodel.sql.sqltypes.AutoString(length=10), nullable=True),
        sa.Column("placement_group", sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
        sa.Column("age_at_31_march", sa.Integer(), nullable=False),
        sa.Column("outside_la", sa.Boolean(), nullable=True),
        sa.Column("at_distance", sa.Boolean(), nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("statistics_episode", schema=None) as batch_op:
        batch_op.create_index("ix_statistics_episode_la_year", ["la", "year"], unique=False)

    op.create_table(
        "statistics_release",
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("year", sa.Integer(), nullable=False),
        sa.Column("area_code", sqlmodel.sql.sqltypes.AutoString(length=9), nullable=False),
        sa.Column("built_at", registry.core.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("threshold", sa.Integer(), nullable=False),
        sa.Column("las", sqlmodel.sql.sqltypes.AutoString(length=4000), nullable=False),
        sa.Column("missing", sqlmodel.sql.sqltypes.AutoString(length=4000), nullable=False),
        sa.PrimaryKeyConstraint("version"),
    )
    with op.batch_alter_table("statistics_release", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_statistics_release_year"), ["year"], unique=False)

    op.create_table(
        "statistics_release_table",
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("name", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("document", sa.Text(), nullable=False),
        sa.Column("signature", sqlmodel.sql.sqltypes.AutoString(length=1024), nullable=False),
        sa.ForeignKeyConstraint(
            ["version"],
            ["statistics_release.version"],
        ),
        sa.PrimaryKeyConstraint("version", "name"),
    )


def downgrade() -> None:
    op.drop_table("statistics_release_table")
    with op.batch_alter_table("statistics_release", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_statistics_release_year"))

    op.drop_table("statistics_release")
    with op.batch_alter_table("statistics_episode", schema=None) as batch_op:
        batch_op.drop_index("ix_statistics_episode_la_year")

    op.drop_table("statistics_episode")
