"""Shared fixtures: a fresh database per test on the run's engine, in-process nodes for unit tests."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from registry.app import create_app
from registry.core.db import claim_database, make_engine, upgrade
from registry.core.keys import KeyRing
from registry.core.settings import Settings, load_settings
from tests.support.databases import fresh_database


@pytest.fixture
def db_url(tmp_path: Path) -> Iterator[str]:
    """An empty database on the engine this run targets (SQLite by default, PostgreSQL with RCC_TEST_ENGINE)."""
    with fresh_database(tmp_path) as url:
        yield url


@pytest.fixture
def migrated_db_url(db_url: str) -> str:
    """A database migrated to head."""
    upgrade(db_url)
    return db_url


@pytest.fixture
def settings(tmp_path: Path, migrated_db_url: str) -> Settings:
    """Settings of a regional test node whose database is migrated."""
    return load_settings(
        data_dir=tmp_path,
        node_id="rcc-test",
        name="Test RCC",
        database_url=migrated_db_url,
        base_url="http://testserver",
    )


@pytest.fixture
def keys() -> KeyRing:
    """An in-memory key ring."""
    return KeyRing.generate()


@pytest.fixture
def app(settings: Settings, keys: KeyRing) -> Iterator[FastAPI]:
    """An in-process node (unit tests only; integration tests start real processes)."""
    engine = make_engine(settings.effective_database_url)
    claim_database(engine, settings.node_id)
    application = create_app(settings, keys=keys, engine=engine)
    yield application
    engine.dispose()


@pytest.fixture
def client(app: FastAPI) -> Iterator[TestClient]:
    """A TestClient on the in-process node."""
    with TestClient(app, raise_server_exceptions=False) as test_client:
        yield test_client
