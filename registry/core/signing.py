"""The one module that signs and verifies anything in the product.

Everything signed is signed over its RFC 8785 (JCS) canonical JSON. Documents carry a *detached* JWS
(RFC 7515 Appendix F: ``header..signature``, signing input ``b64url(header) "." b64url(JCS(doc))``) so the
document stays readable JSON; tokens (request JWTs, access tokens) and response signatures are compact
JWS/JWT. Only ``EdDSA`` is accepted, and every signed thing carries a ``typ`` that is checked on verify,
so a signature made for one purpose can never be replayed as another.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Mapping
from typing import Any

import jwt
import rfc8785
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from registry.core.keys import NodeKey, b64url, b64url_decode

ALGORITHM = "EdDSA"

# typ values: one per kind of signed thing.
TYP_DESCRIPTOR = "rcc-node+jws"
TYP_REQUEST = "rcc-request+jwt"
TYP_RESPONSE = "rcc-response+jws"
TYP_ACCESS_TOKEN = "at+jwt"  # noqa: S105 - a media type, not a secret
TYP_AGREEMENT = "rcc-agreement+jws"
TYP_AGREEMENT_EVENT = "rcc-agreement-event+jws"
TYP_TREE_HEAD = "rcc-tree-head+jws"
TYP_DIRECTORY = "rcc-directory+jws"
TYP_PUBLICATION = "rcc-publication+jws"
TYP_STATISTICS = "rcc-statistics+jws"

KeyResolver = Callable[[str], Ed25519PublicKey | None]


class SignatureInvalid(Exception):
    """A signature or token that must not be trusted; ``reason`` is a short stable code for audits and 401s."""

    def __init__(self, reason: str, detail: str = "") -> None:
        self.reason = reason
        self.detail = detail or reason
        super().__init__(self.detail)


def canonical(document: Any) -> bytes:
    """RFC 8785 canonical JSON bytes of a JSON-compatible value."""
    try:
        return rfc8785.dumps(document)
    except (rfc8785.CanonicalizationError, TypeError, ValueError) as exc:
        raise ValueError(f"not canonicalisable JSON: {exc}") from exc


def sha256_hex(data: bytes) -> str:
    """Lowercase hex SHA-256, the form digests take in documents and audit entries."""
    return hashlib.sha256(data).hexdigest()


def sha256_b64url(data: bytes) -> str:
    """Base64url SHA-256, the form of the ``bdh`` (body hash) claim."""
    return b64url(hashlib.sha256(data).digest())


def _header(key: NodeKey, typ: str) -> dict[str, str]:
    return {"alg": ALGORITHM, "kid": key.kid, "typ": typ}


def _signing_key(key: NodeKey) -> Any:
    if key.private is None:
        raise ValueError(f"key {key.kid} is retired and cannot sign")
    return key.private


def sign_detached(document: Any, key: NodeKey, *, typ: str) -> str:
    """Detached compact JWS (``header..signature``) over ``JCS(document)``."""
    token = jwt.api_jws.encode(canonical(document), _signing_key(key), algorithm=ALGORITHM, headers=_header(key, typ))
    head, _, signature = token.split(".")
    return f"{head}..{signature}"


def _unverified_header(token: str, typ: str) -> dict[str, Any]:
    try:
        header = jwt.get_unverified_header(token)
    except jwt.PyJWTError as exc:
        raise SignatureInvalid("malformed", f"malformed signature: {exc}") from None
    if header.get("alg") != ALGORITHM:
        raise SignatureInvalid("bad-algorithm", f"algorithm {header.get('alg')!r} is not accepted; only EdDSA")
    if header.get("typ") != typ:
        raise SignatureInvalid("wrong-type", f"signature type {header.get('typ')!r}, expected {typ!r}")
    if not isinstance(header.get("kid"), str):
        raise SignatureInvalid("no-key-id", "signature header names no kid")
    return header


def _resolve(resolve: KeyResolver, kid: str) -> Ed25519PublicKey:
    public = resolve(kid)
    if public is None:
        raise SignatureInvalid("unknown-key", f"key {kid} is not trusted for this signer")
    return public


def verify_detached(document: Any, jws: str, *, typ: str, resolve: KeyResolver) -> str:
    """Check a detached JWS over ``JCS(document)``; return the signing ``kid`` or raise :class:`SignatureInvalid`."""
    parts = jws.split(".") if isinstance(jws, str) else []
    if len(parts) != 3 or parts[1] != "":
        raise SignatureInvalid("malformed", "not a detached JWS (header..signature)")
    header = _unverified_header(jws, typ)
    public = _resolve(resolve, header["kid"])
    signing_input = f"{parts[0]}.{b64url(canonical(document))}".encode("ascii")
    try:
        public.verify(b64url_decode(parts[2]), signing_input)
    except (InvalidSignature, ValueError):
        raise SignatureInvalid("bad-signature", "signature does not match the document") from None
    return str(header["kid"])


def sign_compact(payload: Mapping[str, Any], key: NodeKey, *, typ: str) -> str:
    """Compact JWS over the canonical JSON of ``payload`` (response signatures, JWT claims)."""
    return jwt.api_jws.encode(
        canonical(dict(payload)), _signing_key(key), algorithm=ALGORITHM, headers=_header(key, typ)
    )


def verify_compact(token: str, *, typ: str, resolve: KeyResolver) -> tuple[dict[str, Any], str]:
    """Verify a compact JWS whose payload is a JSON object; return ``(payload, kid)``."""
    header = _unverified_header(token, typ)
    public = _resolve(resolve, header["kid"])
    try:
        payload = jwt.api_jws.decode(token, public, algorithms=[ALGORITHM])
    except jwt.InvalidSignatureError:
        raise SignatureInvalid("bad-signature", "signature does not verify") from None
    except jwt.PyJWTError as exc:
        raise SignatureInvalid("malformed", f"malformed signature: {exc}") from None
    try:
        claims = json.loads(payload)
    except ValueError:
        raise SignatureInvalid("malformed", "payload is not JSON") from None
    if not isinstance(claims, dict):
        raise SignatureInvalid("malformed", "payload is not a JSON object")
    return claims, str(header["kid"])


def encode_jwt(claims: Mapping[str, Any], key: NodeKey, *, typ: str) -> str:
    """A JWT signed with the node's active key (access tokens, node-to-node request tokens)."""
    return sign_compact(claims, key, typ=typ)


def decode_jwt(
    token: str,
    *,
    typ: str,
    resolve: KeyResolver,
    audience: str,
    issuer: str | None = None,
    leeway: float = 30.0,
    require: tuple[str, ...] = ("exp", "iat", "jti"),
) -> tuple[dict[str, Any], str]:
    """Verify a JWT: signature (EdDSA only), ``typ``, ``aud``, ``iss`` if given, ``exp``/``iat``/``nbf`` with leeway.

    Raises :class:`SignatureInvalid` whose ``reason`` names the failed check (``expired``, ``wrong-audience``,
    ``issued-in-future``…), so callers can refuse with a precise, auditable reason.
    """
    header = _unverified_header(token, typ)
    public = _resolve(resolve, header["kid"])
    try:
        claims: dict[str, Any] = jwt.decode(
            token,
            public,
            algorithms=[ALGORITHM],
            audience=audience,
            issuer=issuer,
            leeway=leeway,
            options={"require": list(require)},
        )
    except jwt.ExpiredSignatureError:
        raise SignatureInvalid("expired", "token has expired") from None
    except jwt.ImmatureSignatureError:
        raise SignatureInvalid("issued-in-future", "token is not yet valid (iat or nbf in the future)") from None
    except jwt.InvalidAudienceError:
        raise SignatureInvalid("wrong-audience", "token is for another audience") from None
    except jwt.InvalidIssuerError:
        raise SignatureInvalid("wrong-issuer", "token is from another issuer") from None
    except jwt.MissingRequiredClaimError as exc:
        raise SignatureInvalid("missing-claim", f"token lacks the {exc.claim!r} claim") from None
    except jwt.InvalidSignatureError:
        raise SignatureInvalid("bad-signature", "token signature does not verify") from None
    except jwt.PyJWTError as exc:
        raise SignatureInvalid("malformed", f"malformed token: {exc}") from None
    return claims, str(header["kid"])
