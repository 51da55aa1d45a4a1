"""Which signature algorithms a public JWK may be used with: asymmetric only, and only what the key declares.

Shared by client assertions (``private_key_jwt``) and external issuers' tokens, so both refuse ``none``, every
HMAC algorithm (the public-key-as-HMAC-secret confusion) and any algorithm that does not fit the key's type.
"""

from __future__ import annotations

from typing import Any

ASYMMETRIC_ALGORITHMS = frozenset(
    {"RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA"}
)
_ALGS_BY_KEY: dict[tuple[str, str | None], tuple[str, ...]] = {
    ("RSA", None): ("RS256", "RS384", "RS512", "PS256", "PS384", "PS512"),
    ("EC", "P-256"): ("ES256",),
    ("EC", "P-384"): ("ES384",),
    ("EC", "P-521"): ("ES512",),
    ("OKP", "Ed25519"): ("EdDSA",),
}


def key_algorithms(jwk: dict[str, Any]) -> tuple[str, ...]:
    """The algorithms ``jwk`` may verify: its declared ``alg`` if that fits its type, else every one its type implies.

    Empty for symmetric (``oct``) keys, unknown key types and ill-declared keys: such keys are never used.
    """
    kty, crv = jwk.get("kty"), jwk.get("crv")
    if not isinstance(kty, str):
        return ()
    implied = _ALGS_BY_KEY.get((kty, None if kty == "RSA" else crv if isinstance(crv, str) else ""), ())
    declared = jwk.get("alg")
    if declared is not None:
        return (declared,) if declared in implied else ()
    return implied
