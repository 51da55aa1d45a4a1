"""Fixtures for the audit log's tests: one migrated database per module, emptied before each test.

Creating and migrating a PostgreSQL database costs seconds, and these tests only ever touch the audit
tables, so each module shares one database (and one in-process node) and every test starts from an empty log.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import Engine, delete, update

from registry.app import create_app
from registry.core.audit.context import AuditContext
from registry.core.audit.entry import PreparedEntry, build_entry
from registry.core.audit.log import ENTRY, HEAD, NODE, AuditLog
from registry.core.audit.recording import audit_log
from registry.core.db import claim_database, make_engine, upgrade, utcnow
from registry.core.keys import KeyRing
from registry.core.settings import Settings, load_settings
from tests.support.databases import fresh_database

ACTORS = ["client-a", "client-b", "rcc-gm"]
PEERS = [None, "rcc-gm", "rcc-ldn"]
EMPTY_ROOT = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"


def sample_entry(i: int, *, node_id: str = "rcc-test") -> PreparedEntry:
    """A varied, deterministic entry number ``i`` (actor, peer, decision, dataset cycle through values)."""
    context = AuditContext(
        actor_type="client" if i % 3 else "node",
        actor_id=ACTORS[i % 3],
        roles=["governance"] if i % 2 else ["commissioner"],
        peer=PEERS[i % 3],
        dataset="capacity.vacancies" if i % 2 else "statistics.looked-after",
        purpose="placement-search",
        agreement=f"agr-{i % 4}",
        result_count=i,
    )
    if i % 5 == 0:
        context.deny("no-agreement")
    else:
        context.permit()
    return build_entry(
        node_id=node_id,
        direction="inbound",
        action=f"test.action{i % 2}",
        context=context,
        time=utcnow() - timedelta(seconds=1000 - i),
        request_id=f"req-{i}",
        method="GET",
        status=403 if i % 5 == 0 else 200,
        request_sha256="00" * 32,
        response_sha256="11" * 32,
    )


def empty_log(engine: Engine) -> None:
    """Remove every entry, node and signed head: the log as a fresh migration leaves it."""
    with engine.begin() as conn:
        conn.execute(delete(ENTRY))
        conn.execute(delete(NODE))
        conn.execute(
            update(HEAD).values(node_id=None, tree_size=0, root_hash=EMPTY_ROOT, signed_at=None, signature=None)
        )


def fill(log: AuditLog, count: int, start: int = 0) -> list[PreparedEntry]:
    """Insert ``count`` sample entries (durably, unsequenced) and return them in insertion order."""
    entries = [sample_entry(i) for i in range(start, start + count)]
    log.insert_now(entries)
    return entries


@pytest.fixture(scope="module")
def shared_db_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """One migrated database for the whole module, on the run's engine."""
    with fresh_database(tmp_path_factory.mktemp("audit-db")) as url:
        upgrade(url)
        yield url


@pytest.fixture(scope="module")
def module_settings(shared_db_url: str, tmp_path_factory: pytest.TempPathFactory) -> Settings:
    return load_settings(
        data_dir=tmp_path_factory.mktemp("node"),
        node_id="rcc-test",
        name="Test RCC",
        database_url=shared_db_url,
        base_url="http://testserver",
    )


@pytest.fixture(scope="module")
def app(module_settings: Settings) -> Iterator[FastAPI]:
    """An in-process node on the module's database (overrides the suite's per-test node)."""
    engine = make_engine(module_settings.effective_database_url)
    claim_database(engine, module_settings.node_id)
    application = create_app(module_settings, keys=KeyRing.generate(), engine=engine)
    yield application
    audit_log(application.state.node).stop()
    engine.dispose()


@pytest.fixture
def client(app: FastAPI) -> Iterator[TestClient]:
    """A TestClient on the module's node, whose audit log starts empty."""
    log = audit_log(app.state.node)
    log.stop()
    empty_log(log.engine)
    log._compact = None  # the tree it remembered is gone
    with TestClient(app, raise_server_exceptions=False) as test_client:
        yield test_client


@pytest.fixture
def audit(shared_db_url: str, keys: KeyRing) -> Iterator[AuditLog]:
    """A bare audit log (threads not started) on the module's database, emptied first."""
    engine = make_engine(shared_db_url)
    empty_log(engine)
    log = AuditLog(engine=engine, node_id="rcc-test", keys=keys)
    yield log
    log.stop()
    engine.dispose()
