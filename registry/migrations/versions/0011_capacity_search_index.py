"""capacity: what the local placement search needs to narrow its scan

``la_number`` (the LA code's digits as an integer, filled in for the rows already stored) and
``ix_capacity_vacancy_search``, the covering index the search reads its candidates from (see
``registry.capacity.models.Vacancy``).

Revision ID: 0011
Revises: 0010
Create Date: 2026-11-29 00:05:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0011"
down_revision: str | Sequence[str] | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

SEARCH_INDEX_COLUMNS = [
    "min_age",
    "max_age",
    "sexes_mask",
    "beds_free",
    "needs_mask",
    "needs_count",
    "weekly_fee_pence",
    "la_number",
    "as_of_epoch",
    "available_from",
    "valid_until",
    "setting_type",
    "id",
]


def upgrade() -> None:
    op.add_column("capacity_vacancy", sa.Column("la_number", sa.Integer(), nullable=True))
    # Every stored la_code matched E(06|07|08|09|10) and six digits, so the cast never fails on either engine.
    op.execute("UPDATE capacity_vacancy SET la_number = CAST(substr(la_code, 2) AS INTEGER)")
    with op.batch_alter_table("capacity_vacancy", schema=None) as batch_op:
        batch_op.alter_column("la_number", existing_type=sa.Integer(), nullable=False)
        batch_op.create_index("ix_capacity_vacancy_search", SEARCH_INDEX_COLUMNS, unique=False)


def downgrade() -> None:
    with op.batch_alter_table("capacity_vacancy", schema=None) as batch_op:
        batch_op.drop_index("ix_capacity_vacancy_search")
        batch_op.drop_column("la_number")
