from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
from alembic import command
from sqlalchemy import Column, MetaData, Table, select
from sqlalchemy.engine import make_url

from registry.core.db import (
    UTCDateTime,
    _alembic_config,
    claim_database,
    current_revisions,
    database_owner,
    head_revisions,
    make_engine,
    upgrade,
)

pytestmark = pytest.mark.postgres


class TestMigrations:
    def test_upgrade_head_on_an_empty_database_matches_the_models(self, db_url: str) -> None:
        upgrade(db_url)
        engine = make_engine(db_url)
        try:
            assert current_revisions(engine) == head_revisions()
        finally:
            engine.dispose()
        command.check(_alembic_config(db_url))  # raises if models and migrations differ

    def test_upgrade_is_idempotent(self, db_url: str) -> None:
        upgrade(db_url)
        upgrade(db_url)
        engine = make_engine(db_url)
        try:
            assert current_revisions(engine) == head_revisions()
        finally:
            engine.dispose()


class TestUTCDateTime:
    def test_timestamps_come_back_aware_and_in_utc(self, db_url: str) -> None:
        metadata = MetaData()
        table = Table("t_when", metadata, Column("at", UTCDateTime()))
        engine = make_engine(db_url)
        try:
            metadata.create_all(engine)
            summer = datetime(2026, 7, 1, 12, 30, tzinfo=timezone(timedelta(hours=1)))
            with engine.begin() as connection:
                connection.execute(table.insert().values(at=summer))
            with engine.connect() as connection:
                (loaded,) = connection.execute(select(table.c.at)).one()
            assert loaded.tzinfo is not None
            assert loaded == summer
            assert loaded.utcoffset() == timedelta(0)
        finally:
            engine.dispose()

    def test_naive_datetimes_are_refused(self, db_url: str) -> None:
        metadata = MetaData()
        table = Table("t_naive", metadata, Column("at", UTCDateTime()))
        engine = make_engine(db_url)
        try:
            metadata.create_all(engine)
            with pytest.raises(Exception, match="naive"), engine.begin() as connection:
                connection.execute(table.insert().values(at=datetime(2026, 1, 1)))
        finally:
            engine.dispose()


class TestDatabaseOwnership:
    def test_a_database_belongs_to_the_first_node_that_claims_it(self, migrated_db_url: str) -> None:
        engine = make_engine(migrated_db_url)
        try:
            claim_database(engine, "rcc-se")
            claim_database(engine, "rcc-se")
            assert database_owner(engine) == "rcc-se"
            with pytest.raises(ValueError, match="belongs to node 'rcc-se'"):
                claim_database(engine, "rcc-gm")
        finally:
            engine.dispose()


class TestEngine:
    def test_sqlite_runs_in_wal_mode_with_foreign_keys(self, tmp_path) -> None:
        engine = make_engine(f"sqlite:///{tmp_path / 'x.db'}")
        try:
            with engine.connect() as connection:
                assert connection.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
                assert connection.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
        finally:
            engine.dispose()

    def test_database_url_engine_matches_the_run(self, db_url: str) -> None:
        assert make_url(db_url).get_backend_name() in ("sqlite", "postgresql")
        assert datetime.now(UTC).tzinfo is UTC
