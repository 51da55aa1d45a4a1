"""Node-to-node request tokens and response signatures: the per-request crypto of the federation wire.

A request carries ``Authorization: Bearer <JWT>`` (``typ: rcc-request+jwt``, EdDSA) binding the caller
(``iss``), the target (``aud``), a short lifetime (``iat``/``exp``, at most 60 s), a single-use ``jti``, the
``purpose`` and ``agreement`` relied on, and the exact request (``htm`` method, ``htu`` full URL, ``bdh``
base64url SHA-256 of the body bytes). Every response carries ``RCC-Response-Signature``: a compact JWS
(``typ: rcc-response+jws``) over ``{jti, status, bdh, iat}`` of the response, so the caller can keep proof of
what a peer said and when.

The compact JWS itself (parsing, the libsodium signer and verifiers) is the fast path of
:mod:`registry.core.signing`, the one module that does JWS; this module adds the federation's claims and checks.
"""

from __future__ import annotations

import hashlib
import json
import re
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from registry.core.keys import b64url
from registry.core.signing import (
    MAX_COMPACT_CHARS,
    TYP_REQUEST,
    TYP_RESPONSE,
    ParsedJws,
    SignatureInvalid,
    Signer,
    Verifier,
    ed25519_verifier,
    json_segment,
    parse_compact,
)
from schemas.vocabulary import Purpose

if TYPE_CHECKING:
    from federation.directory import Directory, DirectoryNode

__all__ = [
    "CLOCK_SKEW_SECONDS",
    "EMPTY_BODY_DIGEST",
    "MAX_LIFETIME_SECONDS",
    "RESPONSE_SIGNATURE_HEADER",
    "ParsedJws",
    "RequestToken",
    "ResponseProof",
    "Signer",
    "TokenRefused",
    "VerifiedRequest",
    "Verifier",
    "body_digest",
    "build_request_token",
    "ed25519_verifier",
    "new_jti",
    "parse_compact",
    "sign_response",
    "unverified_jti",
    "verify_request_token",
    "verify_response",
]

MAX_LIFETIME_SECONDS = 60
CLOCK_SKEW_SECONDS = 30
RESPONSE_SIGNATURE_HEADER = "RCC-Response-Signature"
EMPTY_BODY_DIGEST = b64url(hashlib.sha256(b"").digest())
_JTI = re.compile(r"^[A-Za-z0-9_-]{16,64}$")
_json_string: Callable[[str], str] = json.encoder.encode_basestring  # a JSON string literal, as json.dumps writes it
_MAX_AGREEMENT_CHARS = 200


def body_digest(body: bytes) -> str:
    """The ``bdh`` of a body: base64url SHA-256 of the exact bytes (of ``b""`` when there is none)."""
    return b64url(hashlib.sha256(body).digest()) if body else EMPTY_BODY_DIGEST


def new_jti(now: float | None = None) -> str:
    """A single-use token id: 128 random bits behind the millisecond it was made (30 base64url characters).

    Time-ordered like a UUIDv7 so that the peer's replay table, keyed by ``jti``, grows at one end: a batch of
    claims then dirties the same few index pages rather than one random page each, a third less per claim on
    SQLite (measured ~35 → ~22 µs at 150,000 live claims). The prefix tells nothing the token's ``iat`` does not.
    """
    millis = int((time.time() if now is None else now) * 1000)
    return b64url(millis.to_bytes(6, "big") + secrets.token_bytes(16))


# --- request tokens -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RequestToken:
    """A token built for one outbound call."""

    token: str
    jti: str
    bdh: str
    iat: int


def build_request_token(
    signer: Signer,
    *,
    issuer: str,
    audience: str,
    method: str,
    url: str,
    body: bytes,
    purpose: str,
    agreement: str | None,
    now: float,
    lifetime: int = MAX_LIFETIME_SECONDS,
) -> RequestToken:
    """Sign the request JWT for one call; ``url`` is the full URL called, ``body`` the exact bytes sent."""
    if not 0 < lifetime <= MAX_LIFETIME_SECONDS:
        raise ValueError(f"a request token lives at most {MAX_LIFETIME_SECONDS} s")
    iat = int(now)
    jti = new_jti(now)
    bdh = body_digest(body)
    claims = {
        "iss": issuer,
        "aud": audience,
        "iat": iat,
        "exp": iat + lifetime,
        "jti": jti,
        "purpose": purpose,
        "agreement": agreement,
        "htm": method.upper(),
        "htu": url,
        "bdh": bdh,
    }
    return RequestToken(signer.compact(claims, typ=TYP_REQUEST), jti, bdh, iat)


class TokenRefused(SignatureInvalid):
    """A request token this node will not accept; carries what could be read of it, for the audit entry.

    ``issuer`` and ``jti`` are as claimed (unverified unless ``verified``): a refusal still names who the
    caller said it was, and the response signature still echoes the caller's ``jti``.
    """

    def __init__(
        self,
        reason: str,
        detail: str = "",
        *,
        issuer: str | None = None,
        jti: str | None = None,
        verified: bool = False,
    ) -> None:
        super().__init__(reason, detail)
        self.issuer = issuer
        self.jti = jti
        self.verified = verified


@dataclass(frozen=True)
class VerifiedRequest:
    """A request token that passed every check."""

    node: DirectoryNode
    kid: str
    jti: str
    purpose: Purpose
    agreement: str | None
    issued_at: int
    expires_at: int
    claims: dict[str, Any]


def verify_request_token(
    token: str,
    *,
    directory: Directory,
    audience: str,
    method: str,
    url: str,
    bdh: str,
    now: float,
    skew: int = CLOCK_SKEW_SECONDS,
) -> VerifiedRequest:
    """Check a request token against the directory and the request actually received.

    Order matters for what a refusal may reveal: the caller and its key are looked up in the directory,
    the signature is verified once, and only then are the signed claims trusted and compared. Raises
    :class:`TokenRefused` whose ``reason`` is a stable code (``unknown-node``, ``unknown-key``, ``retired-key``,
    ``bad-signature``, ``wrong-audience``, ``expired``, ``issued-in-future``, ``method-mismatch``,
    ``url-mismatch``, ``body-mismatch``…).
    """
    try:
        parsed = parse_compact(token, typ=TYP_REQUEST)
    except SignatureInvalid as exc:
        raise TokenRefused(exc.reason, exc.detail) from None
    claims = parsed.payload
    issuer = claims.get("iss") if isinstance(claims.get("iss"), str) else None
    jti = claims.get("jti") if isinstance(claims.get("jti"), str) and _JTI.match(claims["jti"]) else None

    def refuse(reason: str, detail: str, *, verified: bool = True) -> TokenRefused:
        return TokenRefused(reason, detail, issuer=issuer, jti=jti, verified=verified)

    if issuer is None:
        raise refuse("missing-claim", "token names no issuer (iss)", verified=False)
    node = directory.node(issuer, at=now)
    if node is None:
        raise refuse("unknown-node", f"node {issuer} is not in the federation directory", verified=False)
    key = node.key(parsed.kid)
    if key is None:
        raise refuse("unknown-key", f"key {parsed.kid} is not a key of {issuer} in the directory", verified=False)
    if key.status != "active":
        raise refuse("retired-key", f"key {parsed.kid} of {issuer} is retired", verified=False)
    if not key.verify(parsed.signature, parsed.signing_input):
        raise refuse("bad-signature", "token signature does not verify", verified=False)

    if claims.get("aud") != audience:
        raise refuse("wrong-audience", "token is for another node")
    iat, exp = claims.get("iat"), claims.get("exp")
    if not isinstance(iat, int) or not isinstance(exp, int) or isinstance(iat, bool) or isinstance(exp, bool):
        raise refuse("missing-claim", "token needs integer iat and exp")
    if iat > now + skew:
        raise refuse("issued-in-future", "token is issued in the future beyond the allowed clock skew")
    if exp < now - skew:
        raise refuse("expired", "token has expired")
    if exp <= iat or exp - iat > MAX_LIFETIME_SECONDS:
        raise refuse("lifetime-too-long", f"token must expire after iat and within {MAX_LIFETIME_SECONDS} s")
    if jti is None:
        raise refuse("missing-claim", "token needs a jti of 16-64 base64url characters")
    if claims.get("htm") != method:
        raise refuse("method-mismatch", "token was signed for another HTTP method")
    if claims.get("htu") != url:
        raise refuse("url-mismatch", "token was signed for another URL")
    if claims.get("bdh") != bdh:
        raise refuse("body-mismatch", "body does not match the digest the token was signed over")
    try:
        purpose = Purpose(str(claims.get("purpose")))
    except ValueError:
        raise refuse("unknown-purpose", "purpose is not one of the federation's purposes") from None
    agreement = claims.get("agreement")
    if agreement is not None and (not isinstance(agreement, str) or not 0 < len(agreement) <= _MAX_AGREEMENT_CHARS):
        raise refuse("malformed", "agreement must be null or an agreement id")
    return VerifiedRequest(node, parsed.kid, jti, purpose, agreement, iat, exp, claims)


def unverified_jti(token: str) -> str | None:
    """The ``jti`` a token claims, without verifying anything (to echo it in a refusal's response signature)."""
    parts = token.split(".")
    if len(parts) != 3 or len(token) > MAX_COMPACT_CHARS:
        return None
    try:
        jti = json_segment(parts[1]).get("jti")
    except SignatureInvalid:
        return None
    return jti if isinstance(jti, str) and _JTI.match(jti) else None


# --- response signatures --------------------------------------------------------------------------------


def sign_response(signer: Signer, *, jti: str | None, status: int, bdh: str, iat: int) -> str:
    """The ``RCC-Response-Signature`` value for one response.

    Every federated answer is signed, so its four-field payload is written straight out in sorted key order
    (~0.5 µs against ~2.8 µs through ``json.dumps``; a test checks the two agree).
    """
    payload = (
        f'{{"bdh":{_json_string(bdh)},"iat":{int(iat)}'
        f',"jti":{"null" if jti is None else _json_string(jti)},"status":{int(status)}}}'
    )
    return signer.compact_json(payload, typ=TYP_RESPONSE)


@dataclass(frozen=True)
class ResponseProof:
    """A verified response signature: which peer key signed which answer, and when."""

    kid: str
    iat: int
    signature: str


def verify_response(
    signature: str, *, node: DirectoryNode, jti: str, status: int, bdh: str, now: float, skew: int = CLOCK_SKEW_SECONDS
) -> ResponseProof:
    """Check a peer's response signature: its current directory key, our ``jti``, the status and body we got.

    ``iat`` must lie within the clock skew of our clock: an old signed answer replayed by someone in the
    middle is refused. Raises :class:`SignatureInvalid`.
    """
    parsed = parse_compact(signature, typ=TYP_RESPONSE)
    key = node.key(parsed.kid)
    if key is None or key.status != "active":
        raise SignatureInvalid("unknown-key", f"key {parsed.kid} is not a current key of {node.node_id}")
    if not key.verify(parsed.signature, parsed.signing_input):
        raise SignatureInvalid("bad-signature", "response signature does not verify")
    claims = parsed.payload
    if claims.get("jti") != jti:
        raise SignatureInvalid("jti-mismatch", "response is signed for another request")
    if claims.get("status") != status:
        raise SignatureInvalid("status-mismatch", "response status differs from the signed one")
    if claims.get("bdh") != bdh:
        raise SignatureInvalid("body-mismatch", "response body differs from the signed one")
    iat = claims.get("iat")
    if not isinstance(iat, int) or abs(iat - now) > skew + MAX_LIFETIME_SECONDS:
        raise SignatureInvalid("stale", "response signature time is outside the allowed window")
    return ResponseProof(parsed.kid, iat, signature)
