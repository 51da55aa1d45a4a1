"""External OpenID Connect issuers: a test-generated key pair plays the council's identity provider, its JWKS
served from a file and from a tiny local HTTP endpoint; roles are mapped, everything else refused."""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jwt
import pytest
from fastapi.testclient import TestClient

from registry.app import create_app
from registry.core.auth.errors import TokenInvalid
from registry.core.auth.oidc import OidcVerifier, map_roles
from registry.core.db import claim_database, make_engine
from registry.core.errors import ServiceUnavailable
from registry.core.keys import KeyRing
from registry.core.settings import OidcIssuer, Settings, load_settings
from tests.support import jose
from tests.support.tokens import JwksEndpoint, KeyPair, ec_pair, ed25519_pair, rsa_pair, write_jwks

ISSUER = "https://login.kent.example"
AUDIENCE = "rcc-south-east"
ROLE_MAP = {"rcc-commissioners": ["commissioner"], "ig-team": ["governance", "analyst"]}


def id_token(pair: KeyPair, *, kid: str | None = "use-pair", **overrides: Any) -> str:
    now = int(time.time())
    claims = {
        "iss": ISSUER,
        "aud": AUDIENCE,
        "sub": "jane.doe@kent.example",
        "iat": now,
        "exp": now + 300,
        "groups": ["rcc-commissioners", "staff"],
        **overrides,
    }
    headers = {} if kid is None else {"kid": pair.public_jwk["kid"] if kid == "use-pair" else kid}
    return jwt.encode(
        {k: v for k, v in claims.items() if v is not None}, pair.private, algorithm=pair.alg, headers=headers
    )


def issuer_config(jwks_file: Path | None = None, jwks_url: str | None = None, **extra: Any) -> OidcIssuer:
    values: dict[str, Any] = {"roles_claim": "groups", "role_map": ROLE_MAP, **extra}
    return OidcIssuer(issuer=ISSUER, audience=AUDIENCE, jwks_file=jwks_file, jwks_url=jwks_url, **values)


@pytest.fixture
def idp(idp_rsa: KeyPair) -> KeyPair:
    return idp_rsa


@pytest.fixture
def file_verifier(tmp_path: Path, idp: KeyPair) -> OidcVerifier:
    return OidcVerifier([issuer_config(jwks_file=write_jwks(tmp_path / "jwks.json", idp))])


class TestValidation:
    def test_valid_token_maps_roles(self, file_verifier, idp) -> None:
        principal = file_verifier.verify(id_token(idp), ISSUER)
        assert principal.subject == "jane.doe@kent.example"
        assert principal.actor_type == "user"
        assert principal.issuer == ISSUER
        assert principal.roles == {"commissioner"}

    def test_unmapped_values_grant_nothing(self, file_verifier, idp) -> None:
        assert file_verifier.verify(id_token(idp, groups=["staff", "admins"]), ISSUER).roles == frozenset()

    def test_several_values_grant_the_union(self, file_verifier, idp) -> None:
        token = id_token(idp, groups=["rcc-commissioners", "ig-team"])
        assert file_verifier.verify(token, ISSUER).roles == {"commissioner", "governance", "analyst"}

    @pytest.mark.parametrize(
        ("claims", "expected"),
        [
            ({"groups": "ig-team rcc-commissioners"}, {"governance", "analyst", "commissioner"}),
            ({"realm_access": {"roles": ["ig-team"]}}, {"governance", "analyst"}),
            ({"groups": 7}, set()),
            ({}, set()),
        ],
    )
    def test_roles_claim_shapes(self, claims, expected) -> None:
        claim = "realm_access.roles" if "realm_access" in claims else "groups"
        config = issuer_config(jwks_file=Path("unused.json"), roles_claim=claim)
        assert map_roles(config, claims) == expected

    @pytest.mark.parametrize(
        ("overrides", "reason"),
        [
            (lambda now: {"aud": "someone-else"}, "wrong-audience"),
            (lambda now: {"exp": now - 120}, "expired"),
            (lambda now: {"nbf": now + 300}, "not-yet-valid"),
            (lambda now: {"sub": None}, "missing-claim"),
        ],
        ids=["other audience", "expired beyond skew", "not yet valid", "no subject"],
    )
    def test_bad_claims_are_refused(self, file_verifier, idp, overrides, reason) -> None:
        with pytest.raises(TokenInvalid) as caught:
            file_verifier.verify(id_token(idp, **overrides(int(time.time()))), ISSUER)
        assert caught.value.reason == reason

    def test_skew_within_a_minute_is_tolerated(self, file_verifier, idp) -> None:
        assert file_verifier.verify(id_token(idp, exp=int(time.time()) - 30), ISSUER).roles == {"commissioner"}

    def test_wrong_issuer_is_refused(self, file_verifier, idp) -> None:
        with pytest.raises(TokenInvalid) as caught:
            file_verifier.verify(id_token(idp, iss="https://login.evil.example"), "https://login.evil.example")
        assert caught.value.reason == "unknown-issuer"
        with pytest.raises(TokenInvalid) as caught:  # claims our issuer's name, but its iss differs
            file_verifier.verify(id_token(idp, iss="https://login.evil.example"), ISSUER)
        assert caught.value.reason == "wrong-issuer"

    def test_token_signed_by_another_key_with_the_same_kid_is_refused(self, file_verifier, idp) -> None:
        impostor = rsa_pair(idp.public_jwk["kid"])
        with pytest.raises(TokenInvalid) as caught:
            file_verifier.verify(id_token(impostor), ISSUER)
        assert caught.value.reason == "bad-signature"

    def test_hs256_with_the_issuers_public_key_is_refused(self, file_verifier, idp) -> None:
        header = {"alg": "HS256", "typ": "JWT", "kid": idp.public_jwk["kid"]}
        claims = {"iss": ISSUER, "aud": AUDIENCE, "sub": "x", "exp": int(time.time()) + 60, "groups": ["ig-team"]}
        signing_input = f"{jose.b64e(json.dumps(header).encode())}.{jose.b64e(json.dumps(claims).encode())}"
        secret = json.dumps(idp.public_jwk).encode()
        token = f"{signing_input}.{jose.b64e(hmac.new(secret, signing_input.encode(), hashlib.sha256).digest())}"
        with pytest.raises(TokenInvalid) as caught:
            file_verifier.verify(token, ISSUER)
        assert caught.value.reason == "bad-algorithm"

    def test_alg_none_is_refused(self, file_verifier, idp) -> None:
        _, payload, _ = id_token(idp).split(".")
        header = {"alg": "none", "kid": idp.public_jwk["kid"]}
        token = f"{jose.b64e(json.dumps(header).encode())}.{payload}."
        with pytest.raises(TokenInvalid) as caught:
            file_verifier.verify(token, ISSUER)
        assert caught.value.reason == "bad-algorithm"

    def test_algorithm_the_key_does_not_declare_is_refused(self, file_verifier, idp) -> None:
        token = jwt.encode(
            {"iss": ISSUER, "aud": AUDIENCE, "sub": "x", "exp": int(time.time()) + 60},
            idp.private,
            algorithm="PS256",
            headers={"kid": idp.public_jwk["kid"]},
        )
        with pytest.raises(TokenInvalid) as caught:
            file_verifier.verify(token, ISSUER)
        assert caught.value.reason == "bad-algorithm"

    def test_token_without_kid_uses_a_single_key_jwks(self, tmp_path: Path) -> None:
        pair = ed25519_pair()
        verifier = OidcVerifier([issuer_config(jwks_file=write_jwks(tmp_path / "one.json", pair))])
        assert verifier.verify(id_token(pair, kid=None), ISSUER).roles == {"commissioner"}

    def test_symmetric_keys_in_the_jwks_are_never_used(self, tmp_path: Path) -> None:
        path = tmp_path / "oct.json"
        path.write_text(
            json.dumps(
                {
                    "keys": [
                        {"kty": "oct", "k": jose.b64e(b"shared-secret-of-32-bytes-length"), "kid": "h", "alg": "HS256"}
                    ]
                }
            )
        )
        verifier = OidcVerifier([issuer_config(jwks_file=path)])
        token = jwt.encode(
            {"iss": ISSUER, "aud": AUDIENCE, "sub": "x", "exp": int(time.time()) + 60},
            b"shared-secret-of-32-bytes-length",
            algorithm="HS256",
            headers={"kid": "h"},
        )
        with pytest.raises(TokenInvalid) as caught:
            verifier.verify(token, ISSUER)
        assert caught.value.reason == "bad-algorithm"


class TestJwksEndpoint:
    def test_jwks_is_fetched_once_and_refreshed_on_an_unknown_kid(self, idp) -> None:
        rotated = ec_pair("council-2")
        with JwksEndpoint(idp) as endpoint:
            verifier = OidcVerifier([issuer_config(jwks_url=endpoint.url)])
            assert verifier.verify(id_token(idp), ISSUER).roles == {"commissioner"}
            assert verifier.verify(id_token(idp), ISSUER).roles == {"commissioner"}
            assert endpoint.fetches == 1
            endpoint.document = {"keys": [idp.public_jwk, rotated.public_jwk]}  # the IdP rotates
            # Refreshes are throttled; pretend the last fetch is old enough.
            verifier._issuers[ISSUER].loaded_at -= 31  # type: ignore[operator]
            assert verifier.verify(id_token(rotated), ISSUER).roles == {"commissioner"}
            assert endpoint.fetches == 2

    def test_unknown_kids_cannot_make_the_node_hammer_the_idp(self, idp) -> None:
        with JwksEndpoint(idp) as endpoint:
            verifier = OidcVerifier([issuer_config(jwks_url=endpoint.url)])
            verifier.verify(id_token(idp), ISSUER)
            for n in range(5):
                with pytest.raises(TokenInvalid) as caught:
                    verifier.verify(id_token(idp, kid=f"made-up-{n}"), ISSUER)
                assert caught.value.reason == "unknown-key"
            assert endpoint.fetches == 1

    def test_unreachable_jwks_is_503_not_a_crash(self, idp) -> None:
        from tests.support.nodes import free_port

        verifier = OidcVerifier([issuer_config(jwks_url=f"http://127.0.0.1:{free_port()}/jwks.json")])
        with pytest.raises(ServiceUnavailable):
            verifier.verify(id_token(idp), ISSUER)


@pytest.mark.postgres
class TestOnTheNode:
    @pytest.fixture
    def oidc_client(
        self, tmp_path: Path, migrated_db_url: str, idp: KeyPair
    ) -> Iterator[tuple[TestClient, JwksEndpoint]]:
        """A node trusting two issuers: Kent (JWKS file) and Medway (JWKS over HTTP, Ed25519)."""
        medway = ed25519_pair("medway-1")
        with JwksEndpoint(medway) as endpoint:
            settings: Settings = load_settings(
                data_dir=tmp_path,
                node_id="rcc-test",
                database_url=migrated_db_url,
                base_url="http://testserver",
                oidc_issuers=[
                    issuer_config(jwks_file=write_jwks(tmp_path / "kent.json", idp)),
                    OidcIssuer(
                        issuer="https://login.medway.example",
                        audience=AUDIENCE,
                        jwks_url=endpoint.url,
                        roles_claim="roles",
                        role_map={"dpo": ["governance"]},
                    ),
                ],
            )
            engine = make_engine(migrated_db_url)
            claim_database(engine, "rcc-test")
            with TestClient(create_app(settings, keys=KeyRing.generate(), engine=engine)) as http:
                http.medway = medway  # type: ignore[attr-defined]
                yield http, endpoint
            engine.dispose()

    def test_people_from_both_issuers_get_their_mapped_roles(self, oidc_client, idp) -> None:
        http, endpoint = oidc_client
        kent = http.get("/v1/whoami", headers={"Authorization": f"Bearer {id_token(idp)}"})
        assert kent.status_code == 200, kent.text
        assert kent.json()["roles"] == ["commissioner"] and kent.json()["actor_type"] == "user"
        medway_token = id_token(http.medway, iss="https://login.medway.example", roles=["dpo"])
        medway = http.get("/v1/whoami", headers={"Authorization": f"Bearer {medway_token}"})
        assert medway.status_code == 200, medway.text
        assert medway.json() == {
            "subject": "jane.doe@kent.example",
            "actor_type": "user",
            "roles": ["governance"],
            "issuer": "https://login.medway.example",
            "expires_at": medway.json()["expires_at"],
            "token_id": None,
        }
        assert endpoint.fetches == 1

    def test_wrong_issuer_and_no_roles_are_refused(self, oidc_client, idp) -> None:
        http, _ = oidc_client
        evil = http.get("/v1/whoami", headers={"Authorization": f"Bearer {id_token(idp, iss='https://evil.example')}"})
        assert evil.status_code == 401 and evil.json()["reason"] == "unknown-issuer"
        staff = http.get("/v1/whoami", headers={"Authorization": f"Bearer {id_token(idp, groups=['staff'])}"})
        assert staff.status_code == 403


class TestSettings:
    def test_issuer_needs_exactly_one_key_source(self) -> None:
        with pytest.raises(ValueError, match="exactly one"):
            OidcIssuer(issuer=ISSUER, audience=AUDIENCE)
        with pytest.raises(ValueError, match="exactly one"):
            OidcIssuer(issuer=ISSUER, audience=AUDIENCE, jwks_url=f"{ISSUER}/jwks", jwks_file=Path("x"))

    def test_role_map_values_must_be_roles(self) -> None:
        with pytest.raises(ValueError, match="role_map"):
            OidcIssuer(issuer=ISSUER, audience=AUDIENCE, jwks_url=f"{ISSUER}/jwks", role_map={"x": ["root"]})

    def test_issuers_come_from_the_environment_as_json(self, monkeypatch, tmp_path: Path) -> None:
        value = [{"issuer": ISSUER, "audience": AUDIENCE, "jwks_url": f"{ISSUER}/jwks", "role_map": {"g": ["analyst"]}}]
        monkeypatch.setenv("RCC_OIDC_ISSUERS", json.dumps(value))
        settings = load_settings(data_dir=tmp_path)
        assert settings.oidc_issuers[0].role_map == {"g": ["analyst"]}
