"""Request tokens and response signatures, checked against an independent JOSE verifier."""

from __future__ import annotations

import hashlib
import json
import time

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from federation.directory import Directory, load_pinned_keys, verify_envelope
from federation.tokens import (
    EMPTY_BODY_DIGEST,
    Signer,
    TokenRefused,
    body_digest,
    build_request_token,
    new_jti,
    parse_compact,
    sign_response,
    unverified_jti,
    verify_request_token,
    verify_response,
)
from registry.core.db import utcnow
from registry.core.keys import KeyRing, NodeKey, b64url
from registry.core.signing import SignatureInvalid
from tests.support import jose
from tests.support.federation import PeerIdentity, directory, operator_jwks, ring_entry, sign

URL = "https://rcc-b.example/federation/v1/ping"


@pytest.fixture
def ring() -> KeyRing:
    return KeyRing.generate()


@pytest.fixture
def signed_directory(ring: KeyRing) -> Directory:
    operator = KeyRing.generate()
    retiree = PeerIdentity("rcc-old", retired=[Ed25519PrivateKey.generate()])
    document = directory([ring_entry("rcc-a", "https://rcc-a.example", ring), retiree.entry()])
    return verify_envelope(sign(document, operator), load_pinned_keys(operator_jwks(operator)), now=utcnow())


def build(ring: KeyRing, **overrides: object) -> tuple[str, str]:
    arguments: dict[str, object] = {
        "issuer": "rcc-a",
        "audience": "rcc-b",
        "method": "POST",
        "url": URL,
        "body": b'{"a":1}',
        "purpose": "placement-search",
        "agreement": "agr-1",
        "now": time.time(),
    }
    arguments.update(overrides)
    made = build_request_token(Signer(ring.active), **arguments)  # type: ignore[arg-type]
    return made.token, made.jti


class TestRequestToken:
    def test_token_verifies_independently_with_every_claim(self, ring: KeyRing) -> None:
        token, jti = build(ring)
        claims = jose.verify_compact(token, ring.active.jwk())
        header = json.loads(jose.b64d(token.split(".")[0]))
        assert header == {"alg": "EdDSA", "kid": ring.active.kid, "typ": "rcc-request+jwt"}
        assert claims["jti"] == jti
        assert claims["bdh"] == jose.b64e(hashlib.sha256(b'{"a":1}').digest())
        assert claims["exp"] - claims["iat"] == 60
        assert (claims["htm"], claims["htu"], claims["purpose"], claims["agreement"]) == (
            "POST",
            URL,
            "placement-search",
            "agr-1",
        )

    def test_lifetime_over_sixty_seconds_cannot_be_built(self, ring: KeyRing) -> None:
        with pytest.raises(ValueError, match="60"):
            build(ring, lifetime=61)

    def test_empty_body_digest_is_of_empty_bytes(self) -> None:
        assert body_digest(b"") == EMPTY_BODY_DIGEST == "47DEQpj8HBSa-_TImW-5JCeuQeRkm5NMpJWZG3hSuFU"

    def test_verification_returns_the_authenticated_peer(self, ring: KeyRing, signed_directory: Directory) -> None:
        token, jti = build(ring)
        verified = verify_request_token(
            token,
            directory=signed_directory,
            audience="rcc-b",
            method="POST",
            url=URL,
            bdh=body_digest(b'{"a":1}'),
            now=time.time(),
        )
        assert (verified.node.node_id, verified.jti, verified.agreement) == ("rcc-a", jti, "agr-1")

    def test_refusal_carries_claimed_issuer_and_jti(self, ring: KeyRing, signed_directory: Directory) -> None:
        token, jti = build(ring)
        with pytest.raises(TokenRefused) as caught:
            verify_request_token(
                token, directory=signed_directory, audience="rcc-b", method="POST", url=URL, bdh="x", now=time.time()
            )
        assert (caught.value.reason, caught.value.issuer, caught.value.jti) == ("body-mismatch", "rcc-a", jti)
        assert caught.value.verified is True

    def test_retired_key_of_a_member_is_refused(self, signed_directory: Directory) -> None:
        node = signed_directory.nodes["rcc-old"]
        retired_kid = next(k.kid for k in node.keys.values() if k.status == "retired")
        assert node.key(retired_kid) is not None
        assert retired_kid not in node.active_kids

    @pytest.mark.parametrize("token", ["", "a.b", "a.b.c.d", "e30.e30.!!", "W10.e30.AA"])
    def test_malformed_tokens_are_refused(self, token: str) -> None:
        with pytest.raises(SignatureInvalid):
            parse_compact(token, typ="rcc-request+jwt")
        assert unverified_jti(token) is None


class TestParse:
    """The compact parser remembers headers it has checked; what it remembers must never loosen a check."""

    def test_a_remembered_header_is_still_checked_against_the_type_asked_for(self, ring: KeyRing) -> None:
        token, _ = build(ring)
        assert parse_compact(token, typ="rcc-request+jwt").kid == ring.active.kid
        with pytest.raises(SignatureInvalid) as refused:
            parse_compact(token, typ="rcc-response+jws")  # same header segment, another purpose
        assert refused.value.reason == "wrong-type"

    def test_changing_a_parsed_header_does_not_change_the_next_parse(self, ring: KeyRing) -> None:
        token, _ = build(ring)
        parse_compact(token, typ="rcc-request+jwt").header["typ"] = "rcc-response+jws"
        assert parse_compact(token, typ="rcc-request+jwt").header["typ"] == "rcc-request+jwt"
        with pytest.raises(SignatureInvalid):
            parse_compact(token, typ="rcc-response+jws")

    def test_a_payload_that_is_not_utf8_json_is_refused(self, ring: KeyRing) -> None:
        head = build(ring)[0].split(".")[0]
        for payload in ("__79_w", "eyJhIjoxfQ"[:-1] + "A", b64url('{"a":1}'.encode("utf-16"))):
            with pytest.raises(SignatureInvalid) as refused:
                parse_compact(f"{head}.{payload}.AAAA", typ="rcc-request+jwt")
            assert refused.value.reason == "malformed"

    def test_every_header_check_applies_on_first_sight(self, ring: KeyRing) -> None:
        cases = {
            "bad-algorithm": {"alg": "none", "kid": "k", "typ": "rcc-request+jwt"},
            "wrong-type": {"alg": "EdDSA", "kid": "k", "typ": "JWT"},
            "no-key-id": {"alg": "EdDSA", "typ": "rcc-request+jwt"},
        }
        for reason, header in cases.items():
            with pytest.raises(SignatureInvalid) as refused:
                parse_compact(f"{b64url(json.dumps(header).encode())}.e30.AAAA", typ="rcc-request+jwt")
            assert refused.value.reason == reason


class TestJti:
    def test_ids_are_ordered_by_the_millisecond_they_were_made(self) -> None:
        earlier, later = new_jti(1_700_000_000.25), new_jti(1_700_000_000.5)
        assert jose.b64d(earlier)[:6] < jose.b64d(later)[:6]
        assert jose.b64d(earlier)[:6] == (1_700_000_000_250).to_bytes(6, "big")

    def test_ids_carry_128_random_bits_and_pass_the_guards_format(self, ring: KeyRing) -> None:
        made = {new_jti(1_700_000_000.0) for _ in range(100)}
        assert len(made) == 100
        assert all(len(jti) == 30 and len(jose.b64d(jti)) == 22 for jti in made)
        value, jti = build(ring)
        assert unverified_jti(value) == jti  # the guard's jti pattern accepts it


class TestSigner:
    def test_signatures_verify_with_cryptography(self, ring: KeyRing) -> None:
        value = Signer(ring.active).compact({"x": 1}, typ="rcc-response+jws")
        assert jose.verify_compact(value, ring.active.jwk()) == {"x": 1}

    def test_retired_key_cannot_sign(self, ring: KeyRing) -> None:
        key = ring.active
        retired = NodeKey(key.kid, key.public, None, "retired", key.created_at)
        with pytest.raises(ValueError, match="retired"):
            Signer(retired)


class TestResponseSignature:
    def test_round_trip_and_every_bound_field(self, ring: KeyRing, signed_directory: Directory) -> None:
        node = signed_directory.nodes["rcc-a"]
        now = int(time.time())
        value = sign_response(Signer(ring.active), jti="j" * 22, status=200, bdh="abc", iat=now)
        assert verify_response(value, node=node, jti="j" * 22, status=200, bdh="abc", now=now).kid == ring.active.kid
        for changed in ({"jti": "k" * 22}, {"status": 403}, {"bdh": "abd"}, {"now": now + 600}):
            arguments = {"jti": "j" * 22, "status": 200, "bdh": "abc", "now": now, **changed}
            with pytest.raises(SignatureInvalid):
                verify_response(value, node=node, **arguments)  # type: ignore[arg-type]

    def test_signature_by_a_key_not_in_the_directory_is_refused(self, signed_directory: Directory) -> None:
        value = sign_response(Signer(KeyRing.generate().active), jti=None, status=401, bdh="x", iat=int(time.time()))
        with pytest.raises(SignatureInvalid) as caught:
            verify_response(value, node=signed_directory.nodes["rcc-a"], jti="j", status=401, bdh="x", now=time.time())
        assert caught.value.reason == "unknown-key"
