"""Node-issued access tokens on a protected route: the good one opens it, every forged or stale one is refused
with 401 problem+json, an RFC 6750 challenge and an audited reason."""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Callable
from datetime import timedelta

import pytest
from fastapi import FastAPI
from sqlmodel import Session

from registry.core.auth import service
from registry.core.auth.tokens import issue_access_token
from registry.core.db import utcnow
from registry.core.keys import KeyRing
from registry.core.signing import TYP_ACCESS_TOKEN, TYP_REQUEST, encode_jwt
from schemas.vocabulary import Role
from tests.support import jose
from tests.support.tokens import access_token

pytestmark = pytest.mark.postgres


def _segments(token: str) -> tuple[dict, dict, str]:
    head, payload, signature = token.split(".")
    return json.loads(jose.b64d(head)), json.loads(jose.b64d(payload)), signature


def _compact(header: dict, claims: dict, signature: str = "") -> str:
    return ".".join([jose.b64e(json.dumps(header).encode()), jose.b64e(json.dumps(claims).encode()), signature])


def _claims(app: FastAPI, **overrides) -> dict:
    now = int(utcnow().timestamp())
    base = app.state.node.settings.base_url
    claims = {"iss": base, "aud": base, "sub": "test-client", "client_id": "test-client", "iat": now, "nbf": now}
    return {**claims, "exp": now + 600, "jti": "j1", "scope": "analyst", **overrides}


def expired(app: FastAPI) -> str:
    keys = app.state.node.keys
    return issue_access_token(
        keys,
        base_url=app.state.node.settings.base_url,
        client_id="test-client",
        roles=["analyst"],
        now=utcnow() - timedelta(hours=1),
    ).access_token


def other_audience(app: FastAPI) -> str:
    return encode_jwt(_claims(app, aud="https://rcc.other.example"), app.state.node.keys.active, typ=TYP_ACCESS_TOKEN)


def other_issuer(app: FastAPI) -> str:
    return encode_jwt(_claims(app, iss="https://rcc.other.example"), app.state.node.keys.active, typ=TYP_ACCESS_TOKEN)


def other_key(app: FastAPI) -> str:
    return encode_jwt(_claims(app), KeyRing.generate().active, typ=TYP_ACCESS_TOKEN)


def other_key_claiming_our_kid(app: FastAPI) -> str:
    forged = encode_jwt(_claims(app), KeyRing.generate().active, typ=TYP_ACCESS_TOKEN)
    header, claims, signature = _segments(forged)
    return _compact({**header, "kid": app.state.node.keys.active.kid}, claims, signature)


def tampered(app: FastAPI) -> str:
    header, claims, signature = _segments(access_token(app, Role.analyst))
    return _compact(header, {**claims, "scope": "analyst node-admin"}, signature)


def alg_none(app: FastAPI) -> str:
    header, claims, _ = _segments(access_token(app, Role.analyst))
    return _compact({**header, "alg": "none"}, claims, "")


def hs256_with_public_key(app: FastAPI) -> str:
    """The classic confusion: HMAC keyed with the node's *public* key, which anyone can fetch from the JWKS."""
    access_token(app, Role.analyst)  # registers the client, so only the algorithm can be the reason
    jwk = app.state.node.keys.active.jwk()
    header = {"alg": "HS256", "typ": "at+jwt", "kid": jwk["kid"]}
    signing_input = ".".join(
        [jose.b64e(json.dumps(header).encode()), jose.b64e(json.dumps(_claims(app, scope="node-admin")).encode())]
    )
    secret = jose.b64d(jwk["x"])
    return signing_input + "." + jose.b64e(hmac.new(secret, signing_input.encode(), hashlib.sha256).digest())


def wrong_type(app: FastAPI) -> str:
    access_token(app, Role.analyst)
    return encode_jwt(_claims(app), app.state.node.keys.active, typ=TYP_REQUEST)


def lives_too_long(app: FastAPI) -> str:
    access_token(app, Role.analyst)
    now = int(utcnow().timestamp())
    return encode_jwt(_claims(app, iat=now, exp=now + 86400), app.state.node.keys.active, typ=TYP_ACCESS_TOKEN)


def unknown_client(app: FastAPI) -> str:
    keys = app.state.node.keys
    return issue_access_token(
        keys, base_url=app.state.node.settings.base_url, client_id="never-registered", roles=["analyst"]
    ).access_token


def revoked_client(app: FastAPI) -> str:
    token = access_token(app, Role.analyst, subject="soon-revoked")
    with Session(app.state.node.engine) as session:
        service.revoke(session, client_id="soon-revoked")
        session.commit()
    return token


REFUSED: dict[str, tuple[Callable[[FastAPI], str], str]] = {
    "expired": (expired, "expired"),
    "other audience": (other_audience, "wrong-audience"),
    "other issuer": (other_issuer, "unknown-issuer"),
    "other key": (other_key, "unknown-key"),
    "other key claiming our kid": (other_key_claiming_our_kid, "bad-signature"),
    "tampered": (tampered, "bad-signature"),
    "alg none": (alg_none, "bad-algorithm"),
    "HS256 with the public key": (hs256_with_public_key, "bad-algorithm"),
    "request token as access token": (wrong_type, "wrong-type"),
    "lifetime over 15 minutes": (lives_too_long, "lifetime-too-long"),
    "unknown client": (unknown_client, "unknown-client"),
    "revoked client": (revoked_client, "client-revoked"),
}


class TestNodeIssuedTokens:
    def test_valid_token_opens_whoami(self, app, audited) -> None:
        http, capture = audited
        token = access_token(app, Role.governance, Role.analyst, subject="gov-app")
        response = http.get("/v1/whoami", headers={"Authorization": f"Bearer {token}"})
        assert response.status_code == 200, response.text
        body = response.json()
        assert body["subject"] == "gov-app"
        assert body["roles"] == ["analyst", "governance"]
        assert body["issuer"] == "http://testserver"
        assert body["actor_type"] == "client"
        claims = jose.verify_compact(token, app.state.node.keys.active.jwk())
        assert body["token_id"] == claims["jti"]
        assert claims["exp"] - claims["iat"] <= 900
        assert capture.last.actor_id == "gov-app"
        assert capture.last.actor_type == "client"
        assert capture.last.roles == ["analyst", "governance"]
        assert capture.last.decision != "deny"

    def test_token_is_an_rfc9068_jwt_signed_by_the_node(self, app) -> None:
        token = access_token(app, Role.analyst)
        header, _, _ = _segments(token)
        assert header == {"alg": "EdDSA", "kid": app.state.node.keys.active.kid, "typ": "at+jwt"}
        claims = jose.verify_compact(token, app.state.node.keys.active.jwk())
        assert claims["iss"] == claims["aud"] == "http://testserver"
        assert claims["sub"] == claims["client_id"] == "test-client"
        assert claims["scope"] == "analyst"
        assert {"exp", "iat", "jti"} <= claims.keys()

    @pytest.mark.parametrize("case", sorted(REFUSED))
    def test_untrustworthy_token_is_refused(self, app, audited, case: str) -> None:
        http, capture = audited
        make, reason = REFUSED[case]
        response = http.get("/v1/whoami", headers={"Authorization": f"Bearer {make(app)}"})
        assert response.status_code == 401, response.text
        assert response.headers["content-type"] == "application/problem+json"
        assert response.json()["reason"] == reason
        challenge = response.headers["www-authenticate"]
        assert challenge.startswith('Bearer realm="rcc-node", error="invalid_token"')
        assert capture.last.decision == "deny"
        assert capture.last.reason == f"unauthenticated:{reason}"

    def test_revocation_stops_a_token_already_used(self, app, client) -> None:
        token = access_token(app, Role.analyst, subject="to-revoke")
        headers = {"Authorization": f"Bearer {token}"}
        assert client.get("/v1/whoami", headers=headers).status_code == 200
        with Session(app.state.node.engine) as session:
            service.revoke(session, client_id="to-revoke")
            session.commit()
        response = client.get("/v1/whoami", headers=headers)
        assert response.status_code == 401
        assert response.json()["reason"] == "client-revoked"

    def test_roles_taken_from_the_client_take_effect_at_once(self, app, client) -> None:
        token = access_token(app, Role.analyst, Role.governance, subject="shrinking")
        with Session(app.state.node.engine) as session:
            row = service.get_client_or_raise(session, client_id="shrinking")
            row.roles = "analyst"
            session.add(row)
            session.commit()
        body = client.get("/v1/whoami", headers={"Authorization": f"Bearer {token}"}).json()
        assert body["roles"] == ["analyst"]

    @pytest.mark.parametrize(
        ("header", "code"),
        [
            (None, "token-missing"),
            ("Basic dXNlcjpwYXNz", "token-missing"),
            ("Bearer ", "invalid-token"),
            ("Bearer not-a-jwt", "invalid-token"),
            ("Bearer a.b.c", "invalid-token"),
        ],
    )
    def test_missing_or_malformed_token_is_401(self, client, header, code) -> None:
        response = client.get("/v1/whoami", headers={"Authorization": header} if header else {})
        assert response.status_code == 401
        assert response.headers["content-type"] == "application/problem+json"
        assert response.json()["code"] == code
        assert response.headers["www-authenticate"].startswith('Bearer realm="rcc-node"')
