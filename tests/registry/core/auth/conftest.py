"""Fixtures for the auth tests: one in-process node per module (every test registers its own clients, so they
do not interfere, and a database is made and migrated once per module rather than per test), clients in its
database, a key pair posing as a council's identity provider, and a reader of the audit context."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlmodel import Session

from registry.app import create_app
from registry.core.auth import service
from registry.core.auth.models import ClientCreate, ClientCredentials
from registry.core.db import claim_database, make_engine, upgrade
from registry.core.keys import KeyRing
from registry.core.settings import load_settings
from schemas.vocabulary import Role
from tests.registry.core.auth.helpers import AuditCapture
from tests.support.databases import fresh_database
from tests.support.tokens import KeyPair, rsa_pair


@pytest.fixture(scope="module")
def shared_db_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A database migrated to head, shared by one test module."""
    with fresh_database(tmp_path_factory.mktemp("auth-db")) as url:
        upgrade(url)
        yield url


@pytest.fixture(scope="module")
def app(shared_db_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[FastAPI]:
    """One in-process node per module (overrides the per-test ``app``; ``client`` and helpers use it)."""
    settings = load_settings(
        data_dir=Path(tmp_path_factory.mktemp("auth-node")),
        node_id="rcc-test",
        name="Test RCC",
        database_url=shared_db_url,
        base_url="http://testserver",
    )
    engine = make_engine(shared_db_url)
    claim_database(engine, settings.node_id)
    yield create_app(settings, keys=KeyRing.generate(), engine=engine)
    engine.dispose()


@pytest.fixture(scope="module")
def _audited_module(app: FastAPI) -> Iterator[tuple[TestClient, AuditCapture]]:
    capture = AuditCapture(app)
    with TestClient(capture, raise_server_exceptions=False) as http:
        yield http, capture


@pytest.fixture
def make_client(app: FastAPI):
    """Register a client in the in-process node's database; returns its credentials (secret in clear)."""

    def make(*roles: Role | str, name: str = "Test app", jwk: dict[str, Any] | None = None) -> ClientCredentials:
        with Session(app.state.node.engine) as session:
            created = service.create(session, data=ClientCreate(name=name, roles=[Role(r) for r in roles], jwk=jwk))
            session.commit()
        return created

    return make


@pytest.fixture
def audited(_audited_module: tuple[TestClient, AuditCapture]) -> tuple[TestClient, AuditCapture]:
    """A TestClient whose requests' audit contexts can be read back (this test's only)."""
    _audited_module[1].contexts.clear()
    return _audited_module


@pytest.fixture(scope="session")
def idp_rsa() -> KeyPair:
    """An RSA key pair acting as a council's identity provider (made once: RSA generation is slow)."""
    return rsa_pair("council-1")
