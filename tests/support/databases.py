"""A fresh database per test, on the engine the run asks for (RCC_TEST_ENGINE=sqlite|postgres), and a node on one."""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from fastapi import FastAPI
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from registry.app import create_app
from registry.core.db import claim_database, make_engine, upgrade
from registry.core.keys import KeyRing
from registry.core.settings import load_settings

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


@contextmanager
def node_on_fresh_database(tmp_path_factory: pytest.TempPathFactory, node_id: str, label: str) -> Iterator[FastAPI]:
    """An in-process node (unit tests only) on its own migrated database, for a module's tests to share."""
    with fresh_database(tmp_path_factory.mktemp(f"{label}-db")) as url:
        upgrade(url)
        settings = load_settings(
            data_dir=Path(tmp_path_factory.mktemp(label)),
            node_id=node_id,
            name="Test RCC",
            database_url=url,
            base_url="http://testserver",
        )
        engine = make_engine(url)
        claim_database(engine, node_id)
        try:
            yield create_app(settings, keys=KeyRing.generate(), engine=engine)
        finally:
            engine.dispose()
