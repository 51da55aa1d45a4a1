"""An independent JOSE verifier for tests: RFC 7515/7638 with `cryptography`, never the product's module."""

from __future__ import annotations

import base64
import hashlib
import json
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey


def b64d(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def b64e(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def jcs(value: Any) -> bytes:
    """Canonical JSON for the documents the tests use (ASCII keys, ints, strings, lists, objects, bools, null).

    Python's sort_keys plus compact separators equals RFC 8785 for this subset, which keeps this
    independent of the rfc8785 package the product uses.
    """
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def thumbprint(jwk: dict[str, Any]) -> str:
    """RFC 7638 §3 for an OKP key: required members in lexicographic order, no whitespace."""
    text = '{"crv":"%s","kty":"%s","x":"%s"}' % (jwk["crv"], jwk["kty"], jwk["x"])
    return b64e(hashlib.sha256(text.encode()).digest())


def public_key(jwk: dict[str, Any]) -> Ed25519PublicKey:
    return Ed25519PublicKey.from_public_bytes(b64d(jwk["x"]))


def verify_detached(document: Any, jws: str, jwks: dict[str, Any], typ: str) -> dict[str, Any]:
    """Verify an RFC 7515 Appendix F detached JWS over JCS(document); return the header or raise AssertionError."""
    head, middle, signature = jws.split(".")
    assert middle == "", "payload must be detached"
    header = json.loads(b64d(head))
    assert header["alg"] == "EdDSA"
    assert header["typ"] == typ
    keys = {k["kid"]: k for k in jwks["keys"]}
    key = keys[header["kid"]]
    assert thumbprint(key) == header["kid"]
    try:
        public_key(key).verify(b64d(signature), f"{head}.{b64e(jcs(document))}".encode())
    except InvalidSignature as exc:
        raise AssertionError("signature does not verify") from exc
    return header


def verify_compact(token: str, jwk: dict[str, Any]) -> dict[str, Any]:
    """Verify a compact EdDSA JWS/JWT with one key; return its JSON payload."""
    head, payload, signature = token.split(".")
    try:
        public_key(jwk).verify(b64d(signature), f"{head}.{payload}".encode())
    except InvalidSignature as exc:
        raise AssertionError("signature does not verify") from exc
    result: dict[str, Any] = json.loads(b64d(payload))
    return result
