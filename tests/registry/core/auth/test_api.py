"""The token endpoint in-process: RFC 6749 §4.4 grants, §5.2 errors, lock-out, and role checks on routes."""

from __future__ import annotations

import json
import secrets
import time
from typing import Annotated

import jwt
import pytest
from fastapi import APIRouter, Depends, FastAPI
from fastapi.testclient import TestClient

from registry.core.auth.deps import AnyRole, Governance, require, route_roles, routes_of
from registry.core.auth.principal import Principal
from schemas.vocabulary import Role
from tests.registry.core.auth.helpers import basic, client_credentials
from tests.support import jose
from tests.support.tokens import access_token, ec_pair, ed25519_pair

pytestmark = pytest.mark.postgres
TOKEN_URL = "http://testserver/oauth/token"


def assertion(
    client_id: str, pair, *, aud: str = TOKEN_URL, lifetime: int = 60, jti: str | None = None, **extra
) -> str:
    now = int(time.time())
    claims = {"iss": client_id, "sub": client_id, "aud": aud, "iat": now, "exp": now + lifetime}
    claims["jti"] = jti or secrets.token_urlsafe(12)
    return jwt.encode({**claims, **extra}, pair.private, algorithm=pair.alg, headers={"kid": pair.public_jwk["kid"]})


def assertion_form(token: str, **extra: str) -> dict[str, str]:
    return client_credentials(
        client_assertion_type="urn:ietf:params:oauth:client-assertion-type:jwt-bearer", client_assertion=token, **extra
    )


def assert_oauth_error(response, status: int, error: str) -> dict:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/json"
    assert response.headers["cache-control"] == "no-store"
    body = response.json()
    assert body["error"] == error
    return body


class TestClientSecretBasic:
    def test_token_then_whoami(self, app, make_client, audited) -> None:
        http, capture = audited
        created = make_client(Role.commissioner, Role.analyst)
        response = http.post(
            "/oauth/token", data=client_credentials(), headers=basic(created.client_id, created.client_secret)
        )
        assert response.status_code == 200, response.text
        assert response.headers["cache-control"] == "no-store"
        body = response.json()
        assert body["token_type"] == "Bearer"
        assert body["scope"] == "analyst commissioner"
        assert 0 < body["expires_in"] <= 900
        assert "refresh_token" not in body
        assert capture.last.decision == "permit" and capture.last.actor_id == created.client_id
        claims = jose.verify_compact(body["access_token"], app.state.node.keys.active.jwk())
        assert claims["sub"] == created.client_id and claims["scope"] == "analyst commissioner"
        who = http.get("/v1/whoami", headers={"Authorization": f"Bearer {body['access_token']}"}).json()
        assert who["subject"] == created.client_id

    def test_scope_asks_for_a_subset_of_roles(self, make_client, client) -> None:
        created = make_client(Role.commissioner, Role.analyst)
        response = client.post(
            "/oauth/token",
            data=client_credentials(scope="analyst"),
            headers=basic(created.client_id, created.client_secret),
        )
        assert response.json()["scope"] == "analyst"

    @pytest.mark.parametrize("scope", ["governance", "analyst superuser"])
    def test_scope_beyond_the_clients_roles_is_invalid_scope(self, make_client, client, scope) -> None:
        created = make_client(Role.analyst)
        response = client.post(
            "/oauth/token",
            data=client_credentials(scope=scope),
            headers=basic(created.client_id, created.client_secret),
        )
        assert_oauth_error(response, 400, "invalid_scope")

    def test_wrong_secret_is_invalid_client_with_challenge(self, make_client, audited) -> None:
        http, capture = audited
        created = make_client(Role.analyst)
        response = http.post("/oauth/token", data=client_credentials(), headers=basic(created.client_id, "wrong"))
        assert_oauth_error(response, 401, "invalid_client")
        assert response.headers["www-authenticate"].startswith("Basic ")
        assert capture.last.decision == "deny" and capture.last.reason == "wrong-secret"
        assert capture.last.actor_id == created.client_id

    def test_unknown_client_is_told_the_same_as_a_wrong_secret(self, make_client, audited) -> None:
        http, capture = audited
        created = make_client(Role.analyst)
        unknown = http.post("/oauth/token", data=client_credentials(), headers=basic("nobody", "x"))
        wrong = http.post("/oauth/token", data=client_credentials(), headers=basic(created.client_id, "x"))
        assert assert_oauth_error(unknown, 401, "invalid_client") == assert_oauth_error(wrong, 401, "invalid_client")
        assert [c.reason for c in capture.contexts] == ["unknown-client", "wrong-secret"]

    def test_revoked_client_gets_no_token(self, app, make_client, client) -> None:
        from sqlmodel import Session

        from registry.core.auth import service

        created = make_client(Role.analyst)
        with Session(app.state.node.engine) as session:
            service.revoke(session, client_id=created.client_id)
            session.commit()
        response = client.post(
            "/oauth/token", data=client_credentials(), headers=basic(created.client_id, created.client_secret)
        )
        assert_oauth_error(response, 401, "invalid_client")

    def test_repeated_failures_lock_the_client_out_and_are_audited(self, make_client, audited) -> None:
        http, capture = audited
        created = make_client(Role.analyst)
        for _ in range(5):
            bad = http.post("/oauth/token", data=client_credentials(), headers=basic(created.client_id, "guess"))
            assert bad.status_code == 401
        assert capture.last.reason == "wrong-secret; client-locked-out"
        # Locked out: even the right secret is refused, without being checked, until the window passes.
        locked = http.post(
            "/oauth/token", data=client_credentials(), headers=basic(created.client_id, created.client_secret)
        )
        assert_oauth_error(locked, 429, "invalid_client")
        assert 0 < int(locked.headers["retry-after"]) <= 300
        assert capture.last.decision == "deny" and capture.last.reason == "client-locked-out"

    def test_a_success_resets_the_failure_count(self, make_client, client) -> None:
        created = make_client(Role.analyst)
        good = basic(created.client_id, created.client_secret)
        for _ in range(4):
            client.post("/oauth/token", data=client_credentials(), headers=basic(created.client_id, "guess"))
        assert client.post("/oauth/token", data=client_credentials(), headers=good).status_code == 200
        for _ in range(4):
            client.post("/oauth/token", data=client_credentials(), headers=basic(created.client_id, "guess"))
        assert client.post("/oauth/token", data=client_credentials(), headers=good).status_code == 200

    def test_secret_client_cannot_use_an_assertion(self, make_client, client) -> None:
        created = make_client(Role.analyst)
        token = assertion(created.client_id, ed25519_pair())
        assert_oauth_error(client.post("/oauth/token", data=assertion_form(token)), 401, "invalid_client")


class TestPrivateKeyJwt:
    @pytest.mark.parametrize("make_pair", [ed25519_pair, ec_pair])
    def test_assertion_gets_a_token(self, make_client, client, make_pair) -> None:
        pair = make_pair()
        created = make_client(Role.publisher, jwk=pair.public_jwk)
        response = client.post("/oauth/token", data=assertion_form(assertion(created.client_id, pair)))
        assert response.status_code == 200, response.text
        assert response.json()["scope"] == "publisher"

    def test_node_base_url_is_an_accepted_audience(self, make_client, client) -> None:
        pair = ed25519_pair()
        created = make_client(Role.publisher, jwk=pair.public_jwk)
        token = assertion(created.client_id, pair, aud="http://testserver")
        assert client.post("/oauth/token", data=assertion_form(token)).status_code == 200

    def test_replayed_assertion_is_refused(self, make_client, audited) -> None:
        http, capture = audited
        pair = ed25519_pair()
        created = make_client(Role.publisher, jwk=pair.public_jwk)
        token = assertion(created.client_id, pair)
        assert http.post("/oauth/token", data=assertion_form(token)).status_code == 200
        assert_oauth_error(http.post("/oauth/token", data=assertion_form(token)), 401, "invalid_client")
        assert capture.last.reason == "assertion-replayed"

    @pytest.mark.parametrize(
        ("case", "reason"),
        [
            ("other key", "assertion-invalid:InvalidSignatureError"),
            ("other audience", "assertion-invalid:InvalidAudienceError"),
            ("expired", "assertion-invalid:ExpiredSignatureError"),
            ("long-lived", "assertion-lifetime-too-long"),
            ("iss differs from sub", "assertion-invalid:InvalidIssuerError"),
            ("no jti", "assertion-invalid:MissingRequiredClaimError"),
            ("HS256 with the public key", "assertion-bad-algorithm"),
        ],
    )
    def test_bad_assertion_is_refused(self, make_client, audited, case, reason) -> None:
        http, capture = audited
        pair = ed25519_pair()
        created = make_client(Role.publisher, jwk=pair.public_jwk)
        cid = created.client_id
        if case == "other key":
            token = assertion(cid, ed25519_pair())
        elif case == "other audience":
            token = assertion(cid, pair, aud="https://elsewhere.example/oauth/token")
        elif case == "expired":
            token = assertion(cid, pair, lifetime=-120)
        elif case == "long-lived":
            token = assertion(cid, pair, lifetime=3600)
        elif case == "iss differs from sub":
            token = assertion(cid, pair, iss="someone-else")
        elif case == "no jti":
            now = int(time.time())
            claims = {"iss": cid, "sub": cid, "aud": TOKEN_URL, "exp": now + 60}
            token = jwt.encode(claims, pair.private, algorithm="EdDSA")
        else:
            header = {"alg": "HS256", "typ": "JWT"}
            claims = {"iss": cid, "sub": cid, "aud": TOKEN_URL, "exp": int(time.time()) + 60, "jti": "x"}
            signing_input = f"{jose.b64e(json.dumps(header).encode())}.{jose.b64e(json.dumps(claims).encode())}"
            import hashlib
            import hmac

            mac = hmac.new(jose.b64d(pair.public_jwk["x"]), signing_input.encode(), hashlib.sha256).digest()
            token = f"{signing_input}.{jose.b64e(mac)}"
        assert_oauth_error(http.post("/oauth/token", data=assertion_form(token)), 401, "invalid_client")
        assert capture.last.reason == reason

    def test_garbage_assertion_is_invalid_client(self, client) -> None:
        assert_oauth_error(client.post("/oauth/token", data=assertion_form("garbage")), 401, "invalid_client")


class TestTokenRequestShape:
    def test_unsupported_grant_type(self, make_client, client) -> None:
        created = make_client(Role.analyst)
        response = client.post(
            "/oauth/token", data={"grant_type": "password"}, headers=basic(created.client_id, created.client_secret)
        )
        assert_oauth_error(response, 400, "unsupported_grant_type")

    def test_no_client_authentication_is_invalid_client(self, client) -> None:
        response = client.post("/oauth/token", data=client_credentials())
        assert_oauth_error(response, 401, "invalid_client")

    def test_json_body_is_invalid_request(self, client) -> None:
        response = client.post("/oauth/token", json=client_credentials())
        assert_oauth_error(response, 400, "invalid_request")

    def test_repeated_parameter_is_invalid_request(self, client) -> None:
        response = client.post(
            "/oauth/token",
            content=b"grant_type=client_credentials&grant_type=client_credentials",
            headers={"content-type": "application/x-www-form-urlencoded"},
        )
        assert_oauth_error(response, 400, "invalid_request")

    def test_two_authentication_methods_at_once_is_invalid_request(self, make_client, client) -> None:
        pair = ed25519_pair()
        created = make_client(Role.analyst, jwk=pair.public_jwk)
        response = client.post(
            "/oauth/token",
            data=assertion_form(assertion(created.client_id, pair)),
            headers=basic(created.client_id, "x"),
        )
        assert_oauth_error(response, 400, "invalid_request")


class TestRoleChecks:
    @pytest.fixture
    def guarded(self, app: FastAPI, client: TestClient) -> TestClient:
        if any(getattr(r, "path", "") == "/v1/test/governance" for r in app.routes):
            return client

        @app.get("/v1/test/governance")
        async def governance_only(principal: Governance) -> dict[str, str]:
            return {"subject": principal.subject}

        @app.get("/v1/test/either")
        async def either(
            principal: Annotated[Principal, Depends(require(Role.publisher, Role.provider))],
        ) -> dict[str, str]:
            return {"subject": principal.subject}

        return client

    def test_holder_of_the_role_gets_in(self, app, guarded) -> None:
        headers = {"Authorization": f"Bearer {access_token(app, Role.governance)}"}
        assert guarded.get("/v1/test/governance", headers=headers).json() == {"subject": "test-client"}

    def test_any_of_the_roles_admits(self, app, guarded) -> None:
        headers = {"Authorization": f"Bearer {access_token(app, Role.provider, subject='p')}"}
        assert guarded.get("/v1/test/either", headers=headers).status_code == 200

    def test_missing_role_is_403_naming_the_roles(self, app, guarded) -> None:
        headers = {"Authorization": f"Bearer {access_token(app, Role.analyst, subject='a')}"}
        response = guarded.get("/v1/test/either", headers=headers)
        assert response.status_code == 403
        assert response.headers["content-type"] == "application/problem+json"
        body = response.json()
        assert body["code"] == "missing-role"
        assert body["required_roles"] == ["provider", "publisher"]
        assert "provider" in body["detail"] and "publisher" in body["detail"]
        assert 'error="insufficient_scope"' in response.headers["www-authenticate"]

    def test_missing_role_is_audited(self, app, guarded, audited) -> None:
        http, capture = audited
        headers = {"Authorization": f"Bearer {access_token(app, Role.analyst, subject='nosy')}"}
        assert http.get("/v1/test/governance", headers=headers).status_code == 403
        assert capture.last.decision == "deny" and capture.last.reason == "missing-role"
        assert capture.last.actor_id == "nosy" and capture.last.roles == ["analyst"]

    def test_token_without_roles_cannot_even_ask_whoami(self, app, client) -> None:
        token = access_token(app, Role.analyst, subject="r")
        from sqlmodel import Session

        from registry.core.auth import service

        with Session(app.state.node.engine) as session:
            row = service.get_client_or_raise(session, client_id="r")
            row.roles = "governance"
            session.add(row)
            session.commit()
        response = client.get("/v1/whoami", headers={"Authorization": f"Bearer {token}"})
        assert response.status_code == 403

    def test_roles_are_readable_from_the_route(self, app, guarded) -> None:
        roles = {(d.path, m): d.roles for d in routes_of(app) for m in d.methods}
        assert roles[("/v1/test/governance", "GET")] == {"governance"}
        assert roles[("/v1/test/either", "GET")] == {"provider", "publisher"}
        assert roles[("/v1/whoami", "GET")] == {r.value for r in Role}
        assert roles[("/healthz", "GET")] is None
        assert route_roles(next(r for r in app.routes if getattr(r, "path", "") == "/v1/test/either")) == {
            "provider",
            "publisher",
        }

    def test_router_level_requirement_covers_every_route_of_the_router(self, app) -> None:
        router = APIRouter(prefix="/v1/test-router", dependencies=[Depends(require(Role.governance))])

        @router.get("/a")
        async def a() -> dict[str, str]:
            return {}

        app.include_router(router)
        declared = {d.path: d.roles for d in routes_of(app)}
        assert declared["/v1/test-router/a"] == {"governance"}
        with TestClient(app) as http:
            assert http.get("/v1/test-router/a").status_code == 401
            headers = {"Authorization": f"Bearer {access_token(app, Role.governance)}"}
            assert http.get("/v1/test-router/a", headers=headers).status_code == 200

    def test_require_returns_one_dependency_per_role_set(self) -> None:
        assert require(Role.analyst, Role.governance) is require(Role.governance, Role.analyst)
        assert require(Role.analyst).roles == {"analyst"}
        with pytest.raises(ValueError, match="at least one role"):
            require()

    def test_any_role_admits_every_role(self) -> None:
        dependency = AnyRole.__metadata__[0].dependency
        assert dependency.roles == {r.value for r in Role}

    def test_openapi_names_the_scopes_of_each_route(self, app) -> None:
        spec = app.openapi()
        assert spec["paths"]["/v1/whoami"]["get"]["security"] == [{"node-token": sorted(r.value for r in Role)}]
        flows = spec["components"]["securitySchemes"]["node-token"]["flows"]
        assert flows["clientCredentials"]["tokenUrl"] == "/oauth/token"
