"""Peers' copies: a served version is rebuilt, verified against the peer's key and stored only if it verifies."""

from __future__ import annotations

import json
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlmodel import Session, select

from registry.core.keys import KeyRing
from registry.core.node import Node
from registry.publications import copies, service, signatures
from registry.publications.kinds import Kind
from registry.publications.models import Publication, PublicationVersion
from registry.publications.signatures import PEER_KEYS_EXTENSION, Keys, Signer
from tests.registry.publications import documents

pytestmark = pytest.mark.postgres

PEER = "rcc-peer"
NW_REGION = "E12000002"


@pytest.fixture(scope="module")
def peer_ring() -> KeyRing:
    return KeyRing.generate()


@pytest.fixture
def peer_keys(peer_ring: KeyRing) -> Keys:
    return signatures.own_keys(PEER, peer_ring)


@pytest.fixture
def served(node: Node, peer_ring: KeyRing) -> Any:
    """``served(document, updates=0)``: what the peer would serve, signed by the peer (never kept here)."""

    def make(document: dict[str, Any] | None = None, *, updates: int = 0) -> dict[str, Any]:
        signer = Signer(PEER, NW_REGION, peer_ring.active)
        with Session(node.engine) as scratch:
            held = service.publish(
                scratch,
                signer=signer,
                kind=Kind.fee_cap,
                document=document or documents.fee_cap(PEER),
                publication_id="caps",
            )
            for n in range(updates):
                held = service.update(
                    scratch,
                    signer=signer,
                    publication_id="caps",
                    document=documents.fee_cap(PEER, title=f"Caps, revision {n + 2}"),
                    if_match=service.etag(held.version),
                )
            item = service.to_public(held).model_dump(mode="json", by_alias=True)
            scratch.rollback()
        return item

    return make


def _held(session: Session) -> list[tuple[str, str, int]]:
    rows = session.exec(select(PublicationVersion).where(PublicationVersion.node_id == PEER))
    return sorted((v.node_id, v.publication_id, v.version) for v in rows)


class TestStoreCopy:
    def test_a_verified_copy_is_held_under_the_peers_id_and_region(
        self, session: Session, served: Any, peer_keys: Keys
    ) -> None:
        copies.store_copy(session, served(), node_id=PEER, region_code=NW_REGION, keys=peer_keys)
        session.commit()
        head = session.get(Publication, (PEER, "caps"))
        assert head is not None and (head.region_code, head.latest_version) == (NW_REGION, 1)
        stored = session.get(PublicationVersion, (PEER, "caps", 1))
        assert stored is not None
        assert signatures.verify_version(stored, keys=peer_keys).ok

    def test_storing_the_same_version_twice_is_a_no_op(self, session: Session, served: Any, peer_keys: Keys) -> None:
        item = served()
        for _ in range(2):
            copies.store_copy(session, item, node_id=PEER, region_code=NW_REGION, keys=peer_keys)
        session.commit()
        assert _held(session) == [(PEER, "caps", 1)]

    @pytest.mark.parametrize(
        ("change", "reason"),
        [
            (lambda i: i["document"]["caps"][0].update(max_weekly_fee=9999), "bad-signature"),
            (lambda i: i.update(version=2), "bad-signature"),
            (lambda i: i.update(id="other-caps"), "bad-signature"),
            (lambda i: i.update(published_at="2020-01-01T00:00:00.000Z"), "bad-signature"),
            (lambda i: i.update(node_id="rcc-someone-else"), "wrong-node"),
            (lambda i: i.update(kind="novel"), "malformed"),
            (lambda i: i.pop("document"), "malformed"),
            (lambda i: i.update(signature="not-a-jws"), "malformed"),
        ],
    )
    def test_an_altered_version_is_refused_and_nothing_is_stored(
        self, session: Session, served: Any, peer_keys: Keys, change: Any, reason: str
    ) -> None:
        item = served()
        change(item)
        with pytest.raises(copies.CopyRejected) as caught:
            copies.store_copy(session, item, node_id=PEER, region_code=NW_REGION, keys=peer_keys)
        assert caught.value.reason == reason
        session.commit()
        assert _held(session) == []

    def test_a_copy_signed_by_a_key_not_trusted_for_the_peer_is_refused(self, session: Session, served: Any) -> None:
        stranger = signatures.own_keys(PEER, KeyRing.generate())
        with pytest.raises(copies.CopyRejected) as caught:
            copies.store_copy(session, served(), node_id=PEER, region_code=NW_REGION, keys=stranger)
        assert caught.value.reason == "unknown-key"

    def test_a_second_document_under_a_held_version_number_is_refused(
        self, session: Session, served: Any, peer_keys: Keys
    ) -> None:
        first, other = served(), served(documents.fee_cap(PEER, title="Another text, same version"))
        copies.store_copy(session, first, node_id=PEER, region_code=NW_REGION, keys=peer_keys)
        with pytest.raises(copies.CopyRejected) as caught:
            copies.store_copy(session, other, node_id=PEER, region_code=NW_REGION, keys=peer_keys)
        assert caught.value.reason == "conflicts-with-held"

    def test_a_newer_version_replaces_the_latest_and_an_older_one_does_not(
        self, session: Session, served: Any, peer_keys: Keys
    ) -> None:
        newer, older = served(updates=1), served()
        copies.store_copy(session, newer, node_id=PEER, region_code=NW_REGION, keys=peer_keys)
        copies.store_copy(session, older, node_id=PEER, region_code=NW_REGION, keys=peer_keys)
        session.commit()
        head = session.get(Publication, (PEER, "caps"))
        assert head is not None and head.latest_version == 2
        assert _held(session) == [(PEER, "caps", 1), (PEER, "caps", 2)]
        assert json.loads(service.get_latest(session, "caps", node_id=PEER).version.document)["title"] == (
            "Caps, revision 2"
        )


class TestPeerKeys:
    def test_the_register_resolves_peers_through_the_installed_lookup_only(
        self, node: Node, session: Session, served: Any, peer_keys: Keys
    ) -> None:
        copies.store_copy(session, served(), node_id=PEER, region_code=NW_REGION, keys=peer_keys)
        session.commit()
        stored = session.get(PublicationVersion, (PEER, "caps", 1))
        assert stored is not None
        saved = node.extensions.pop(PEER_KEYS_EXTENSION, None)
        try:
            assert signatures.verify_version(stored, keys=signatures.keys_for(node)).reason == "unknown-key"
            node.extensions[PEER_KEYS_EXTENSION] = peer_keys
            assert signatures.verify_version(stored, keys=signatures.keys_for(node)).ok
        finally:
            node.extensions.pop(PEER_KEYS_EXTENSION, None)
            if saved is not None:
                node.extensions[PEER_KEYS_EXTENSION] = saved


class TestNationalScope:
    def test_a_node_holding_no_directory_says_so_rather_than_answer_for_its_region_alone(
        self, app: Any, reader: dict[str, str]
    ) -> None:
        with TestClient(app, raise_server_exceptions=False) as http:
            response = http.get("/v1/publications", params={"scope": "national"}, headers=reader)
            local = http.get("/v1/publications", headers=reader)
        assert (response.status_code, response.json()["code"]) == (503, "directory-unavailable")
        assert (local.status_code, local.json()["peers"]) == (200, None)
