"""A stopped node leaves no database connection behind, however early it is stopped.

Every background loop the lifespan starts (directory refresher, witnessing schedule, agreement courier) reads
the database on a worker thread as soon as the app starts. Cancelling a task that awaits a worker thread does
not stop the thread: unless the loop waits for it, shutdown finishes while the thread still holds a pooled
connection, the owner disposes of the engine, and the connection comes back to a pool nobody holds — open
until the garbage collector finds it (psycopg's "was deleted while still open" ResourceWarning, raised in
whichever test happens to be running then). Stopping right after starting, many times over, puts shutdown
inside those reads.

The evidence is taken on the client side: once the app has stopped, its pool must have every connection back,
and once the pool is disposed of, every connection the engine opened must be closed. (The server's list of
sessions is no evidence: a backend outlives its closed client connection for a moment.)
"""

from __future__ import annotations

import gc
import sqlite3
import warnings
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import event

from registry.app import create_app
from registry.core.db import claim_database, make_engine
from registry.core.keys import KeyRing
from registry.core.settings import Settings
from tests.support.federation import PeerIdentity, directory, operator_jwks, ring_entry, sign, write_json

pytestmark = pytest.mark.postgres

STARTS = 60
"""Start-stop cycles: before the fix, about one in ten left a connection behind on PostgreSQL on this machine."""


@pytest.fixture
def federated(settings: Settings, tmp_path: Path, keys: KeyRing) -> Settings:
    """A node with a directory, so that every background loop runs (the refresher and witnessing need one)."""
    operator = KeyRing.generate()
    document = directory([ring_entry(settings.node_id, "http://testserver", keys), PeerIdentity("rcc-peer").entry()])
    path = write_json(tmp_path / "directory.json", sign(document, operator))
    return settings.model_copy(update={"operator_jwks": operator_jwks(operator), "directory_file": path})


def is_open(connection: Any) -> bool:
    """Whether a driver connection is still open (psycopg says so; sqlite3 only refuses work once closed)."""
    if hasattr(connection, "closed"):
        return not connection.closed
    try:
        connection.total_changes  # noqa: B018 - the probe
    except sqlite3.ProgrammingError:
        return False
    return True


def start_and_stop(settings: Settings, keys: KeyRing) -> list[str]:
    """Start a node and stop it at once, then dispose of its pool; what it left open (nothing, if all is well)."""
    engine = make_engine(settings.effective_database_url)
    claim_database(engine, settings.node_id)
    opened: list[Any] = []
    event.listen(engine, "connect", lambda connection, _record: opened.append(connection))
    with TestClient(create_app(settings, keys=keys, engine=engine)):
        pass
    left = []
    if held := engine.pool.checkedout():  # a QueuePool on both engines
        left.append(f"{held} connection(s) still checked out after the app stopped")
    engine.dispose()
    if still := sum(map(is_open, opened)):
        left.append(f"{still} connection(s) still open after the pool was disposed of")
    return left


class TestStoppingANode:
    def test_a_node_stopped_right_after_starting_leaves_no_connection_open(
        self, federated: Settings, keys: KeyRing
    ) -> None:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", ResourceWarning)
            left = {start: problems for start in range(STARTS) if (problems := start_and_stop(federated, keys))}
            gc.collect()  # a connection returned to a disposed pool is closed only now, with a warning
        assert left == {}
        assert [str(w.message) for w in caught if issubclass(w.category, ResourceWarning)] == []
