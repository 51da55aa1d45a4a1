from __future__ import annotations

import sqlite3
from collections.abc import Callable
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from alembic import command
from sqlalchemy import Column, Engine, MetaData, String, Table, inspect, select
from sqlalchemy.engine import make_url

from registry.core.db import (
    SQLITE_BUSY_TIMEOUT_MS,
    KeptConnection,
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

    def test_the_replay_table_is_rebuilt_with_every_claim_kept(self, db_url: str) -> None:
        # 0013 makes federation_replay one B-tree (WITHOUT ROWID on SQLite, no expires_at index) by rebuilding
        # it: a claim lost there would make its token usable again. Down and up again, both ways.
        upgrade(db_url, "0012")
        engine = make_engine(db_url)
        replay = Table(
            "federation_replay",
            MetaData(),
            Column("jti", String(64)),
            Column("issuer", String(63)),
            Column("expires_at", UTCDateTime()),
        )
        expires = datetime(2026, 11, 29, 3, 0, 30, 123456, tzinfo=UTC)

        def stored() -> list[tuple[str, str, datetime]]:
            with engine.connect() as connection:
                return [tuple(row) for row in connection.execute(select(replay).order_by(replay.c.jti))]

        def layout() -> tuple[bool, set[str]]:
            inspector = inspect(engine)
            indexes = {str(index["name"]) for index in inspector.get_indexes("federation_replay")}
            if engine.dialect.name != "sqlite":
                return False, indexes
            with engine.connect() as connection:
                sql = connection.exec_driver_sql(
                    "SELECT sql FROM sqlite_master WHERE type = 'table' AND name = 'federation_replay'"
                ).scalar_one()
            return "WITHOUT ROWID" in sql.upper(), indexes

        try:
            with engine.begin() as connection:
                connection.execute(replay.insert(), [{"jti": "a" * 22, "issuer": "rcc-a", "expires_at": expires}])
            claims = [("a" * 22, "rcc-a", expires)]
            upgrade(db_url)
            assert stored() == claims
            assert layout() == (engine.dialect.name == "sqlite", set())
            command.downgrade(_alembic_config(db_url), "0012")
            engine.dispose()
            assert stored() == claims
            assert layout() == (False, {"ix_federation_replay_expires_at"})
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


class TestKeptConnection:
    @staticmethod
    def stored(engine: Engine) -> list[str]:
        with engine.connect() as connection:
            return list(connection.exec_driver_sql("SELECT key FROM node_meta ORDER BY key").scalars())

    @staticmethod
    def insert(key: str) -> Callable[[Any, Any], None]:
        def work(connection: Any, cursor: Any) -> None:
            mark = "?" if type(connection.driver_connection).__module__.startswith("sqlite3") else "%s"
            cursor.execute(f"INSERT INTO node_meta (key, value) VALUES ({mark}, {mark})", (key, "v"))  # noqa: S608

        return work

    def test_each_transaction_commits_over_the_one_kept_connection(self, migrated_db_url: str) -> None:
        engine = make_engine(migrated_db_url)
        kept = KeptConnection(engine)
        try:
            seen: list[int] = []
            for key in ("a", "b"):
                kept.transaction(self.insert(key))
                kept.transaction(lambda connection, _cursor: seen.append(id(connection.driver_connection)))
                assert key in self.stored(engine)  # committed: another connection sees it at once
            assert len(set(seen)) == 1
            assert engine.pool.checkedout() == 1  # kept between transactions, not checked in and out
            kept.release()
            assert engine.pool.checkedout() == 0
        finally:
            engine.dispose()

    def test_a_failed_transaction_stores_nothing_and_the_next_starts_afresh(self, migrated_db_url: str) -> None:
        engine = make_engine(migrated_db_url)
        kept = KeptConnection(engine)
        try:
            kept.transaction(self.insert("a"))
            with pytest.raises(Exception, match=r"(?i)unique|duplicate"):
                kept.transaction(lambda connection, cursor: [self.insert(k)(connection, cursor) for k in ("b", "a")])
            assert self.stored(engine) == ["a"]  # "b" went with the failed transaction
            kept.transaction(self.insert("c"))
            assert self.stored(engine) == ["a", "c"]
            kept.release()
        finally:
            engine.dispose()

    def test_a_connection_that_must_not_wait_fails_at_once_when_sqlite_is_busy(self, tmp_path: Path) -> None:
        url = f"sqlite:///{tmp_path / 'x.db'}"
        upgrade(url)
        engine = make_engine(url)
        kept = KeptConnection(engine, busy_timeout_ms=0)
        try:
            waits = kept.transaction(lambda _connection, cursor: cursor.execute("PRAGMA busy_timeout").fetchone()[0])
            assert waits == 0
            with engine.begin() as other:  # another writer holds SQLite's write lock
                other.exec_driver_sql("INSERT INTO node_meta (key, value) VALUES ('held', 'v')")
                with pytest.raises(sqlite3.OperationalError, match="locked"):
                    kept.transaction(self.insert("a"))
            driver = kept.transaction(lambda connection, _cursor: connection.driver_connection)
            kept.release()
            # Back in the pool, the connection waits for other writers as every connection of the engine does.
            assert driver.execute("PRAGMA busy_timeout").fetchone()[0] == SQLITE_BUSY_TIMEOUT_MS
        finally:
            engine.dispose()
