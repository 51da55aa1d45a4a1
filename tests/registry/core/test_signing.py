from __future__ import annotations

import base64
import json
import time

import pytest

from registry.core.keys import KeyRing
from registry.core.signing import (
    TYP_AGREEMENT,
    TYP_DESCRIPTOR,
    TYP_REQUEST,
    SignatureInvalid,
    Signer,
    canonical,
    decode_jwt,
    ed25519_verifier,
    encode_jwt,
    parse_compact,
    sign_compact,
    sign_detached,
    verify_compact,
    verify_detached,
)
from tests.support import jose

DOCUMENT = {"title": "South East ↔ London MoU", "parties": ["rcc-se", "rcc-ldn"], "n": 3, "ok": True}


def resolver(ring: KeyRing):
    return lambda kid: ring.get(kid).public if ring.get(kid) else None


class TestCanonical:
    def test_key_order_and_whitespace_do_not_matter(self) -> None:
        assert (
            canonical({"b": 1, "a": [1, 2]}) == canonical(json.loads('{ "a" : [1,2], "b":1 }')) == b'{"a":[1,2],"b":1}'
        )

    def test_rfc8785_number_and_string_forms(self) -> None:
        assert canonical({"x": 1.0, "y": 1e21, "s": "\u20ac\n"}) == '{"s":"€\\n","x":1,"y":1e+21}'.encode()

    def test_non_json_values_are_refused(self) -> None:
        with pytest.raises(ValueError, match="canonicalisable"):
            canonical({"x": float("nan")})


class TestDetachedSignature:
    def test_signature_verifies_independently_of_the_product(self) -> None:
        ring = KeyRing.generate()
        jws = sign_detached(DOCUMENT, ring.active, typ=TYP_AGREEMENT)
        header = jose.verify_detached(DOCUMENT, jws, ring.jwks(), TYP_AGREEMENT)
        assert header == {"alg": "EdDSA", "kid": ring.active.kid, "typ": TYP_AGREEMENT}

    def test_one_changed_byte_fails(self) -> None:
        ring = KeyRing.generate()
        jws = sign_detached(DOCUMENT, ring.active, typ=TYP_AGREEMENT)
        altered = {**DOCUMENT, "n": 4}
        with pytest.raises(SignatureInvalid) as raised:
            verify_detached(altered, jws, typ=TYP_AGREEMENT, resolve=resolver(ring))
        assert raised.value.reason == "bad-signature"
        with pytest.raises(AssertionError):
            jose.verify_detached(altered, jws, ring.jwks(), TYP_AGREEMENT)

    @pytest.mark.parametrize(
        ("mangle", "reason"),
        [
            (lambda jws: jws.replace("..", ".e30.", 1), "malformed"),
            (lambda jws: "not-a-jws", "malformed"),
            (lambda jws: jws[:-4] + ("AAAA" if not jws.endswith("AAAA") else "BBBB"), "bad-signature"),
        ],
    )
    def test_malformed_or_tampered_signatures_are_refused(self, mangle, reason: str) -> None:
        ring = KeyRing.generate()
        jws = mangle(sign_detached(DOCUMENT, ring.active, typ=TYP_AGREEMENT))
        with pytest.raises(SignatureInvalid) as raised:
            verify_detached(DOCUMENT, jws, typ=TYP_AGREEMENT, resolve=resolver(ring))
        assert raised.value.reason == reason

    def test_signature_for_another_purpose_is_refused(self) -> None:
        ring = KeyRing.generate()
        jws = sign_detached(DOCUMENT, ring.active, typ=TYP_DESCRIPTOR)
        with pytest.raises(SignatureInvalid) as raised:
            verify_detached(DOCUMENT, jws, typ=TYP_AGREEMENT, resolve=resolver(ring))
        assert raised.value.reason == "wrong-type"

    def test_signature_by_an_unknown_key_is_refused(self) -> None:
        jws = sign_detached(DOCUMENT, KeyRing.generate().active, typ=TYP_AGREEMENT)
        with pytest.raises(SignatureInvalid) as raised:
            verify_detached(DOCUMENT, jws, typ=TYP_AGREEMENT, resolve=resolver(KeyRing.generate()))
        assert raised.value.reason == "unknown-key"

    def test_alg_none_is_refused(self) -> None:
        ring = KeyRing.generate()
        header = (
            base64.urlsafe_b64encode(json.dumps({"alg": "none", "kid": ring.active.kid, "typ": TYP_AGREEMENT}).encode())
            .rstrip(b"=")
            .decode()
        )
        with pytest.raises(SignatureInvalid) as raised:
            verify_detached(DOCUMENT, f"{header}..", typ=TYP_AGREEMENT, resolve=resolver(ring))
        assert raised.value.reason == "bad-algorithm"


class TestCompactAndJwt:
    def test_compact_signature_round_trips_and_verifies_independently(self) -> None:
        ring = KeyRing.generate()
        token = sign_compact({"jti": "j1", "status": 200}, ring.active, typ="rcc-response+jws")
        assert verify_compact(token, typ="rcc-response+jws", resolve=resolver(ring))[0] == {
            "jti": "j1",
            "status": 200,
        }
        assert jose.verify_compact(token, ring.jwks()["keys"][0]) == {"jti": "j1", "status": 200}

    def _token(self, ring: KeyRing, **claims) -> str:
        now = int(time.time())
        base = {"iss": "rcc-se", "aud": "rcc-ldn", "iat": now, "exp": now + 60, "jti": "abc"}
        return encode_jwt({**base, **claims}, ring.active, typ=TYP_REQUEST)

    def test_valid_token_is_accepted(self) -> None:
        ring = KeyRing.generate()
        claims, kid = decode_jwt(self._token(ring), typ=TYP_REQUEST, resolve=resolver(ring), audience="rcc-ldn")
        assert (claims["iss"], kid) == ("rcc-se", ring.active.kid)

    @pytest.mark.parametrize(
        ("claims", "reason"),
        [
            ({"aud": "rcc-gm"}, "wrong-audience"),
            ({"exp": -120}, "expired"),
            ({"iat": 300, "exp": 360}, "issued-in-future"),
        ],
    )
    def test_invalid_claims_are_refused_with_a_reason(self, claims, reason: str) -> None:
        # Times are offsets from now, taken when the test runs (not when it is collected).
        now = int(time.time())
        claims = {k: (now + v if k in ("iat", "exp") else v) for k, v in claims.items()}
        ring = KeyRing.generate()
        with pytest.raises(SignatureInvalid) as raised:
            decode_jwt(self._token(ring, **claims), typ=TYP_REQUEST, resolve=resolver(ring), audience="rcc-ldn")
        assert raised.value.reason == reason

    def test_missing_jti_is_refused(self) -> None:
        ring = KeyRing.generate()
        now = int(time.time())
        token = encode_jwt({"aud": "rcc-ldn", "iat": now, "exp": now + 60}, ring.active, typ=TYP_REQUEST)
        with pytest.raises(SignatureInvalid) as raised:
            decode_jwt(token, typ=TYP_REQUEST, resolve=resolver(ring), audience="rcc-ldn")
        assert raised.value.reason == "missing-claim"


class TestFastCompactPath:
    """The per-request JWS path (federation tokens, response signatures): same rules, checked independently."""

    def test_signer_output_verifies_independently_of_the_product(self) -> None:
        ring = KeyRing.generate()
        token = Signer(ring.active).compact({"b": 1, "a": "x"}, typ=TYP_REQUEST)
        assert jose.verify_compact(token, ring.jwks()["keys"][0]) == {"a": "x", "b": 1}
        header = json.loads(jose.b64d(token.split(".")[0]))
        assert header == {"alg": "EdDSA", "kid": ring.active.kid, "typ": TYP_REQUEST}

    def test_parse_agrees_with_pyjwt_signed_tokens(self) -> None:
        ring = KeyRing.generate()
        token = sign_compact({"jti": "j" * 22, "n": 3}, ring.active, typ=TYP_REQUEST)
        parsed = parse_compact(token, typ=TYP_REQUEST)
        assert parsed.payload == {"jti": "j" * 22, "n": 3} and parsed.kid == ring.active.kid
        verify = ed25519_verifier(ring.active.public)
        assert verify(parsed.signature, parsed.signing_input)
        assert not verify(parsed.signature, parsed.signing_input + b"x")
        assert not verify(parsed.signature[:-1], parsed.signing_input)

    def test_a_verifier_refuses_another_keys_signature(self) -> None:
        ring, other = KeyRing.generate(), KeyRing.generate()
        parsed = parse_compact(Signer(other.active).compact({"a": 1}, typ=TYP_REQUEST), typ=TYP_REQUEST)
        assert not ed25519_verifier(ring.active.public)(parsed.signature, parsed.signing_input)

    @pytest.mark.parametrize(
        ("mangle", "reason"),
        [
            (lambda t: t.replace(".", "", 1), "malformed"),
            (lambda t: "!" + t, "malformed"),
            (lambda t: t + "x" * 9000, "malformed"),
            (lambda t: jose.b64e(b"[1]") + t[t.index(".") :], "malformed"),
            (
                lambda t: jose.b64e(b'{"alg":"none","typ":"rcc-request+jwt","kid":"k"}') + t[t.index(".") :],
                "bad-algorithm",
            ),
            (lambda t: jose.b64e(b'{"alg":"EdDSA","typ":"at+jwt","kid":"k"}') + t[t.index(".") :], "wrong-type"),
            (lambda t: jose.b64e(b'{"alg":"EdDSA","typ":"rcc-request+jwt"}') + t[t.index(".") :], "no-key-id"),
        ],
    )
    def test_malformed_or_foreign_tokens_are_refused_with_a_reason(self, mangle, reason: str) -> None:
        token = Signer(KeyRing.generate().active).compact({"a": 1}, typ=TYP_REQUEST)
        with pytest.raises(SignatureInvalid) as caught:
            parse_compact(mangle(token), typ=TYP_REQUEST)
        assert caught.value.reason == reason
