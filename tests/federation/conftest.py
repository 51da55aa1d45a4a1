"""In-process federated nodes for unit tests: a node that holds a signed directory listing a test peer."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from fastapi import FastAPI
from fastapi.testclient import TestClient
from starlette.types import ASGIApp, Receive, Scope, Send

from registry.app import create_app
from registry.core.db import claim_database, make_engine
from registry.core.keys import KeyRing
from registry.core.settings import Settings
from tests.support.federation import PeerIdentity, directory, operator_jwks, ring_entry, sign, write_json


class AuditRecorder:
    """Keeps each request's audit context after the response (what the audit middleware would persist)."""

    def __init__(self, app: ASGIApp, *, sink: list[Any]) -> None:
        self.app = app
        self.sink = sink

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self.app(scope, receive, send)
        if scope["type"] == "http":
            self.sink.append((scope["path"], (scope.get("state") or {}).get("audit")))


@pytest.fixture
def operator() -> KeyRing:
    return KeyRing.generate()


@pytest.fixture
def peer() -> PeerIdentity:
    return PeerIdentity("rcc-peer", retired=[Ed25519PrivateKey.generate()])


@pytest.fixture
def fed_settings(settings: Settings, tmp_path: Path, keys: KeyRing, operator: KeyRing, peer: PeerIdentity) -> Settings:
    document = directory([ring_entry("rcc-test", "http://testserver", keys), peer.entry()])
    path = write_json(tmp_path / "directory.json", sign(document, operator))
    return settings.model_copy(update={"operator_jwks": operator_jwks(operator), "directory_file": path})


@pytest.fixture
def audits() -> list[Any]:
    return []


@pytest.fixture
def fed_app(fed_settings: Settings, keys: KeyRing, audits: list[Any]) -> Iterator[FastAPI]:
    engine = make_engine(fed_settings.effective_database_url)
    claim_database(engine, fed_settings.node_id)
    application = create_app(fed_settings, keys=keys, engine=engine)
    application.add_middleware(AuditRecorder, sink=audits)
    yield application
    engine.dispose()


@pytest.fixture
def fed_client(fed_app: FastAPI) -> Iterator[TestClient]:
    with TestClient(fed_app, raise_server_exceptions=False) as test_client:
        yield test_client
