"""A fresh database per test, on the engine the run asks for (RCC_TEST_ENGINE=sqlite|postgres)."""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

DEFAULT_POSTGRES_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"


def engine_name() -> str:
    """Which engine this test run targets."""
    return os.environ.get("RCC_TEST_ENGINE", "sqlite")


def postgres_admin_url() -> str:
    """The PostgreSQL database the suite may create and drop test databases from."""
    return os.environ.get("RCC_TEST_POSTGRES_URL", DEFAULT_POSTGRES_URL)


@contextmanager
def postgres_database() -> Iterator[str]:
    """Create a throw-away PostgreSQL database; drop it afterwards. Fails (never skips) when unreachable."""
    admin_url = postgres_admin_url()
    name = f"rcc_t_{secrets.token_hex(6)}"
    admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as connection:
            connection.execute(text(f'CREATE DATABASE "{name}"'))
    except Exception as exc:
        admin.dispose()
        pytest.fail(f"PostgreSQL not reachable at {admin_url}: {exc}")
    try:
        yield make_url(admin_url).set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@contextmanager
def fresh_database(tmp_path: Path, engine: str | None = None) -> Iterator[str]:
    """A new, empty database URL on the requested engine (default: the run's engine)."""
    if (engine or engine_name()) == "postgres":
        with postgres_database() as url:
            yield url
    else:
        yield f"sqlite:///{(tmp_path / 'node.db').as_posix()}"
