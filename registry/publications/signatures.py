"""Signatures on publication versions: what is signed, signing it, and checking a stored version.

Every version is signed by the node that holds it (detached JWS, typ ``rcc-publication+jws``) over the RFC 8785
canonical JSON of its *statement*: node, id, kind, version, state, time and schema together with the document,
so a signed version can be neither edited nor relabelled as another id, kind or version. Checking a stored
version also covers what the database keeps beside it (digest, canonical text, indexed dates), so an edit to
any stored value is caught, and names itself with a stable reason.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from registry.core.keys import KeyRing, NodeKey
from registry.core.node import Node
from registry.core.signing import (
    TYP_PUBLICATION,
    SignatureInvalid,
    canonical,
    sha256_hex,
    sign_detached,
    verify_detached,
)
from registry.publications.kinds import effective_dates
from registry.publications.models import PublicationVersion, Verification

Keys = Callable[[str, str], Ed25519PublicKey | None]
"""(node_id, kid) → that node's public key, or None if the key is not trusted for that node."""


@dataclass(frozen=True)
class Signer:
    """The node publishing: its id, its region (recorded beside its documents) and its active key."""

    node_id: str
    region_code: str | None
    key: NodeKey


def own_keys(node_id: str, ring: KeyRing) -> Keys:
    """Key lookup for this node's own documents (every key of its ring, retired ones included)."""

    def lookup(signer: str, kid: str) -> Ed25519PublicKey | None:
        key = ring.get(kid) if signer == node_id else None
        return key.public if key is not None else None

    return lookup


def signer_for(node: Node) -> Signer:
    """The running node as a signer: its id, region and active key."""
    return Signer(node.node_id, node.settings.region_code, node.keys.active)


PEER_KEYS_EXTENSION = "publications.peer_keys"
"""``node.extensions`` slot where the federation layer puts its directory as a :data:`Keys` lookup for peers.

The register may not import the federation, so the federation hands its lookup in (``federation.publications``).
"""


def keys_for(node: Node) -> Keys:
    """The keys this node trusts for publications it holds: its own ring, then peers' from the directory.

    The peer lookup is read from ``node.extensions`` on every call, so a new directory — a node removed, a key
    retired — applies at once; without one (a node outside any federation) only its own documents verify.
    """
    own = own_keys(node.node_id, node.keys)

    def lookup(signer: str, kid: str) -> Ed25519PublicKey | None:
        if signer == node.node_id:
            return own(signer, kid)
        peers: Keys | None = node.extensions.get(PEER_KEYS_EXTENSION)
        return peers(signer, kid) if peers is not None else None

    return lookup


def iso_time(moment: datetime) -> str:
    """A UTC timestamp as signed and served: RFC 3339, milliseconds, ``Z``."""
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def statement(version: PublicationVersion, document: Any) -> dict[str, Any]:
    """What the node signs for a version: the document bound to its node, id, kind, number, state and time."""
    signed: dict[str, Any] = {
        "node_id": version.node_id,
        "id": version.publication_id,
        "kind": version.kind,
        "version": version.version,
        "state": version.state,
        "published_at": iso_time(version.published_at),
        "schema": version.schema_id,
        "document": document,
    }
    if version.reason is not None:
        signed["reason"] = version.reason
    return signed


def sign(version: PublicationVersion, document: Any, key: NodeKey) -> str:
    """The detached JWS over a version's statement, made with ``key`` (the node's active key)."""
    return sign_detached(statement(version, document), key, typ=TYP_PUBLICATION)


def verify_version(version: PublicationVersion, *, keys: Keys) -> Verification:
    """Check a stored version against its signature: digest, canonical form, indexed dates, then the JWS.

    Any edit to the stored row — document, digest, dates, id, kind, version, state or signature — fails here
    with a stable ``reason``. A version that verified once is remembered by a digest of everything checked
    (see :class:`_Verified`), so the fee-cap check and the comparisons pay for each signature once per process.
    """
    text = version.document.encode("utf-8")
    digest = sha256_hex(text)
    if digest != version.sha256:
        return Verification(ok=False, reason="digest-mismatch", kid=version.kid)
    remembered = _VERIFIED.get(version, digest, keys)
    if remembered is not None:
        return Verification(ok=True, kid=remembered)
    try:
        document = json.loads(text)
        if canonical(document) != text:
            return Verification(ok=False, reason="not-canonical", kid=version.kid)
        if (version.effective_from, version.effective_to) != effective_dates(document):
            return Verification(ok=False, reason="dates-mismatch", kid=version.kid)
    except (ValueError, KeyError, TypeError):
        return Verification(ok=False, reason="unreadable", kid=version.kid)
    try:
        kid = verify_detached(
            statement(version, document),
            version.signature,
            typ=TYP_PUBLICATION,
            resolve=lambda kid: keys(version.node_id, kid),
        )
    except SignatureInvalid as exc:
        return Verification(ok=False, reason=exc.reason, kid=version.kid)
    _VERIFIED.put(version, digest, kid, keys)
    return Verification(ok=True, kid=kid)


class _Verified:
    """Versions already verified, by a digest of every stored value the check covered (never by row identity).

    An edit to any of them gives a new digest and a full check; a key no longer trusted for the node, or a
    different key under the same kid, also forces one. Only successes are kept, at most ``limit`` of them.
    """

    def __init__(self, limit: int = 4096) -> None:
        self.limit = limit
        self._entries: dict[str, tuple[str, bytes]] = {}
        self._lock = threading.Lock()

    @staticmethod
    def _key(version: PublicationVersion, digest: str) -> str:
        values = [
            version.node_id,
            version.publication_id,
            version.kind,
            version.version,
            version.state,
            iso_time(version.published_at),
            version.schema_id,
            version.reason,
            version.effective_from.isoformat(),
            version.effective_to.isoformat() if version.effective_to else None,
            digest,
            version.signature,
        ]
        return sha256_hex(json.dumps(values).encode("utf-8"))

    @staticmethod
    def _public(keys: Keys, node_id: str, kid: str) -> bytes | None:
        public = keys(node_id, kid)
        return public.public_bytes(Encoding.Raw, PublicFormat.Raw) if public is not None else None

    def get(self, version: PublicationVersion, digest: str, keys: Keys) -> str | None:
        entry = self._entries.get(self._key(version, digest))
        if entry is None:
            return None
        kid, raw = entry
        return kid if self._public(keys, version.node_id, kid) == raw else None

    def put(self, version: PublicationVersion, digest: str, kid: str, keys: Keys) -> None:
        raw = self._public(keys, version.node_id, kid)
        if raw is None:
            return
        with self._lock:
            if len(self._entries) >= self.limit:
                self._entries.clear()
            self._entries[self._key(version, digest)] = (kid, raw)


# A memo of pure results (like the schema validators' cache), not node state: safe to share between nodes.
_VERIFIED = _Verified()
