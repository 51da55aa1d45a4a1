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
from federation.models import PingResponse
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
    # The node writes this payload by hand on its hot path: it must still be the compact, key-sorted JSON.
    assert jose.b64d(signature.split(".")[1]) == json.dumps(payload, sort_keys=True, separators=(",", ":")).encode()
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
    "unknown-node": lambda p, call: token(p.active, **{**call, "iss": "rcc-nobody"}),
    "unknown-key": lambda p, call: token(Ed25519PrivateKey.generate(), **call),
    "retired-key": lambda p, call: token(p.retired[0], **call),
    "wrong-audience": lambda p, call: token(p.active, **{**call, "aud": "rcc-other"}),
    "expired": lambda p, call: token(p.active, **call, now=time.time() - 200),
    "issued-in-future": lambda p, call: token(p.active, **call, now=time.time() + 120),
    "lifetime-too-long": lambda p, call: token(p.active, **call, lifetime=600),
    "url-mismatch": lambda p, call: token(p.active, **{**call, "url": PING + "?x=1"}),
    "method-mismatch": lambda p, call: token(p.active, **{**call, "method": "PUT"}),
    "body-mismatch": lambda p, call: token(p.active, **{**call, "body": b'{"age":15}'}),
    "wrong-type": lambda p, call: token(p.active, **call, typ="JWT"),
    "bad-algorithm": lambda p, call: token(p.active, **call, alg="HS256"),
    "unknown-purpose": lambda p, call: token(p.active, **call, purpose="marketing"),
    "missing-claim": lambda p, call: token(p.active, **call, jti="short"),
    "bad-signature": lambda p, call: (lambda t: (_tampered(t[0]), t[1]))(token(p.active, **call)),
}

# The guard in both its forms: GET ping is served directly (federation.api.DirectRoute), POST ping through
# FastAPI's dependency on authenticate_peer, as every other federation route is.
GUARDED_CALLS = {
    "direct GET": ("GET", b""),
    "dependency POST": ("POST", b'{"age":14}'),
}


def guarded_call(client: TestClient, method: str, body: bytes, value: str | None) -> httpx.Response:
    headers = bearer(value) if value is not None else {}
    if body:
        headers["content-type"] = "application/json"
    return client.request(method, "/federation/v1/ping", content=body or None, headers=headers)


class TestRefusals:
    @pytest.mark.parametrize("route", sorted(GUARDED_CALLS))
    @pytest.mark.parametrize("reason", sorted(REFUSALS))
    def test_bad_token_is_refused_with_its_reason_signed_and_audited(
        self, fed_client: TestClient, peer: PeerIdentity, keys: KeyRing, audits: list[Any], reason: str, route: str
    ) -> None:
        method, body = GUARDED_CALLS[route]
        call = {"iss": "rcc-peer", "aud": "rcc-test", "url": PING, "method": method, "body": body}
        value, jti = REFUSALS[reason](peer, call)
        response = guarded_call(fed_client, method, body, value)
        assert response.status_code == 401, response.text
        assert response.headers["content-type"] == "application/problem+json"
        assert response.json()["reason"] == reason
        assert response.headers["www-authenticate"].startswith("Bearer")
        assert_signed(response, keys, jti if len(jti) >= 16 else None)
        audit = last_audit(audits)
        assert (audit.actor_type, audit.decision, audit.reason) == ("node", "deny", reason)

    @pytest.mark.parametrize("route", sorted(GUARDED_CALLS))
    def test_missing_token_is_refused_on_either_path(
        self, fed_client: TestClient, keys: KeyRing, audits: list[Any], route: str
    ) -> None:
        method, body = GUARDED_CALLS[route]
        response = guarded_call(fed_client, method, body, None)
        assert response.status_code == 401
        assert response.json()["reason"] == "missing-token"
        assert_signed(response, keys, None)
        assert last_audit(audits).reason == "missing-token"

    def test_garbage_token_is_malformed(self, fed_client: TestClient, keys: KeyRing) -> None:
        response = fed_client.get("/federation/v1/ping", headers=bearer("not.a.jwt!"))
        assert response.status_code == 401
        assert response.json()["reason"] == "malformed"
        assert_signed(response, keys, None)

    @pytest.mark.parametrize("route", sorted(GUARDED_CALLS))
    def test_replayed_token_is_refused(
        self, fed_client: TestClient, peer: PeerIdentity, keys: KeyRing, audits: list[Any], route: str
    ) -> None:
        method, body = GUARDED_CALLS[route]
        value, jti = token(peer.active, iss="rcc-peer", aud="rcc-test", url=PING, method=method, body=body)
        assert guarded_call(fed_client, method, body, value).status_code == 200
        again = guarded_call(fed_client, method, body, value)
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


class TestDirectPing:
    """GET ping is served without FastAPI's request machinery; it must stay the same route in every other way."""

    def test_it_answers_json_described_by_the_openapi_document(
        self, fed_client: TestClient, peer: PeerIdentity, keys: KeyRing
    ) -> None:
        value, jti = token(peer.active, iss="rcc-peer", aud="rcc-test", url=PING)
        response = fed_client.get("/federation/v1/ping", headers=bearer(value))
        assert response.status_code == 200, response.text
        assert response.headers["content-type"] == "application/json"
        assert int(response.headers["content-length"]) == len(response.content)
        assert PingResponse.model_validate_json(response.content).jti == jti
        operation = fed_client.get("/openapi.json").json()["paths"]["/federation/v1/ping"]["get"]
        assert operation["responses"]["200"]["content"]["application/json"]["schema"]["$ref"].endswith("/PingResponse")

    def test_it_is_audited_under_its_route_name(self, fed_client: TestClient, fed_app: Any, peer: PeerIdentity) -> None:
        from sqlmodel import Session, select

        from registry.core.audit.models import AuditEntry

        value, _ = token(peer.active, iss="rcc-peer", aud="rcc-test", url=PING)
        assert fed_client.get("/federation/v1/ping", headers=bearer(value)).status_code == 200
        with Session(fed_app.state.node.engine) as session:
            entries = [json.loads(row.entry) for row in session.exec(select(AuditEntry)).all()]
        permitted = [e for e in entries if e.get("peer") == "rcc-peer" and e["decision"] == "permit"]
        assert [e["action"] for e in permitted] == ["federation.ping"]

    def test_a_body_on_a_get_is_held_to_the_signed_digest(
        self, fed_client: TestClient, peer: PeerIdentity, keys: KeyRing
    ) -> None:
        signed_over, _ = token(peer.active, iss="rcc-peer", aud="rcc-test", url=PING, body=b'{"a":1}')
        sent = fed_client.request("GET", "/federation/v1/ping", content=b'{"a":1}', headers=bearer(signed_over))
        assert sent.status_code == 200, sent.text
        unsigned, jti = token(peer.active, iss="rcc-peer", aud="rcc-test", url=PING)
        refused = fed_client.request("GET", "/federation/v1/ping", content=b'{"a":1}', headers=bearer(unsigned))
        assert (refused.status_code, refused.json()["reason"]) == (401, "body-mismatch")
        assert_signed(refused, keys, jti)

    def test_another_method_is_refused_and_signed(self, fed_client: TestClient, keys: KeyRing) -> None:
        response = fed_client.put("/federation/v1/ping")
        assert response.status_code == 405
        assert response.headers["content-type"] == "application/problem+json"
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
