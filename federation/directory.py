"""The federation directory: who is in the federation, with which keys, signed by the operator.

A directory travels as an *envelope* ``{"directory": {...}, "signature": "<detached JWS>"}``; the signature is
an RFC 7515 Appendix F detached JWS (``typ: rcc-directory+jws``) over the directory's JCS form, made by the
operator's key. A node pins the operator's public key(s) (setting ``operator_jwks``) and refuses a directory
that is unsigned, signed by another key, expired, or invalid against ``schemas/directory.schema.json``;
:mod:`federation.store` also refuses one whose serial is lower than the serial it holds.

:class:`Directory` is the parsed, indexed form every request authenticates against: lookups by node id and
by ``kid`` are dictionary hits, and each key's verifier is built once per directory, not once per request.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

import schemas
from federation.errors import DirectoryRejected
from federation.tokens import Verifier, ed25519_verifier
from registry.core.keys import public_key_from_jwk, thumbprint
from registry.core.signing import TYP_DIRECTORY, SignatureInvalid, canonical, sha256_hex, verify_detached

DIRECTORY_SCHEMA = "directory"


@dataclass(frozen=True)
class DirectoryKey:
    """One public key of a member node, as the directory lists it."""

    kid: str
    status: str
    jwk: dict[str, Any]
    verify: Verifier = field(repr=False, compare=False)


@dataclass(frozen=True)
class DirectoryNode:
    """One member node."""

    node_id: str
    name: str
    kind: str
    region_code: str | None
    base_url: str
    keys: Mapping[str, DirectoryKey]
    neighbours: tuple[str, ...]
    valid_from: datetime | None = None
    valid_until: datetime | None = None

    def key(self, kid: str) -> DirectoryKey | None:
        """A key of this node by id, active or retired."""
        return self.keys.get(kid)

    @property
    def active_kids(self) -> list[str]:
        """The ids of keys this node may sign new requests and responses with."""
        return [k.kid for k in self.keys.values() if k.status == "active"]

    def valid_at(self, when: datetime) -> bool:
        """Inside the node's own validity window, where the directory gives one."""
        return (self.valid_from is None or self.valid_from <= when) and (
            self.valid_until is None or when < self.valid_until
        )


@dataclass(frozen=True)
class Directory:
    """A verified directory, indexed for lookups."""

    serial: int
    issued_at: datetime
    expires_at: datetime
    operator: str
    nodes: Mapping[str, DirectoryNode]
    document: dict[str, Any] = field(repr=False)
    signature: str = field(repr=False)
    digest: str = ""

    def node(self, node_id: str, *, at: float | None = None) -> DirectoryNode | None:
        """A member by id; with ``at`` (a Unix time), only if its validity window covers that time."""
        found = self.nodes.get(node_id)
        if found is None or at is None or (found.valid_from is None and found.valid_until is None):
            return found
        return found if found.valid_at(datetime.fromtimestamp(at, tz=self.issued_at.tzinfo)) else None

    def expired(self, now: datetime) -> bool:
        """True once ``expires_at`` has passed: the node then refuses to federate on it."""
        return now >= self.expires_at

    def age(self, now: datetime) -> timedelta:
        """How long since the operator issued it."""
        return now - self.issued_at

    def envelope(self) -> dict[str, Any]:
        """The signed form, as stored, served and loaded."""
        return {"directory": self.document, "signature": self.signature}


def parse_time(text: str) -> datetime:
    """An RFC 3339 timestamp (``Z`` or offset) as an aware datetime."""
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def format_time(when: datetime) -> str:
    """An aware datetime as RFC 3339 with ``Z``, whole seconds (how directories write times)."""
    return when.replace(microsecond=0).isoformat().replace("+00:00", "Z")


def load_pinned_keys(value: str | None) -> dict[str, Ed25519PublicKey]:
    """The pinned operator keys from setting ``operator_jwks``: inline JWK/JWKS JSON, or a file holding one.

    Every key's ``kid`` is its RFC 7638 thumbprint; a ``kid`` given in the file must agree with it, so a
    typo in a pin fails loudly here rather than refusing every directory later.
    """
    if not value:
        return {}
    text = value.strip()
    if not text.startswith("{"):
        try:
            text = Path(text).read_text(encoding="utf-8")
        except OSError as exc:
            raise ValueError(f"cannot read operator_jwks file {value}: {exc.strerror}") from None
    try:
        document = json.loads(text)
    except ValueError:
        raise ValueError("operator_jwks is not JSON (a JWK or a JWKS)") from None
    jwks = document.get("keys") if isinstance(document, dict) and "keys" in document else [document]
    if not isinstance(jwks, list) or not jwks:
        raise ValueError("operator_jwks holds no keys")
    pinned: dict[str, Ed25519PublicKey] = {}
    for jwk in jwks:
        if not isinstance(jwk, dict):
            raise ValueError("operator_jwks: every key must be a JWK object")
        public = public_key_from_jwk(jwk)
        kid = thumbprint(jwk)
        if "kid" in jwk and jwk["kid"] != kid:
            raise ValueError(f"operator_jwks: kid {jwk['kid']} is not the key's thumbprint {kid}")
        pinned[kid] = public
    return pinned


def verify_envelope(
    envelope: Any, pinned: Mapping[str, Ed25519PublicKey], *, now: datetime, check_expiry: bool = True
) -> Directory:
    """Check a signed directory against the pinned operator keys and the schema; return it indexed.

    ``check_expiry=False`` is for re-reading the directory already held, which readiness must still be able
    to report (serial, age) after it expires.

    Raises :class:`DirectoryRejected` with ``reason`` one of ``malformed``, ``unsigned``, ``wrong-signer``,
    ``bad-signature``, ``invalid``, ``expired``, ``not-yet-issued``, ``duplicate-node``, ``bad-key``.
    Serial order is the holder's business (:class:`federation.store.DirectoryStore`).
    """
    if not isinstance(envelope, dict) or not isinstance(envelope.get("directory"), dict):
        raise DirectoryRejected("malformed", 'not a signed directory: expected {"directory": {...}, "signature": …}')
    document: dict[str, Any] = envelope["directory"]
    signature = envelope.get("signature")
    if not isinstance(signature, str) or not signature:
        raise DirectoryRejected("unsigned", "the directory carries no signature")
    if not pinned:
        raise DirectoryRejected("wrong-signer", "no operator key is pinned (setting operator_jwks)")
    try:
        verify_detached(document, signature, typ=TYP_DIRECTORY, resolve=pinned.get)
    except SignatureInvalid as exc:
        reason = "wrong-signer" if exc.reason == "unknown-key" else "bad-signature"
        raise DirectoryRejected(reason, f"directory signature refused: {exc.detail}") from None
    errors = schemas.validate(DIRECTORY_SCHEMA, document)
    if errors:
        raise DirectoryRejected(
            "invalid",
            "the directory does not match directory.schema.json",
            errors=[{"path": e.path, "message": e.message} for e in errors],
        )
    issued_at, expires_at = parse_time(document["issued_at"]), parse_time(document["expires_at"])
    if check_expiry and now >= expires_at:
        raise DirectoryRejected("expired", f"the directory expired at {document['expires_at']}")
    if issued_at > now + timedelta(minutes=5):
        raise DirectoryRejected("not-yet-issued", f"the directory is issued in the future ({document['issued_at']})")
    nodes: dict[str, DirectoryNode] = {}
    kids: set[str] = set()
    for entry in document["nodes"]:
        if entry["node_id"] in nodes:
            raise DirectoryRejected("duplicate-node", f"node {entry['node_id']} is listed twice")
        keys: dict[str, DirectoryKey] = {}
        for jwk in entry["keys"]:
            kid = thumbprint(jwk)
            if jwk["kid"] != kid or kid in kids:
                raise DirectoryRejected("bad-key", f"key {jwk['kid']} of {entry['node_id']} is not a unique thumbprint")
            kids.add(kid)
            keys[kid] = DirectoryKey(kid, jwk["status"], jwk, ed25519_verifier(public_key_from_jwk(jwk)))
        nodes[entry["node_id"]] = DirectoryNode(
            node_id=entry["node_id"],
            name=entry["name"],
            kind=entry["kind"],
            region_code=entry["region_code"],
            base_url=entry["base_url"],
            keys=keys,
            neighbours=tuple(entry["neighbours"]),
            valid_from=parse_time(entry["valid_from"]) if "valid_from" in entry else None,
            valid_until=parse_time(entry["valid_until"]) if "valid_until" in entry else None,
        )
    return Directory(
        serial=document["serial"],
        issued_at=issued_at,
        expires_at=expires_at,
        operator=document["operator"],
        nodes=nodes,
        document=document,
        signature=signature,
        digest=sha256_hex(canonical(document)),
    )
