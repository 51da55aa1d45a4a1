"""A migrated database and a session on it, for the capacity register's storage tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from sqlalchemy import Engine
from sqlmodel import Session

from registry.core.db import make_engine


@pytest.fixture
def engine(migrated_db_url: str) -> Iterator[Engine]:
    """The engine of a fresh, migrated database on the run's engine (SQLite or PostgreSQL)."""
    engine = make_engine(migrated_db_url)
    yield engine
    engine.dispose()


@pytest.fixture
def session(engine: Engine) -> Iterator[Session]:
    """A session whose work the test commits (or not) itself."""
    with Session(engine) as session:
        yield session
