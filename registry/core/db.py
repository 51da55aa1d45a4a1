"""Storage: one SQLAlchemy engine per node, sessions per request, and the migration entry points.

SQLite (WAL, foreign keys on, a busy timeout) is the embedded default; PostgreSQL (psycopg 3) is the
production engine. Both give the same behaviour to the code above, including timezone-aware datetimes
(:class:`UTCDateTime`). The schema changes only through alembic migrations in ``registry/migrations``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any, TypeVar

from fastapi import Depends, Request
from sqlalchemy import DateTime, Engine, TypeDecorator, event, text
from sqlalchemy.engine import Dialect
from sqlalchemy.pool import ConnectionPoolEntry, PoolProxiedConnection
from sqlmodel import Field, Session, SQLModel, create_engine

MIGRATIONS_LOCATION = "registry:migrations"
SQLITE_BUSY_TIMEOUT_MS = 30_000  # what every SQLite connection of the engine waits for another writer
_T = TypeVar("_T")


class UTCDateTime(TypeDecorator[datetime]):
    """A timestamp stored in UTC and always returned timezone-aware.

    SQLite hands back naive datetimes even for ``DateTime(timezone=True)`` while PostgreSQL hands back
    aware ones; without this, validity windows would compare differently per engine.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:  # noqa: ARG002
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def utcnow() -> datetime:
    """The current time, aware, in UTC: the only clock the product's code reads."""
    return datetime.now(UTC)


class NodeMeta(SQLModel, table=True):
    """Facts about the database itself; ``node_id`` guards against pointing a node at another node's database."""

    __tablename__ = "node_meta"

    key: str = Field(primary_key=True, max_length=64)
    value: str = Field(max_length=1024)


def make_engine(url: str) -> Engine:
    """Create the node's engine with the per-engine settings the product relies on."""
    if url.startswith("sqlite"):
        path = url.removeprefix("sqlite:///")
        if path and path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30})
        event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    return create_engine(url, pool_pre_ping=True, pool_size=10, max_overflow=20)


def _sqlite_pragmas(dbapi_connection: Any, _record: ConnectionPoolEntry) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


def _alembic_config(url: str) -> Any:
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", MIGRATIONS_LOCATION)
    config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return config


def upgrade(url: str, revision: str = "heads") -> None:
    """Bring the database at ``url`` to the newest schema (what ``rcc-node init`` and ``serve`` run)."""
    from alembic import command

    command.upgrade(_alembic_config(url), revision)


def head_revisions() -> set[str]:
    """The revisions a fully migrated database is at."""
    from alembic.script import ScriptDirectory

    return set(ScriptDirectory.from_config(_alembic_config("sqlite://")).get_heads())


def current_revisions(engine: Engine) -> set[str]:
    """The revisions the database is at now (empty if it was never migrated)."""
    from alembic.runtime.migration import MigrationContext

    with engine.connect() as connection:
        return set(MigrationContext.configure(connection).get_current_heads())


def ping(engine: Engine) -> None:
    """Raise if the database cannot answer a trivial query."""
    with engine.connect() as connection:
        connection.execute(text("SELECT 1"))


def claim_database(engine: Engine, node_id: str) -> None:
    """Record which node owns this database, or raise if another node already does."""
    with Session(engine) as session:
        owner = session.get(NodeMeta, "node_id")
        if owner is None:
            session.add(NodeMeta(key="node_id", value=node_id))
            session.commit()
        elif owner.value != node_id:
            raise ValueError(f"database belongs to node {owner.value!r}, not {node_id!r}")


def database_owner(engine: Engine) -> str | None:
    """The node id recorded in the database, if any."""
    with Session(engine) as session:
        owner = session.get(NodeMeta, "node_id")
        return owner.value if owner else None


def get_session(request: Request) -> Iterator[Session]:
    """One session per request; commits when the route returns, before the response is sent.

    Used with ``scope="function"`` (see :data:`SessionDep`) so a failed commit turns into an error
    response instead of a 200 for something that was never stored.
    """
    engine: Engine = request.app.state.node.engine
    with Session(engine) as session:
        try:
            yield session
            session.commit()
        except BaseException:
            session.rollback()
            raise


SessionDep = Annotated[Session, Depends(get_session, scope="function")]


class KeptConnection:
    """One DBAPI connection kept between the short write transactions of a hot path (a per-request insert).

    What SQLAlchemy's Core execution adds per call (a pool check-out, compiled-statement lookup, result
    set-up, events) costs more than such an insert itself, so these go straight to the driver over a
    connection checked out once. :meth:`transaction` runs one transaction on it and commits; if anything
    fails, the connection is discarded (the next transaction checks out a fresh one), so a broken or
    half-finished connection is never reused.

    ``busy_timeout_ms`` (SQLite only) is how long this connection waits for another writer; 0 makes a write
    fail at once, for callers that would rather hand the work elsewhere than block. The engine's own setting
    is restored when the connection goes back to the pool.
    """

    def __init__(self, engine: Engine, *, busy_timeout_ms: int | None = None) -> None:
        self.engine = engine
        self._busy_timeout_ms = busy_timeout_ms if engine.dialect.name == "sqlite" else None
        self._connection: PoolProxiedConnection | None = None

    def transaction(self, work: Callable[[PoolProxiedConnection, Any], _T]) -> _T:
        """``work(connection, cursor)`` in one transaction, then commit; raises whatever the driver raises.

        ``work`` may roll back and write again on the same cursor (the transaction is then the second try).
        """
        connection, self._connection = self._connection or self._connect(), None
        try:
            cursor = connection.cursor()
            try:
                result = work(connection, cursor)
            finally:
                cursor.close()
            connection.commit()
        except BaseException:
            connection.invalidate()
            raise
        self._connection = connection
        return result

    def release(self) -> None:
        """Return the kept connection to the pool (when idle, and on stop); the next transaction takes another."""
        connection, self._connection = self._connection, None
        if connection is not None:
            if self._busy_timeout_ms is not None:
                _execute_driver(connection, f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
            connection.close()

    def _connect(self) -> PoolProxiedConnection:
        connection = self.engine.raw_connection()
        if self._busy_timeout_ms is not None:
            _execute_driver(connection, f"PRAGMA busy_timeout={int(self._busy_timeout_ms)}")
        return connection


def _execute_driver(connection: PoolProxiedConnection, statement: str) -> None:
    cursor = connection.cursor()
    try:
        cursor.execute(statement)
    finally:
        cursor.close()
