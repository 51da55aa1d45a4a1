"""Local users and roles against a real ``rcc-node serve``: clients made with the CLI get tokens by both client
authentication methods, forged and stale tokens are refused, revocation bites at once, people from two
council identity providers (JWKS file and JWKS over HTTP) get their mapped roles, and every non-public route
refuses a caller without a token."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
from sqlmodel import Session

from registry.core.auth import service
from registry.core.auth.models import ClientCreate, ClientCredentials
from registry.core.auth.tokens import issue_access_token
from registry.core.db import make_engine, utcnow
from registry.core.keys import KeyRing
from registry.core.settings import load_settings
from registry.core.signing import TYP_ACCESS_TOKEN, encode_jwt
from schemas.vocabulary import Role
from tests.support import jose
from tests.support.databases import engine_name, postgres_database
from tests.support.nodes import ServedNode, init_node, invoke_cli, served
from tests.support.tokens import JwksEndpoint, KeyPair, ed25519_pair, rsa_pair, write_jwks

pytestmark = [pytest.mark.integration, pytest.mark.postgres]

KENT, MEDWAY = "https://login.kent.example", "https://login.medway.example"
ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
PUBLIC_PREFIXES = ("/.well-known/", "/federation/")
PUBLIC_PATHS = {"/healthz", "/readyz", "/oauth/token", "/docs", "/docs/oauth2-redirect", "/redoc", "/openapi.json"}


@dataclass
class Federation:
    """The served node, its key ring as on disk, the clients made for it and the two identity providers."""

    node: ServedNode
    keys: KeyRing
    basic: dict[str, Any]
    keyed: dict[str, Any]
    keyed_pair: KeyPair
    kent: KeyPair
    medway: KeyPair
    medway_jwks: JwksEndpoint
    data_dir: Path

    @property
    def url(self) -> str:
        return self.node.base_url

    def cli(self, *args: str) -> Any:
        return json.loads(invoke_cli([*args, "--data-dir", str(self.data_dir), "--json"]).stdout)

    def add_client(self, name: str, *roles: Role) -> ClientCredentials:
        return _add_client(self.data_dir, name, *roles)


def _add_client(data_dir: Path, name: str, *roles: Role, jwk: dict[str, Any] | None = None) -> ClientCredentials:
    """Register a client straight in the node's database (the CLI path is tested once; this is quicker)."""
    settings = load_settings(data_dir=data_dir, config=data_dir / "node.toml")
    engine = make_engine(settings.effective_database_url)
    try:
        with Session(engine) as session:
            created = service.create(session, data=ClientCreate(name=name, roles=list(roles), jwk=jwk))
            session.commit()
    finally:
        engine.dispose()
    return created


@pytest.fixture(scope="module")
def database_url() -> Iterator[str | None]:
    if engine_name() == "postgres":
        with postgres_database() as url:
            yield url
    else:
        yield None


@pytest.fixture(scope="module")
def fed(tmp_path_factory: pytest.TempPathFactory, database_url: str | None) -> Iterator[Federation]:
    tmp = tmp_path_factory.mktemp("auth-int")
    spec = init_node(tmp, "rcc-auth", database_url=database_url)
    data = ["--data-dir", str(spec.data_dir), "--json"]
    basic = json.loads(
        invoke_cli(["clients", "add", "Kent app", "--role", "commissioner", "--role", "analyst", *data]).stdout
    )
    keyed_pair = ed25519_pair("publisher-key")
    keyed = _add_client(spec.data_dir, "Publisher", Role.publisher, jwk=keyed_pair.public_jwk).model_dump(mode="json")
    kent, medway = rsa_pair("kent-1"), ed25519_pair("medway-1")
    with JwksEndpoint(medway) as medway_jwks:
        issuers = [
            {
                "issuer": KENT,
                "audience": spec.base_url,
                "jwks_file": str(write_jwks(tmp / "kent-jwks.json", kent)),
                "roles_claim": "groups",
                "role_map": {"rcc-commissioners": ["commissioner"], "ig": ["governance", "analyst"]},
            },
            {
                "issuer": MEDWAY,
                "audience": spec.base_url,
                "jwks_url": medway_jwks.url,
                "roles_claim": "realm_access.roles",
                "role_map": {"dpo": ["governance"]},
            },
        ]
        with served(spec, env={"RCC_OIDC_ISSUERS": json.dumps(issuers)}, timeout=90) as node:
            yield Federation(
                node=node,
                keys=KeyRing.load(spec.data_dir / "keys"),
                basic=basic,
                keyed=keyed,
                keyed_pair=keyed_pair,
                kent=kent,
                medway=medway,
                medway_jwks=medway_jwks,
                data_dir=spec.data_dir,
            )


def basic_header(client_id: str, secret: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{client_id}:{secret}".encode()).decode()}


def token_by_secret(fed: Federation, client_id: str, secret: str, **form: str) -> httpx.Response:
    return httpx.post(
        f"{fed.url}/oauth/token",
        data={"grant_type": "client_credentials", **form},
        headers=basic_header(client_id, secret),
    )


def token_by_key(fed: Federation, client_id: str, pair: KeyPair) -> httpx.Response:
    now = int(time.time())
    claims = {"iss": client_id, "sub": client_id, "aud": f"{fed.url}/oauth/token", "iat": now, "exp": now + 60}
    assertion = jwt.encode({**claims, "jti": secrets.token_urlsafe(12)}, pair.private, algorithm=pair.alg)
    form = {"grant_type": "client_credentials", "client_assertion_type": ASSERTION_TYPE, "client_assertion": assertion}
    return httpx.post(f"{fed.url}/oauth/token", data=form)


def whoami(fed: Federation, token: str) -> httpx.Response:
    return httpx.get(f"{fed.url}/v1/whoami", headers={"Authorization": f"Bearer {token}"})


def person(pair: KeyPair, issuer: str, audience: str, **claims: Any) -> str:
    now = int(time.time())
    body = {"iss": issuer, "aud": audience, "sub": "jane.doe", "iat": now, "exp": now + 300, **claims}
    return jwt.encode(body, pair.private, algorithm=pair.alg, headers={"kid": pair.public_jwk["kid"]})


class TestClientCredentials:
    def test_client_secret_basic_gets_a_token_the_node_accepts(self, fed: Federation) -> None:
        response = token_by_secret(fed, fed.basic["client_id"], fed.basic["client_secret"])
        assert response.status_code == 200, response.text
        body = response.json()
        assert body["token_type"] == "Bearer" and body["scope"] == "analyst commissioner"
        jwks = httpx.get(f"{fed.url}/.well-known/jwks.json").json()
        claims = jose.verify_compact(body["access_token"], jwks["keys"][0])
        assert claims["iss"] == claims["aud"] == fed.url and claims["sub"] == fed.basic["client_id"]
        assert claims["exp"] - claims["iat"] <= 900
        me = whoami(fed, body["access_token"])
        assert me.status_code == 200
        assert me.json()["subject"] == fed.basic["client_id"]
        assert me.json()["roles"] == ["analyst", "commissioner"]

    def test_private_key_jwt_gets_a_token_the_node_accepts(self, fed: Federation) -> None:
        response = token_by_key(fed, fed.keyed["client_id"], fed.keyed_pair)
        assert response.status_code == 200, response.text
        assert fed.keyed["client_secret"] is None
        assert whoami(fed, response.json()["access_token"]).json()["roles"] == ["publisher"]

    def test_wrong_secret_and_unknown_client_are_refused_alike(self, fed: Federation) -> None:
        wrong = token_by_secret(fed, fed.basic["client_id"], "not-the-secret")
        unknown = token_by_secret(fed, "no-such-client", "whatever")
        for response in (wrong, unknown):
            assert response.status_code == 401
            assert response.json()["error"] == "invalid_client"
            assert response.headers["www-authenticate"].startswith("Basic ")
        assert wrong.json() == unknown.json()

    def test_assertion_signed_by_another_key_is_refused(self, fed: Federation) -> None:
        response = token_by_key(fed, fed.keyed["client_id"], ed25519_pair("publisher-key"))
        assert response.status_code == 401 and response.json()["error"] == "invalid_client"

    def test_revoked_client_loses_its_live_token_at_once(self, fed: Federation) -> None:
        made = fed.add_client("Short-lived app", Role.analyst)
        assert made.client_secret is not None
        token = token_by_secret(fed, made.client_id, made.client_secret).json()["access_token"]
        assert whoami(fed, token).status_code == 200
        revoked = fed.cli("clients", "revoke", made.client_id)  # the operator's command, outside the node
        assert revoked["revoked_at"] is not None
        refused = whoami(fed, token)
        assert refused.status_code == 401
        assert refused.json()["reason"] == "client-revoked"
        assert 'error="invalid_token"' in refused.headers["www-authenticate"]
        again = token_by_secret(fed, made.client_id, made.client_secret)
        assert again.status_code == 401 and again.json()["error"] == "invalid_client"


def _forged(fed: Federation, case: str) -> str:
    keys, url, cid = fed.keys, fed.url, fed.basic["client_id"]
    now = int(time.time())
    claims = {"iss": url, "aud": url, "sub": cid, "client_id": cid, "iat": now, "exp": now + 600, "jti": "x"}
    claims["scope"] = "analyst"
    if case == "expired":
        return issue_access_token(
            keys, base_url=url, client_id=cid, roles=["analyst"], now=utcnow() - timedelta(hours=1)
        ).access_token
    if case == "other audience":
        return encode_jwt({**claims, "aud": "https://rcc.elsewhere.example"}, keys.active, typ=TYP_ACCESS_TOKEN)
    if case == "other key":
        return encode_jwt(claims, KeyRing.generate().active, typ=TYP_ACCESS_TOKEN)
    good = issue_access_token(keys, base_url=url, client_id=cid, roles=["analyst"]).access_token
    head, payload, signature = good.split(".")
    if case == "tampered":
        raised = {**json.loads(jose.b64d(payload)), "scope": "analyst node-admin"}
        return f"{head}.{jose.b64e(json.dumps(raised).encode())}.{signature}"
    if case == "alg none":
        header = {**json.loads(jose.b64d(head)), "alg": "none"}
        return f"{jose.b64e(json.dumps(header).encode())}.{payload}."
    assert case == "HS256 with the public key"
    header = {**json.loads(jose.b64d(head)), "alg": "HS256"}
    signing_input = f"{jose.b64e(json.dumps(header).encode())}.{payload}"
    mac = hmac.new(jose.b64d(keys.active.jwk()["x"]), signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{jose.b64e(mac)}"


class TestForgedTokens:
    @pytest.mark.parametrize(
        ("case", "reason"),
        [
            ("expired", "expired"),
            ("other audience", "wrong-audience"),
            ("other key", "unknown-key"),
            ("tampered", "bad-signature"),
            ("alg none", "bad-algorithm"),
            ("HS256 with the public key", "bad-algorithm"),
        ],
    )
    def test_refused_with_401_problem_and_challenge(self, fed: Federation, case: str, reason: str) -> None:
        response = whoami(fed, _forged(fed, case))
        assert response.status_code == 401, response.text
        assert response.headers["content-type"] == "application/problem+json"
        assert response.json()["reason"] == reason
        assert response.headers["www-authenticate"].startswith('Bearer realm="rcc-node", error="invalid_token"')


class TestExternalIssuers:
    def test_jwks_file_issuer_maps_groups_to_roles(self, fed: Federation) -> None:
        response = whoami(fed, person(fed.kent, KENT, fed.url, groups=["rcc-commissioners", "ig"]))
        assert response.status_code == 200, response.text
        assert response.json()["roles"] == ["analyst", "commissioner", "governance"]
        assert response.json()["issuer"] == KENT and response.json()["actor_type"] == "user"

    def test_jwks_url_issuer_maps_nested_roles(self, fed: Federation) -> None:
        token = person(fed.medway, MEDWAY, fed.url, realm_access={"roles": ["dpo", "staff"]})
        response = whoami(fed, token)
        assert response.status_code == 200, response.text
        assert response.json()["roles"] == ["governance"]
        assert fed.medway_jwks.fetches >= 1

    def test_wrong_issuer_other_audience_and_unmapped_person_are_refused(self, fed: Federation) -> None:
        stranger = whoami(fed, person(fed.kent, "https://login.evil.example", fed.url, groups=["ig"]))
        assert stranger.status_code == 401 and stranger.json()["reason"] == "unknown-issuer"
        # Kent's key, but claiming to be Medway: Medway's JWKS has no such key.
        impostor = whoami(fed, person(fed.kent, MEDWAY, fed.url, realm_access={"roles": ["dpo"]}))
        assert impostor.status_code == 401
        elsewhere = whoami(fed, person(fed.kent, KENT, "https://rcc.elsewhere.example", groups=["ig"]))
        assert elsewhere.status_code == 401 and elsewhere.json()["reason"] == "wrong-audience"
        no_roles = whoami(fed, person(fed.kent, KENT, fed.url, groups=["staff"]))
        assert no_roles.status_code == 403 and no_roles.json()["code"] == "missing-role"


class TestDefaultDenyOverTheWire:
    def test_every_non_public_operation_refuses_a_caller_without_a_token(self, fed: Federation) -> None:
        spec = httpx.get(f"{fed.url}/openapi.json").json()
        probed = 0
        with httpx.Client(base_url=fed.url) as http:
            for path, operations in spec["paths"].items():
                if path in PUBLIC_PATHS or path.startswith(PUBLIC_PREFIXES):
                    continue
                concrete = path.replace("{", "").replace("}", "")  # any value: auth is checked first
                for method in operations:
                    response = http.request(method.upper(), concrete)
                    assert response.status_code == 401, f"{method.upper()} {path}: {response.status_code}"
                    assert response.headers["www-authenticate"].startswith("Bearer")
                    probed += 1
        assert probed >= 1
