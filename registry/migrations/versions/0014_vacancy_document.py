"""capacity: each vacancy keeps its document as JSON, for a region's answers to peers' searches

``capacity_vacancy.document`` holds the ``vacancy/1`` document as the node serves it. Every region a national
search reaches answers with its best places; writing each from its 19 columns (three timestamps parsed per
row) was half of what an answer cost the region. Written once when the vacancy is stored, it is copied into
the answer as it is. The rows already stored get theirs here, written from their columns as the model writes
them (members in the model's order, no null members, times as pydantic spells them).

Revision ID: 0014
Revises: 0013
Create Date: 2026-11-29 05:45:00.000000
"""

import json
from collections.abc import Sequence
from datetime import UTC, date, datetime
from typing import Any

import sqlalchemy as sa
from alembic import op

revision: str = "0014"
down_revision: str | Sequence[str] | None = "0013"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# The bits of needs_mask and sexes_mask, as registry.capacity.models numbers them (never renumbered).
NEEDS = [
    "emotional-behavioural-difficulties",
    "mental-disorders",
    "learning-disability",
    "physical-disability",
    "sensory-impairment",
    "alcohol",
    "drugs",
    "cse-risk",
    "cce-risk",
    "missing-episodes",
    "self-harm",
    "offending",
    "uasc",
    "parent-and-child",
    "deprivation-of-liberty",
]
SEXES = ["female", "male"]
BATCH = 500


def _time(value: datetime) -> str:
    moment = value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
    text = moment.strftime("%Y-%m-%dT%H:%M:%S")
    return f"{text}.{moment.microsecond:06d}Z" if moment.microsecond else f"{text}Z"


def _day(value: date | str) -> str:
    return value if isinstance(value, str) else value.isoformat()


def _document(row: Any) -> str:
    framework: dict[str, Any] | None = None
    if row.framework_id is not None:
        framework = {"id": row.framework_id}
        if row.framework_version is not None:
            framework["version"] = row.framework_version
        if row.framework_sha256 is not None:
            framework["sha256"] = row.framework_sha256
    document: dict[str, Any] = {
        "as_of": _time(row.as_of),
        "valid_until": _time(row.valid_until),
        "urn": row.urn,
        "provider_name": row.provider_name,
        "setting_name": row.setting_name,
        "setting_type": row.setting_type,
        "la_code": row.la_code,
        "postcode_district": row.postcode_district,
        "age_range": {"min_age": row.min_age, "max_age": row.max_age},
        "sexes": [sex for bit, sex in enumerate(SEXES) if row.sexes_mask >> bit & 1],
        "needs_supported": [need for bit, need in enumerate(NEEDS) if row.needs_mask >> bit & 1],
        "beds_free": row.beds_free,
        "weekly_fee": row.weekly_fee_pence / 100,
        **({} if framework is None else {"framework": framework}),
        "available_from": _day(row.available_from),
        "id": row.id,
    }
    return json.dumps(document, ensure_ascii=False, separators=(",", ":"))


def upgrade() -> None:
    op.add_column("capacity_vacancy", sa.Column("document", sa.Text(), nullable=True))
    connection = op.get_bind()
    table = sa.Table("capacity_vacancy", sa.MetaData(), autoload_with=connection)
    rows = connection.execute(sa.select(table).where(table.c.document.is_(None))).all()
    update = table.update().where(table.c.id == sa.bindparam("key")).values(document=sa.bindparam("text"))
    for start in range(0, len(rows), BATCH):
        connection.execute(update, [{"key": row.id, "text": _document(row)} for row in rows[start : start + BATCH]])
    with op.batch_alter_table("capacity_vacancy", schema=None) as batch_op:
        batch_op.alter_column("document", existing_type=sa.Text(), nullable=False)


def downgrade() -> None:
    with op.batch_alter_table("capacity_vacancy", schema=None) as batch_op:
        batch_op.drop_column("document")
