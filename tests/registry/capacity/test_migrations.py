"""Migrations of the vacancy table: rows stored before 0011 and 0014 are searched as if stored after them."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest
from alembic import command
from sqlalchemy import MetaData, Table, insert, inspect, select
from sqlmodel import Session

from registry.capacity import search, service
from registry.capacity.models import SearchRequest, SearchResponse, VacancyDocument, la_number
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
                del columns["la_number"], columns["document"]
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


def test_rows_stored_before_0014_get_the_document_the_model_writes_and_0014_comes_off_cleanly(db_url: str) -> None:
    upgrade(db_url, "0013")
    engine = make_engine(db_url)
    documents = [
        VacancyDocument.model_validate(vacancy(NOW, "kent")),
        VacancyDocument.model_validate(
            vacancy(
                NOW,
                "pinned",
                la_code=BRIGHTON,
                framework={"id": "se-framework", "version": 2, "sha256": "ab" * 32},
                provider_name='Quote " and caf\u00e9 (synthetic)',
                weekly_fee=1234.57,
                as_of="2026-03-02T08:00:00.250000Z",
                sexes=["female"],
                needs_supported=["cse-risk", "emotional-behavioural-difficulties"],
            )
        ),
        VacancyDocument.model_validate(
            vacancy(NOW, "framework-only", la_code=MANCHESTER, framework={"id": "gm-framework"}, needs_supported=[])
        ),
    ]
    try:
        table = Table("capacity_vacancy", MetaData(), autoload_with=engine)
        assert "document" not in table.c
        with engine.begin() as connection:
            for document in documents:
                columns = service._vacancy_columns(document, now=NOW)
                del columns["document"]
                connection.execute(insert(table).values(id=document.id, **columns))

        upgrade(db_url, "0014")
        table = Table("capacity_vacancy", MetaData(), autoload_with=engine)
        assert not table.c.document.nullable
        with engine.connect() as connection:
            stored = dict(connection.execute(select(table.c.id, table.c.document)).all())
        assert {key: json.loads(text) for key, text in stored.items()} == {
            document.id: json.loads(document.model_dump_json()) for document in documents
        }
        with Session(engine) as session:
            wanted = SearchRequest.model_validate(search_request(NOW, sex="female", needs=[]))
            content, count = search.search_local_json(session, wanted, now=NOW, node_id="rcc-test", region_code=None)
            results = search.search_local(session, wanted, now=NOW, node_id="rcc-test", region_code=None)
        assert count == 3
        assert json.loads(content) == json.loads(
            SearchResponse(results=results, peers=[], generated_at=NOW).model_dump_json()
        )

        command.downgrade(_alembic_config(db_url), "0013")
        assert "document" not in {c["name"] for c in inspect(engine).get_columns("capacity_vacancy")}
        with engine.connect() as connection:
            assert connection.execute(select(table.c.id).order_by(table.c.id)).scalars().all() == [
                "framework-only",
                "kent",
                "pinned",
            ]
    finally:
        engine.dispose()
