"""Party signatures over agreement documents and lifecycle events: make them, check them, re-check them.

A signature is a detached JWS (``registry.core.signing``) over the JCS form of the document (typ
``rcc-agreement+jws``) or of the event (typ ``rcc-agreement-event+jws``), made with the signing party's node
key. Checking one on receipt asks three things, each with its own refusal reason: is the signer a party
(``not-a-party``), is ``kid`` an *active* key of that node (``unknown-key``, ``retired-key``), and does the
signature match the exact bytes (``bad-signature``)? The public key used is recorded beside the stored
signature, so the agreement can be re-verified later — cheaply, once per content hash — even by a node that
has no directory yet.
"""

from __future__ import annotations

import json
from collections.abc import Collection
from dataclasses import dataclass
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from agreements.keys import KeyResolver, PartyKey
from registry.core.keys import NodeKey, public_jwk, public_key_from_jwk, thumbprint
from registry.core.signing import TYP_AGREEMENT, TYP_AGREEMENT_EVENT, SignatureInvalid, sign_detached, verify_detached

DOCUMENT_TYP = TYP_AGREEMENT
EVENT_TYP = TYP_AGREEMENT_EVENT


@dataclass(frozen=True)
class CheckedSignature:
    """A signature that passed :func:`check`: who signed, with which key, and that key's public JWK."""

    node_id: str
    kid: str
    jwk: dict[str, str]
    key_status: str


def sign(document: dict[str, Any], key: NodeKey, *, typ: str) -> str:
    """Detached JWS over ``JCS(document)`` with this node's active key."""
    return sign_detached(document, key, typ=typ)


def check(
    document: dict[str, Any],
    jws: str,
    *,
    node_id: str,
    typ: str,
    resolver: KeyResolver,
    parties: Collection[str] | None = None,
    require_active: bool = True,
) -> CheckedSignature:
    """Verify ``jws`` as ``node_id``'s signature over ``document``; raise :class:`SignatureInvalid` with a reason.

    ``require_active`` is for receipt: a key the node has retired may not sign anything new. Verifying a
    stored signature again (``require_active=False``) still accepts retired keys, as JWKS publication intends.
    """
    if parties is not None and node_id not in parties:
        raise SignatureInvalid("not-a-party", f"{node_id} is not a party to this agreement")
    found: list[PartyKey] = []

    def resolve(kid: str) -> Ed25519PublicKey | None:
        key = resolver(node_id, kid)
        if key is None:
            return None
        if require_active and key.status != "active":
            raise SignatureInvalid("retired-key", f"key {kid} of {node_id} is retired and may not sign")
        found.append(key)
        return key.public

    if not isinstance(jws, str):
        raise SignatureInvalid("malformed", "a signature must be a string")
    kid = verify_detached(document, jws, typ=typ, resolve=resolve)
    return CheckedSignature(node_id, kid, found[0].jwk, found[0].status)


def check_recorded(document: dict[str, Any], jws: str, *, kid: str, jwk_json: str, typ: str) -> str | None:
    """Re-verify a stored signature with the public key recorded when it was received.

    Returns ``None`` when it verifies, otherwise the reason. The recorded JWK must hash to ``kid``, so a row
    cannot be re-pointed at another key without the mismatch showing.
    """
    try:
        jwk = json.loads(jwk_json)
        public = public_key_from_jwk(jwk)
        if thumbprint(jwk) != kid:
            return "key-mismatch"
        verify_detached(document, jws, typ=typ, resolve=lambda k: public if k == kid else None)
    except SignatureInvalid as exc:
        return exc.reason
    except (ValueError, KeyError, TypeError):
        return "malformed"
    return None


def jwk_json(jwk: dict[str, str]) -> str:
    """The recorded form of a public key: its bare JWK members as compact sorted JSON."""
    return json.dumps({k: jwk[k] for k in ("crv", "kty", "x")}, sort_keys=True, separators=(",", ":"))


def own_jwk(key: NodeKey) -> dict[str, str]:
    """The bare public JWK of one of this node's keys."""
    return public_jwk(key.public)
