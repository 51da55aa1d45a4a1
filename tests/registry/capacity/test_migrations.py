"""Migration 0011: vacancies stored before it get their ``la_number`` and are searched as if stored after it."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from alembic import command
from sqlalchemy import MetaData, Table, insert, inspect, select
from sqlmodel import Session

from registry.capacity import search, service
from registry.capacity.models import SearchRequest, VacancyDocument, la_number
from registry.core.db import _alembic_config, make_engine, upgrade
from tests.registry.capacity.factories import BRIGHTON, KENT, MANCHESTER, search_request, vacancy

pytestmark = pytest.mark.postgres

NOW = datetime(2026, 3, 2, 9, 30, tzinfo=UTC)


def test_rows_stored_before_0011_are_numbered_and_found_and_0011_comes_off_cleanly(db_url: str) -> None:
    upgrade(db_url, "0010")
    engine = make_engine(db_url)
    try:
        table = Table("capacity_vacancy", MetaData(), autoload_with=engine)
        assert "la_number" not in table.c
        with engine.begin() as connection:
            for vacancy_id, la_code in (("kent", KENT), ("brighton", BRIGHTON), ("manchester", MANCHESTER)):
                document = VacancyDocument.model_validate(vacancy(NOW, vacancy_id, la_code=la_code))
                columns = service._vacancy_columns(document, now=NOW)
                del columns["la_number"]
                connection.execute(insert(table).values(id=vacancy_id, **columns))

        upgrade(db_url, "0011")
        table = Table("capacity_vacancy", MetaData(), autoload_with=engine)
        with engine.connect() as connection:
            numbers = {row.id: row.la_number for row in connection.execute(select(table.c.id, table.c.la_number))}
        assert numbers == {
            "kent": la_number(KENT),
            "brighton": la_number(BRIGHTON),
            "manchester": la_number(MANCHESTER),
        }
        assert not table.c.la_number.nullable
        with Session(engine) as session:
            wanted = SearchRequest.model_validate(search_request(NOW))
            results = search.search_local(session, wanted, now=NOW, node_id="rcc-test", region_code=None)
        assert [(r.vacancy.id, r.distance_miles) for r in results] == [
            ("kent", 0.0),
            ("brighton", search.distance(KENT, BRIGHTON)),
            ("manchester", search.distance(KENT, MANCHESTER)),
        ]

        command.downgrade(_alembic_config(db_url), "0010")
        inspector = inspect(engine)
        assert "la_number" not in {c["name"] for c in inspector.get_columns("capacity_vacancy")}
        assert "ix_capacity_vacancy_search" not in {i["name"] for i in inspector.get_indexes("capacity_vacancy")}
        with engine.connect() as connection:
            assert connection.execute(select(table.c.id).order_by(table.c.id)).scalars().all() == [
                "brighton",
                "kent",
                "manchester",
            ]
    finally:
        engine.dispose()
