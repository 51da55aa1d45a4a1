"""The inbound guard and response signatures, on an in-process node with tokens made independently."""

from __future__ import annotations

import hashlib
import json
import time
from datetime import timedelta
from typing import Any

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from fastapi.testclient import TestClient

from federation import store as store_module
from federation.guard import _has_body
from registry.core.db import utcnow
from registry.core.keys import KeyRing
from tests.support import jose
from tests.support.federation import PeerIdentity, bearer, token

PING = "http://testserver/federation/v1/ping"


def assert_signed(response: httpx.Response, keys: KeyRing, jti: str | None) -> dict[str, Any]:
    """The response carries a valid RCC-Response-Signature by the node over this very response."""
    signature = response.headers["rcc-response-signature"]
    payload = jose.verify_compact(signature, keys.active.jwk())
    assert json.loads(jose.b64d(signature.split(".")[0]))["typ"] == "rcc-response+jws"
    assert payload["jti"] == jti
    assert payload["status"] == response.status_code
    assert payload["bdh"] == jose.b64e(hashlib.sha256(response.content).digest())
    assert abs(payload["iat"] - time.time()) < 60
    return payload


def last_audit(audits: list[Any]) -> Any:
    return audits[-1][1]


class TestAcceptedCalls:
    def test_signed_ping_is_answered_and_signed(
        self, fed_client: TestClient, peer: PeerIdentity, keys: KeyRing, audits: list[Any]
    ) -> None:
        value, jti = token(peer.active, iss="rcc-peer", aud="rcc-test", url=PING, agreement="agr-1")
        response = fed_client.get("/federation/v1/ping", headers=bearer(value))
        assert response.status_code == 200, response.text
        body = response.json()
        assert (body["node_id"], body["peer"], body["kid"], body["jti"]) == ("rcc-test", "rcc-peer", peer.kid, jti)
        assert body["agreement"] == "agr-1"
        assert_signed(response, keys, jti)
        audit = last_audit(audits)
        assert (audit.actor_type, audit.actor_id, audit.peer, audit.decision) == (
            "node",
            "rcc-peer",
            "rcc-peer",
            "permit",
        )
        assert (audit.purpose, audit.agreement) == ("placement-search", "agr-1")

    def test_body_arrives_as_signed(self, fed_client: TestClient, peer: PeerIdentity, keys: KeyRing) -> None:
        body = b'{"needs":["cse-risk"],"age":14}'
        value, jti = token(peer.active, iss="rcc-peer", aud="rcc-test", url=PING, method="POST", body=body)
        response = fed_client.post(
            "/federation/v1/ping", content=body, headers={**bearer(value), "content-type": "application/json"}
        )
        assert response.status_code == 200, response.text
        assert response.json()["echo"] == {"needs": ["cse-risk"], "age": 14}
        assert_signed(response, keys, jti)


def _tampered(value: str) -> str:
    head, payload, signature = value.split(".")
    claims = json.loads(jose.b64d(payload))
    claims["purpose"] = "national-statistics"
    return f"{head}.{jose.b64e(json.dumps(claims).encode())}.{signature}"


REFUSALS: dict[str, Any] = {
    "unknown-node": lambda p: token(p.active, iss="rcc-nobody", aud="rcc-test", url=PING),
    "unknown-key": lambda p: token(Ed25519PrivateKey.generate(), iss="rcc-peer", aud="rcc-test", url=PING),
    "retired-key": lambda p: token(p.retired[0], iss="rcc-peer", aud="rcc-test", url=PING),
    "wrong-audience": lambda p: token(p.active, iss="rcc-peer", aud="rcc-other", url=PING),
    "expired": lambda p: token(p.active, iss="rcc-peer", aud="rcc-test", url=PING, now=time.time() - 200),
    "issued-in-future": lambda p: token(p.active, iss="rcc-peer", aud="rcc-test", url=PING, now=time.time() + 120),
    "lifetime-too-long": lambda p: token(p.active, iss="rcc-peer", aud="rcc-test", url=PING, lifetime=600),
    "url-mismatch": lambda p: token(p.active, iss="rcc-peer", aud="rcc-test", url=PING + "?x=1"),
    "method-mismatch": lambda p: token(p.active, iss="rcc-peer", aud="rcc-test", url=PING, method="POST"),
    "wrong-type": lambda p: token(p.active, iss="rcc-peer", aud="rcc-test", url=PING, typ="JWT"),
    "bad-algorithm": lambda p: token(p.active, iss="rcc-peer", aud="rcc-test", url=PING, alg="HS256"),
    "unknown-purpose": lambda p: token(p.active, iss="rcc-peer", aud="rcc-test", url=PING, purpose="marketing"),
    "missing-claim": lambda p: token(p.active, iss="rcc-peer", aud="rcc-test", url=PING, jti="short"),
    "bad-signature": lambda p: (lambda t: (_tampered(t[0]), t[1]))(
        token(p.active, iss="rcc-peer", aud="rcc-test", url=PING)
    ),
}


class TestRefusals:
    @pytest.mark.parametrize("reason", sorted(REFUSALS))
    def test_bad_token_is_refused_with_its_reason_signed_and_audited(
        self, fed_client: TestClient, peer: PeerIdentity, keys: KeyRing, audits: list[Any], reason: str
    ) -> None:
        value, jti = REFUSALS[reason](peer)
        response = fed_client.get("/federation/v1/ping", headers=bearer(value))
        assert response.status_code == 401, response.text
        assert response.headers["content-type"] == "application/problem+json"
        assert response.json()["reason"] == reason
        assert response.headers["www-authenticate"].startswith("Bearer")
        assert_signed(response, keys, jti if len(jti) >= 16 else None)
        audit = last_audit(audits)
        assert (audit.actor_type, audit.decision, audit.reason) == ("node", "deny", reason)

    def test_missing_token_is_refused(self, fed_client: TestClient, keys: KeyRing, audits: list[Any]) -> None:
        response = fed_client.get("/federation/v1/ping")
        assert response.status_code == 401
        assert response.json()["reason"] == "missing-token"
        assert_signed(response, keys, None)
        assert last_audit(audits).reason == "missing-token"

    def test_garbage_token_is_malformed(self, fed_client: TestClient, keys: KeyRing) -> None:
        response = fed_client.get("/federation/v1/ping", headers=bearer("not.a.jwt!"))
        assert response.status_code == 401
        assert response.json()["reason"] == "malformed"
        assert_signed(response, keys, None)

    def test_replayed_token_is_refused(
        self, fed_client: TestClient, peer: PeerIdentity, keys: KeyRing, audits: list[Any]
    ) -> None:
        value, jti = token(peer.active, iss="rcc-peer", aud="rcc-test", url=PING)
        assert fed_client.get("/federation/v1/ping", headers=bearer(value)).status_code == 200
        again = fed_client.get("/federation/v1/ping", headers=bearer(value))
        assert again.status_code == 401
        assert again.json()["reason"] == "replayed"
        assert_signed(again, keys, jti)
        assert (last_audit(audits).decision, last_audit(audits).peer) == ("deny", "rcc-peer")

    def test_body_altered_after_signing_is_refused(self, fed_client: TestClient, peer: PeerIdentity) -> None:
        value, _ = token(peer.active, iss="rcc-peer", aud="rcc-test", url=PING, method="POST", body=b'{"age":14}')
        response = fed_client.post(
            "/federation/v1/ping", content=b'{"age":15}', headers={**bearer(value), "content-type": "application/json"}
        )
        assert response.status_code == 401
        assert response.json()["reason"] == "body-mismatch"

    def test_unknown_federation_route_is_still_signed(self, fed_client: TestClient, keys: KeyRing) -> None:
        response = fed_client.get("/federation/v1/no-such-route")
        assert response.status_code == 404
        assert_signed(response, keys, None)


class TestDirectoryOnTheNode:
    def test_readyz_reports_serial_and_age(self, fed_client: TestClient) -> None:
        response = fed_client.get("/readyz")
        assert response.status_code == 200, response.text
        detail = response.json()["checks"]["directory"]["detail"]
        assert detail["serial"] == 1
        assert 0 <= detail["age_seconds"] < 120
        assert detail["expired"] is False

    def test_expired_directory_fails_readiness_and_refuses_peers(
        self, fed_client: TestClient, peer: PeerIdentity, keys: KeyRing, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        later = utcnow() + timedelta(days=8)
        monkeypatch.setattr(store_module, "utcnow", lambda: later)
        ready = fed_client.get("/readyz")
        assert ready.status_code == 503
        assert ready.json()["checks"]["directory"]["detail"]["expired"] is True
        value, jti = token(peer.active, iss="rcc-peer", aud="rcc-test", url=PING)
        response = fed_client.get("/federation/v1/ping", headers=bearer(value))
        assert response.status_code == 503
        assert response.json()["code"] == "directory-unavailable"
        assert_signed(response, keys, jti)

    def test_only_the_operator_serves_the_directory(self, fed_client: TestClient) -> None:
        response = fed_client.get("/federation/v1/directory")
        assert response.status_code == 404
        assert response.json()["code"] == "not-operator"


class TestAuditTrail:
    def test_forged_replayed_and_refused_calls_leave_deny_entries(
        self, fed_client: TestClient, fed_app: Any, peer: PeerIdentity
    ) -> None:
        from sqlmodel import Session, col, select

        from registry.core.audit.models import AuditEntry

        good, _ = token(peer.active, iss="rcc-peer", aud="rcc-test", url=PING)
        forged, _ = token(Ed25519PrivateKey.generate(), iss="rcc-peer", aud="rcc-test", url=PING)
        assert fed_client.get("/federation/v1/ping", headers=bearer(good)).status_code == 200
        assert fed_client.get("/federation/v1/ping", headers=bearer(good)).status_code == 401
        assert fed_client.get("/federation/v1/ping", headers=bearer(forged)).status_code == 401
        with Session(fed_app.state.node.engine) as session:
            rows = session.exec(select(AuditEntry).where(col(AuditEntry.peer) == "rcc-peer")).all()
        entries = [json.loads(row.entry) for row in rows]
        decisions = sorted((e["decision"], e["reason"]) for e in entries)
        assert decisions == [("deny", "replayed"), ("deny", "unknown-key"), ("permit", "peer-authenticated")]
        assert all(
            e["actor_type"] == "node" and e["purpose"] == "placement-search"
            for e in entries
            if e["decision"] == "permit"
        )


class TestBodyPresence:
    """The guard skips awaiting a body only where HTTP/1.x guarantees there is none."""

    @pytest.mark.parametrize(
        ("version", "headers", "expected"),
        [
            ("1.1", [], False),
            ("1.1", [(b"content-length", b"0")], False),
            ("1.1", [(b"content-length", b"7")], True),
            ("1.1", [(b"Content-Length", b"7")], True),
            ("1.1", [(b"transfer-encoding", b"chunked")], True),
            ("1.0", [], False),
            ("2", [], True),  # HTTP/2 may send DATA frames without Content-Length: always read them
        ],
    )
    def test_a_body_is_read_unless_the_protocol_rules_one_out(self, version, headers, expected) -> None:
        assert _has_body({"type": "http", "http_version": version, "headers": headers}) is expected
