"""The directory: signature, expiry and schema checks, and the store that holds the highest serial."""

from __future__ import annotations

import asyncio
import copy
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine

from federation.directory import load_pinned_keys, verify_envelope
from federation.errors import DirectoryRejected, DirectoryUnavailable
from federation.store import DirectoryStore
from registry.core.db import make_engine
from registry.core.keys import KeyRing
from tests.support.federation import PeerIdentity, directory, sign, write_json

pytestmark = pytest.mark.postgres


@pytest.fixture
def operator() -> KeyRing:
    return KeyRing.generate()


@pytest.fixture
def members() -> list[dict[str, Any]]:
    return [PeerIdentity("rcc-a").entry(), PeerIdentity("rcc-b", region_code="E12000002").entry()]


@pytest.fixture
def engine(migrated_db_url: str) -> Engine:
    engine = make_engine(migrated_db_url)
    yield engine  # type: ignore[misc]
    engine.dispose()


def pinned(operator: KeyRing) -> dict[str, Any]:
    return load_pinned_keys(json.dumps(operator.jwks()))


def now() -> datetime:
    return datetime.now(UTC)


class TestVerifyEnvelope:
    def test_signed_directory_is_indexed(self, operator: KeyRing, members: list[dict[str, Any]]) -> None:
        found = verify_envelope(sign(directory(members, serial=3), operator), pinned(operator), now=now())
        assert found.serial == 3
        assert set(found.nodes) == {"rcc-a", "rcc-b"}
        assert found.nodes["rcc-b"].region_code == "E12000002"

    def test_unsigned_is_refused(self, operator: KeyRing, members: list[dict[str, Any]]) -> None:
        with pytest.raises(DirectoryRejected) as caught:
            verify_envelope({"directory": directory(members)}, pinned(operator), now=now())
        assert caught.value.reason == "unsigned"

    def test_signed_by_another_key_is_refused(self, operator: KeyRing, members: list[dict[str, Any]]) -> None:
        envelope = sign(directory(members), KeyRing.generate())
        with pytest.raises(DirectoryRejected) as caught:
            verify_envelope(envelope, pinned(operator), now=now())
        assert caught.value.reason == "wrong-signer"

    def test_altered_after_signing_is_refused(self, operator: KeyRing, members: list[dict[str, Any]]) -> None:
        envelope = sign(directory(members), operator)
        envelope["directory"]["nodes"][0]["base_url"] = "http://127.0.0.1:6666"
        with pytest.raises(DirectoryRejected) as caught:
            verify_envelope(envelope, pinned(operator), now=now())
        assert caught.value.reason == "bad-signature"

    def test_expired_is_refused(self, operator: KeyRing, members: list[dict[str, Any]]) -> None:
        old = directory(members, issued=now() - timedelta(days=10), lifetime=timedelta(days=7))
        with pytest.raises(DirectoryRejected) as caught:
            verify_envelope(sign(old, operator), pinned(operator), now=now())
        assert caught.value.reason == "expired"

    def test_schema_violation_is_refused_with_paths(self, operator: KeyRing, members: list[dict[str, Any]]) -> None:
        document = directory(members)
        document["nodes"][0]["kind"] = "county"
        with pytest.raises(DirectoryRejected) as caught:
            verify_envelope(sign(document, operator), pinned(operator), now=now())
        assert caught.value.reason == "invalid"
        assert any(e["path"] == "/nodes/0/kind" for e in caught.value.errors or [])

    def test_duplicate_node_is_refused(self, operator: KeyRing, members: list[dict[str, Any]]) -> None:
        twin = copy.deepcopy(members[0])
        twin["keys"] = PeerIdentity("rcc-a").entry()["keys"]
        with pytest.raises(DirectoryRejected) as caught:
            verify_envelope(sign(directory([*members, twin]), operator), pinned(operator), now=now())
        assert caught.value.reason == "duplicate-node"

    def test_pin_with_wrong_kid_fails_loudly(self, operator: KeyRing) -> None:
        jwk = {**operator.active.jwk(), "kid": "A" * 43}
        with pytest.raises(ValueError, match="thumbprint"):
            load_pinned_keys(json.dumps(jwk))


class TestStore:
    def test_higher_serial_replaces_lower_is_refused_and_held_across_restarts(
        self, engine: Engine, operator: KeyRing, members: list[dict[str, Any]]
    ) -> None:
        store = DirectoryStore(engine, pinned=pinned(operator))
        five = sign(directory(members, serial=5), operator)
        store.accept(five, source="test")
        store.accept(five, source="test")  # the same document again: a no-op
        assert store.accept(sign(directory(members, serial=7), operator), source="test").serial == 7
        with pytest.raises(DirectoryRejected) as caught:
            store.accept(sign(directory(members, serial=6), operator), source="test")
        assert caught.value.reason == "stale-serial"
        with pytest.raises(DirectoryRejected) as reused:
            store.accept(sign(directory(members[:1], serial=7), operator), source="test")
        assert reused.value.reason == "serial-reused"

        restarted = DirectoryStore(engine, pinned=pinned(operator))
        restarted.start()
        assert restarted.require().serial == 7
        with pytest.raises(DirectoryRejected):
            restarted.accept(sign(directory(members, serial=6), operator), source="test")

    def test_refused_directory_leaves_nothing_behind(
        self, engine: Engine, operator: KeyRing, members: list[dict[str, Any]]
    ) -> None:
        store = DirectoryStore(engine, pinned=pinned(operator))
        with pytest.raises(DirectoryRejected):
            store.accept(sign(directory(members), KeyRing.generate()), source="test")
        assert DirectoryStore(engine, pinned=pinned(operator)).load_held() is None
        assert store.readiness()[1] is False
        with pytest.raises(DirectoryUnavailable):
            store.require()

    def test_operator_outage_keeps_last_good_directory(
        self, engine: Engine, operator: KeyRing, members: list[dict[str, Any]]
    ) -> None:
        served: list[Any] = [sign(directory(members, serial=1), operator)]

        async def fetch(url: str) -> Any:
            assert url == "http://operator.test/federation/v1/directory"
            if not served:
                raise ConnectionRefusedError("operator down")
            return served[0]

        store = DirectoryStore(engine, pinned=pinned(operator), operator_url="http://operator.test", fetch=fetch)
        asyncio.run(store.refresh())
        assert store.require().serial == 1
        served.clear()
        asyncio.run(store.refresh())
        assert store.require().serial == 1
        _name, ok, detail = store.readiness()
        assert ok
        assert isinstance(detail, dict)
        assert "operator down" in detail["last_error"]
        served.append(sign(directory(members[:1], serial=2), operator))
        asyncio.run(store.refresh())
        assert set(store.require().nodes) == {"rcc-a"}
        assert store.readiness()[2]["serial"] == 2  # type: ignore[index]

    def test_directory_file_is_loaded_and_reloaded_when_it_changes(
        self, engine: Engine, tmp_path: Path, operator: KeyRing, members: list[dict[str, Any]]
    ) -> None:
        path = write_json(tmp_path / "directory.json", sign(directory(members, serial=1), operator))
        store = DirectoryStore(engine, pinned=pinned(operator), directory_file=path)
        store.start()
        assert store.require().serial == 1
        write_json(path, sign(directory(members, serial=2), operator))
        asyncio.run(store.refresh())
        assert store.require().serial == 2

    def test_unconfigured_node_is_ready_without_directory(self, engine: Engine) -> None:
        store = DirectoryStore(engine, pinned={})
        store.start()
        assert store.readiness()[1] is True
