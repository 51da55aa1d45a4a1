"""The one module that signs and verifies anything in the product.

Everything signed is signed over its RFC 8785 (JCS) canonical JSON. Documents carry a *detached* JWS
(RFC 7515 Appendix F: ``header..signature``, signing input ``b64url(header) "." b64url(JCS(doc))``) so the
document stays readable JSON; tokens (request JWTs, access tokens) and response signatures are compact
JWS/JWT. Only ``EdDSA`` is accepted, and every signed thing carries a ``typ`` that is checked on verify,
so a signature made for one purpose can never be replayed as another.

Two ways to the same JWS rules. Documents, access tokens and other rarely-checked things go through PyJWT
(:func:`sign_detached`, :func:`decode_jwt`…). The per-request tokens of the federation wire go through the
*fast compact path* (:class:`Signer`, :func:`parse_compact`, :func:`ed25519_verifier`): PyJWT 2.15's segment
validation loops over every character in Python (~250 µs a token, more than the Ed25519 verify itself), so
this path splits and decodes the compact form itself, under the same rules — EdDSA only, ``typ`` checked,
``kid`` required, strict base64url — and raises the same :class:`SignatureInvalid`. Ed25519 runs on libsodium
(PyNaCl) when it is installed (verify ~80 µs against ~180 µs with ``cryptography``), else on ``cryptography``;
both give identical results. Key objects are converted once (per signer, per directory key), never per call.
"""

from __future__ import annotations

import binascii
import hashlib
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import jwt
import rfc8785
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

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

try:  # libsodium is optional: ~2x faster Ed25519; the product is correct without it.
    import nacl.bindings as _sodium
    import nacl.exceptions as _sodium_errors
except ImportError:  # pragma: no cover - depends on the installation
    _sodium = None  # type: ignore[assignment]

MAX_COMPACT_CHARS = 8192


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
    except jwt.PyJWTError as exc:
        raise SignatureInvalid(*jwt_refusal(exc)) from None
    return claims, str(header["kid"])


def jwt_refusal(exc: jwt.PyJWTError, *, immature: str = "issued-in-future") -> tuple[str, str]:
    """The reason code and detail a PyJWT refusal is reported with (every JWT check in the product uses these)."""
    if isinstance(exc, jwt.ExpiredSignatureError):
        return "expired", "token has expired"
    if isinstance(exc, jwt.ImmatureSignatureError):
        return immature, "token is not yet valid (iat or nbf in the future)"
    if isinstance(exc, jwt.InvalidAudienceError):
        return "wrong-audience", "token is for another audience"
    if isinstance(exc, jwt.InvalidIssuerError):
        return "wrong-issuer", "token is from another issuer"
    if isinstance(exc, jwt.MissingRequiredClaimError):
        return "missing-claim", f"token lacks the {exc.claim!r} claim"
    if isinstance(exc, jwt.InvalidSignatureError):
        return "bad-signature", "token signature does not verify"
    return "malformed", f"malformed token: {exc}"


# --- the fast compact path (per-request tokens and response signatures) ---------------------------------

Verifier = Callable[[bytes, bytes], bool]
"""``verify(signature, message) -> bool`` for one public key, built once per key."""


def ed25519_verifier(public: Ed25519PublicKey) -> Verifier:
    """A fast verify function for one key (libsodium when available); build it once and keep it."""
    raw = public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    if _sodium is not None:
        sodium = _sodium
        bad = _sodium_errors.BadSignatureError

        def verify_sodium(signature: bytes, message: bytes) -> bool:
            if len(signature) != 64:
                return False
            try:
                sodium.crypto_sign_open(signature + message, raw)
            except bad:
                return False
            return True

        return verify_sodium

    def verify_cryptography(signature: bytes, message: bytes) -> bool:
        try:
            public.verify(signature, message)
        except InvalidSignature:
            return False
        return True

    return verify_cryptography


def b64json(value: Mapping[str, Any]) -> str:
    """Base64url of compact, key-sorted JSON: a JWS header or payload segment."""
    return b64url(json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8"))


class Signer:
    """Signs compact JWS with one node key on the fast path; header segments are built once per ``typ``."""

    def __init__(self, key: NodeKey) -> None:
        private: Ed25519PrivateKey = _signing_key(key)
        self.kid = key.kid
        self._sign: Callable[[bytes], bytes] = private.sign
        if _sodium is not None:
            seed = private.private_bytes(
                serialization.Encoding.Raw, serialization.PrivateFormat.Raw, serialization.NoEncryption()
            )
            _public, secret = _sodium.crypto_sign_seed_keypair(seed)
            sodium = _sodium
            self._sign = lambda message: sodium.crypto_sign(message, secret)[:64]
        self._headers: dict[str, str] = {}

    def compact(self, payload: Mapping[str, Any], *, typ: str) -> str:
        """``b64(header).b64(payload).b64(signature)`` over compact, key-sorted JSON of ``payload``."""
        return self.compact_json(
            json.dumps(payload, sort_keys=True, separators=(",", ":"), ensure_ascii=False), typ=typ
        )

    def compact_json(self, payload: str, *, typ: str) -> str:
        """:meth:`compact` over payload JSON the caller wrote itself (a fixed shape on a hot path).

        The caller answers for ``payload`` being the compact, key-sorted JSON of one object.
        """
        head = self._headers.get(typ)
        if head is None:
            head = b64json({"alg": ALGORITHM, "kid": self.kid, "typ": typ})
            self._headers[typ] = head
        signing_input = f"{head}.{b64url(payload.encode('utf-8'))}"
        return f"{signing_input}.{b64url(self._sign(signing_input.encode('ascii')))}"


# base64url to base64, and base64's own "+" and "/" to "-" and "_", which the strict decoder refuses: a segment
# decodes only if it is in the base64url alphabet, with no pattern match over it first.
_FROM_URLSAFE = bytes.maketrans(b"-_+/", b"+/-_")
_PADDING = (b"", b"", b"==", b"=")
_json_decode = json.JSONDecoder().decode


def _b64decode_segment(segment: str) -> bytes:
    # Strict mode refuses anything outside the alphabet (whitespace included), which the lenient decoder would
    # skip; padding is not base64url's, so any "=" is refused too and the right amount is added here.
    if len(segment) % 4 == 1 or "=" in segment:
        raise SignatureInvalid("malformed", "not base64url")
    try:
        return binascii.a2b_base64(
            segment.encode("ascii").translate(_FROM_URLSAFE) + _PADDING[len(segment) % 4], strict_mode=True
        )
    except (binascii.Error, ValueError):  # UnicodeEncodeError (not ASCII) is a ValueError
        raise SignatureInvalid("malformed", "not base64url") from None


def json_segment(segment: str, what: str = "payload") -> dict[str, Any]:
    """Decode one base64url JSON-object segment of a compact JWS (unverified); :class:`SignatureInvalid` if not.

    JOSE segments are UTF-8 (RFC 7515 §2): decoded as such, not sniffed for UTF-16/32 as ``json.loads`` of
    bytes would.
    """
    try:
        value = _json_decode(_b64decode_segment(segment).decode("utf-8"))
    except ValueError:  # UnicodeDecodeError and JSONDecodeError are both ValueErrors
        raise SignatureInvalid("malformed", f"{what} is not JSON") from None
    if not isinstance(value, dict):
        raise SignatureInvalid("malformed", f"{what} is not a JSON object")
    return value


@dataclass(frozen=True, slots=True)
class ParsedJws:
    """A compact JWS split and decoded, not yet verified."""

    header: dict[str, Any]
    payload: dict[str, Any]
    kid: str
    signing_input: bytes
    signature: bytes


_checked_headers: dict[tuple[str, str], tuple[dict[str, Any], str]] = {}
_MAX_CHECKED_HEADERS = 1024


def _check_header(segment: str, typ: str) -> tuple[dict[str, Any], str]:
    """Decode and check a header segment; remember a good one (a peer sends the same few headers every call)."""
    header = json_segment(segment, "header")
    if header.get("alg") != ALGORITHM:
        raise SignatureInvalid("bad-algorithm", f"algorithm {header.get('alg')!r} is not accepted; only EdDSA")
    if header.get("typ") != typ:
        raise SignatureInvalid("wrong-type", f"type {header.get('typ')!r}, expected {typ!r}")
    kid = header.get("kid")
    if not isinstance(kid, str):
        raise SignatureInvalid("no-key-id", "header names no kid")
    if len(_checked_headers) >= _MAX_CHECKED_HEADERS:  # only checked headers are kept, but never unboundedly
        _checked_headers.clear()
    _checked_headers[(segment, typ)] = (header, kid)
    return header, kid


def parse_compact(token: str, *, typ: str) -> ParsedJws:
    """Split and decode a compact JWS; check ``alg`` and ``typ``. Raises :class:`SignatureInvalid`.

    Nothing is verified here: look the ``kid`` up among trusted keys and verify ``signature`` over
    ``signing_input`` (once) before trusting ``payload``.
    """
    if not isinstance(token, str) or len(token) > MAX_COMPACT_CHARS:
        raise SignatureInvalid("malformed", "not a compact JWS")
    parts = token.split(".")
    if len(parts) != 3:
        raise SignatureInvalid("malformed", "not a compact JWS (three dot-separated parts)")
    checked = _checked_headers.get((parts[0], typ))
    if checked is None:
        checked = _check_header(parts[0], typ)
    header, kid = checked
    payload = json_segment(parts[1], "payload")
    header = dict(header)  # the remembered one stays as checked, whatever a caller does with this
    signature = _b64decode_segment(parts[2])
    return ParsedJws(header, payload, kid, f"{parts[0]}.{parts[1]}".encode("ascii"), signature)
