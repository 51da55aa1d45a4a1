"""Join the per-feature migrations into one head so `alembic upgrade head` works.

Revision ID: 0009
Revises: 0002, 0003, 0004, 0005, 0005b, 0006, 0007, 0008
"""

from collections.abc import Sequence

revision: str = "0009"
down_revision: str | Sequence[str] | None = ("0002", "0003", "0004", "0005", "0005b", "0006", "0007", "0008")
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
