"""``federation.agreements`` on an in-process node: the directory as the parties' keys, the inbox, and how the
courier reads a party's answer. (Delivery between real nodes: ``tests/agreements/test_federated.py``.)"""

from __future__ import annotations

import json
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from agreements.keys import KEY_RESOLVER_EXTENSION
from federation.agreements import DirectoryKeys, attempt_from
from federation.models import PeerResult
from registry.core.keys import KeyRing
from schemas.vocabulary import PeerOutcome
from tests.agreements.conftest import document, grant
from tests.support.agreements import sign_document
from tests.support.federation import PeerIdentity, bearer, directory, entry, jwk_of, ring_entry, sign, token

pytestmark = pytest.mark.postgres

HERE, PEER = "rcc-test", "rcc-peer"
INBOX = "/federation/v1/agreements/inbox"


def mou() -> dict[str, Any]:
    return document(
        "test-peer-mou",
        [HERE, PEER],
        [grant(HERE, [PEER], ["audit.tree-heads"], ["audit-witnessing"])],
        valid_from="2026-01-01",
        valid_until="2030-12-31",
        review_by="2029-12-31",
    )


def post_inbox(client: TestClient, peer: PeerIdentity, message: Any) -> Any:
    body = json.dumps(message).encode()
    value, _ = token(
        peer.active,
        iss=PEER,
        aud=HERE,
        url="http://testserver" + INBOX,
        method="POST",
        body=body,
        purpose="audit-witnessing",
        agreement="test-peer-mou",
    )
    return client.post(INBOX, content=body, headers={**bearer(value), "content-type": "application/json"})


class TestDirectoryKeys:
    def test_party_keys_follow_the_directory_held_now(
        self, fed_app: FastAPI, peer: PeerIdentity, operator: KeyRing, keys: KeyRing
    ) -> None:
        resolve = fed_app.state.node.extensions[KEY_RESOLVER_EXTENSION]
        assert isinstance(resolve, DirectoryKeys)
        found = resolve(PEER, peer.kid)
        assert found is not None and found.status == "active"
        assert found.jwk["x"] == jwk_of(peer.active)["x"]
        retired = resolve(PEER, jwk_of(peer.retired[0])["kid"])
        assert retired is not None and retired.status == "retired"
        assert resolve(PEER, "unknown-kid") is None
        assert resolve("rcc-stranger", peer.kid) is None

        store = fed_app.state.node.extensions["federation"].store
        own = ring_entry(HERE, "http://testserver", keys)
        key_retired = entry(PEER, peer.base_url, [jwk_of(peer.active, "retired")])
        store.accept(sign(directory([own, key_retired], serial=2), operator), source="test")
        now_retired = resolve(PEER, peer.kid)
        assert now_retired is not None and now_retired.status == "retired"
        store.accept(sign(directory([own], serial=3), operator), source="test")
        assert resolve(PEER, peer.kid) is None  # removed from the federation: nothing it signs is accepted


class TestInbox:
    def test_a_party_signature_is_verified_against_the_directory_and_stored_once(
        self, fed_client: TestClient, peer: PeerIdentity
    ) -> None:
        doc = mou()
        message = {"agreement": doc["id"], "version": 1, "document": doc}
        by_retired = {"node_id": PEER, "jws": sign_document(doc, peer.retired[0])}
        refused = post_inbox(fed_client, peer, message | {"signatures": [by_retired]})
        assert refused.status_code == 422, refused.text
        assert (refused.json()["code"], refused.json()["reason"]) == ("signature-refused", "retired-key")

        signed = message | {"signatures": [{"node_id": PEER, "jws": sign_document(doc, peer.active)}]}
        stored = post_inbox(fed_client, peer, signed)
        assert stored.status_code == 200, stored.text
        assert (stored.json()["document_stored"], stored.json()["signatures_stored"]) == (True, 1)
        again = post_inbox(fed_client, peer, signed).json()
        assert (again["document_stored"], again["signatures_stored"], again["events_stored"]) == (False, 0, 0)

    def test_no_token_is_401_and_a_malformed_message_is_422(self, fed_client: TestClient, peer: PeerIdentity) -> None:
        assert fed_client.post(INBOX, json={"agreement": "x"}).status_code == 401
        malformed = post_inbox(fed_client, peer, {"agreement": "x"})
        assert malformed.status_code == 422
        assert malformed.headers["content-type"] == "application/problem+json"


class TestReadingAnswers:
    @pytest.mark.parametrize(
        ("outcome", "status", "code", "final"),
        [
            (PeerOutcome.refused, 403, "not-a-party", True),
            (PeerOutcome.error, 409, "agreement-version-conflict", True),
            (PeerOutcome.error, 409, "conflict", False),  # a concurrent write there: send again
            (PeerOutcome.error, 422, "signature-refused", False),  # its directory may not know a new key yet
            (PeerOutcome.unauthorized, 401, "peer-unauthenticated", False),
            (PeerOutcome.unreachable, None, None, False),
            (PeerOutcome.timeout, None, None, False),
            (PeerOutcome.bad_signature, 403, "not-a-party", False),  # an unsigned answer proves nothing
        ],
    )
    def test_only_refusals_a_retry_cannot_change_are_final(
        self, outcome: PeerOutcome, status: int | None, code: str | None, final: bool
    ) -> None:
        body = {"code": code} if code else None
        attempt = attempt_from(PeerResult(PEER, outcome, 1.0, status=status, body=body, detail="why"))
        assert (attempt.final, attempt.delivered, attempt.outcome, attempt.status) == (
            final,
            False,
            outcome.value,
            status,
        )
