"""Fixtures for the publications register: one migrated node per test module, emptied before each test.

Migrating a fresh database costs about a second (several on PostgreSQL); the register's tests only touch
the two publication tables, so each module shares one database and node, and every test starts from an
empty register. Tokens for a publisher and a reader are registered once per module.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi import FastAPI
from sqlalchemy import delete
from sqlmodel import Session

from registry.app import create_app
from registry.core.db import claim_database, make_engine, upgrade
from registry.core.keys import KeyRing
from registry.core.node import Node
from registry.core.settings import load_settings
from registry.publications.models import Publication, PublicationVersion
from registry.publications.signatures import Signer, signer_for
from tests.support.databases import fresh_database
from tests.support.tokens import bearer

NODE_ID = "rcc-test"


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FastAPI]:
    """One in-process South East node (id ``rcc-test``) on a fresh database, for the whole module."""
    data_dir: Path = tmp_path_factory.mktemp("publications")
    with fresh_database(data_dir) as url:
        upgrade(url)
        settings = load_settings(
            data_dir=data_dir, node_id=NODE_ID, name="Test RCC", database_url=url, base_url="http://testserver"
        )
        engine = make_engine(url)
        claim_database(engine, NODE_ID)
        yield create_app(settings, keys=KeyRing.generate(), engine=engine)
        engine.dispose()


@pytest.fixture(autouse=True)
def empty_register(app: FastAPI) -> None:
    """Every test starts with no publications."""
    node: Node = app.state.node
    with Session(node.engine) as db:
        db.exec(delete(PublicationVersion))
        db.exec(delete(Publication))
        db.commit()


@pytest.fixture(scope="module")
def node(app: FastAPI) -> Node:
    """The in-process node."""
    result: Node = app.state.node
    return result


@pytest.fixture
def signer(node: Node) -> Signer:
    return signer_for(node)


@pytest.fixture
def session(node: Node) -> Iterator[Session]:
    """A session on the node's database, for service-level tests (commit explicitly)."""
    with Session(node.engine) as db:
        yield db


@pytest.fixture(scope="module")
def publisher(app: FastAPI) -> dict[str, str]:
    """Authorization headers for a client holding the publisher role."""
    return bearer(app, "publisher", subject="publisher-client")


@pytest.fixture(scope="module")
def reader(app: FastAPI) -> dict[str, str]:
    """Authorization headers for a commissioner: may read publications, may not publish."""
    return bearer(app, "commissioner", subject="commissioner-client")
