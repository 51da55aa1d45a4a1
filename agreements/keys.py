"""Whose key is this? The small protocol agreement signatures are verified through.

A party signs with its node key, so checking a signature needs ``(node_id, kid) → public key and status``.
:class:`KeyResolver` is that question and nothing more: the federation directory answers it for peers (phase 2
plugs it in through ``node.extensions[KEY_RESOLVER_EXTENSION]``), :class:`LocalKeys` answers it for this node's
own key ring, and :class:`StaticKeys` for a directory file or a JWKS per node (tests, offline verification).

Status matters at two moments. When a signature or event is *received*, its key must be ``active`` for that
node: a retired key must never sign anything new. When a stored agreement is *re-verified* later, a retired
key still verifies what it signed while it was active, exactly as the JWKS keeps retired keys published.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Protocol

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

import schemas
from agreements.documents import event_time
from registry.core.db import utcnow
from registry.core.keys import KeyRing, public_jwk, public_key_from_jwk, thumbprint
from registry.core.signing import TYP_DIRECTORY, SignatureInvalid, verify_detached

KEY_RESOLVER_EXTENSION = "agreements.key_resolver"
"""``node.extensions`` slot where the federation layer puts its directory (anything satisfying :class:`KeyResolver`)."""

KeyStatus = Literal["active", "retired"]


@dataclass(frozen=True)
class PartyKey:
    """A node's public key as a resolver knows it, with its status there."""

    public: Ed25519PublicKey
    status: KeyStatus

    @property
    def jwk(self) -> dict[str, str]:
        """The bare public JWK (kty, crv, x), what is recorded beside a stored signature."""
        return public_jwk(self.public)


class KeyResolver(Protocol):
    """Answers "is ``kid`` a key of node ``node_id``, and is it still active?"; ``None`` when it is not known."""

    def __call__(self, node_id: str, kid: str) -> PartyKey | None: ...


class LocalKeys:
    """This node's own key ring, for its own signatures (retired keys resolve as ``retired``)."""

    def __init__(self, node_id: str, ring: KeyRing) -> None:
        self.node_id = node_id
        self.ring = ring

    def __call__(self, node_id: str, kid: str) -> PartyKey | None:
        """The ring's key ``kid`` if ``node_id`` is this node."""
        if node_id != self.node_id:
            return None
        key = self.ring.get(kid)
        return PartyKey(key.public, key.status) if key is not None else None


class StaticKeys:
    """Keys held in memory: node_id → {kid: PartyKey}. Built from JWKS documents or a directory file."""

    def __init__(self, keys: Mapping[str, Mapping[str, PartyKey]]) -> None:
        self._keys = {node: dict(by_kid) for node, by_kid in keys.items()}

    def __call__(self, node_id: str, kid: str) -> PartyKey | None:
        """The key if this resolver holds it for that node."""
        return self._keys.get(node_id, {}).get(kid)

    @property
    def node_ids(self) -> list[str]:
        """Nodes this resolver knows, sorted."""
        return sorted(self._keys)

    @classmethod
    def from_jwks(cls, jwks_by_node: Mapping[str, Mapping[str, Any]]) -> StaticKeys:
        """From ``{node_id: {"keys": [jwk, …]}}``; a JWK without ``status`` counts as active.

        Every key's ``kid`` must be its RFC 7638 thumbprint, so a file cannot pin a key under another key's id.
        """
        keys: dict[str, dict[str, PartyKey]] = {}
        for node_id, jwks in jwks_by_node.items():
            keys[node_id] = {}
            for jwk in _jwk_list(jwks, node_id):
                keys[node_id][jwk["kid"]] = _party_key(jwk, node_id)
        return cls(keys)

    @classmethod
    def from_ring(cls, node_id: str, ring: KeyRing) -> StaticKeys:
        """From a key ring (tests build one resolver for several in-process nodes this way)."""
        return cls.from_jwks({node_id: ring.jwks()})

    @classmethod
    def from_directory(cls, directory: Mapping[str, Any]) -> StaticKeys:
        """From a directory document (``schemas/directory.schema.json``), already trusted by the caller."""
        return cls.from_jwks({node["node_id"]: {"keys": node["keys"]} for node in directory["nodes"]})


class ChainedKeys:
    """Ask each resolver in turn; the first that knows the key answers."""

    def __init__(self, resolvers: Iterable[KeyResolver]) -> None:
        self.resolvers = list(resolvers)

    def __call__(self, node_id: str, kid: str) -> PartyKey | None:
        """The first answer any resolver gives."""
        for resolver in self.resolvers:
            found = resolver(node_id, kid)
            if found is not None:
                return found
        return None


class KeyFileError(ValueError):
    """A directory or key file that cannot be used to verify anything; the message says why."""


@dataclass(frozen=True)
class LoadedKeys:
    """Keys from a file, and what was (or could not be) established about the file itself."""

    resolver: StaticKeys
    source: Literal["directory", "jwks"]
    notes: tuple[str, ...]


def load_key_file(path: Path) -> LoadedKeys:
    """Read a signed directory (``{"directory": {…}, "signature": "…"}``) or a plain ``{node_id: JWKS}`` mapping.

    A signed directory must validate against its schema and its detached signature must verify with one of
    the *operator's* keys listed in it. That proves the file is intact and self-consistent, not that the
    operator is who you think: pin the operator key through the federation tooling for that. Expiry is
    reported in ``notes`` rather than refused, because an old agreement is verified against the directory
    of its day.
    """
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise KeyFileError(f"cannot read {path}: {exc}") from None
    if not isinstance(data, dict):
        raise KeyFileError(f"{path}: expected a JSON object")
    if "directory" in data and "signature" in data:
        return _from_signed_directory(data)
    try:
        return LoadedKeys(StaticKeys.from_jwks(data), "jwks", ("plain JWKS mapping: keys taken as given",))
    except (KeyError, TypeError, ValueError) as exc:
        raise KeyFileError(f"{path}: neither a signed directory nor a {{node_id: JWKS}} mapping ({exc})") from None


def _from_signed_directory(data: dict[str, Any]) -> LoadedKeys:
    directory = data["directory"]
    problems = schemas.validate("directory", directory)
    if problems:
        first = problems[0]
        raise KeyFileError(f"directory invalid at {first.path or '/'}: {first.message}")
    resolver = StaticKeys.from_directory(directory)
    operator = directory["operator"]

    def operator_key(kid: str) -> Ed25519PublicKey | None:
        found = resolver(operator, kid)
        return found.public if found is not None else None

    try:
        verify_detached(directory, data["signature"], typ=TYP_DIRECTORY, resolve=operator_key)
    except SignatureInvalid as exc:
        raise KeyFileError(f"directory signature does not verify with the operator's key: {exc.reason}") from None
    notes = [f"directory serial {directory['serial']} signed by operator {operator}"]
    if event_time(directory["expires_at"]) < utcnow():
        notes.append(f"directory expired at {directory['expires_at']}")
    return LoadedKeys(resolver, "directory", tuple(notes))


def _jwk_list(jwks: Any, node_id: str) -> list[dict[str, Any]]:
    if not isinstance(jwks, Mapping) or not isinstance(jwks.get("keys"), list):
        raise ValueError(f"{node_id}: expected a JWKS object with a 'keys' list")
    return [dict(jwk) for jwk in jwks["keys"]]


def _party_key(jwk: dict[str, Any], node_id: str) -> PartyKey:
    public = public_key_from_jwk(jwk)
    if jwk.get("kid") != thumbprint(jwk):
        raise ValueError(f"{node_id}: key id {jwk.get('kid')!r} is not the key's RFC 7638 thumbprint")
    status = jwk.get("status", "active")
    if status not in ("active", "retired"):
        raise ValueError(f"{node_id}: key {jwk['kid']} has unknown status {status!r}")
    return PartyKey(public, status)
