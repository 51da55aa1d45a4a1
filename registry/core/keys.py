"""The node's Ed25519 key ring: the newest active key signs, every key (active or retired) verifies.

Private keys live as PEM files with mode 0600 in the key directory, one per key, named by ``kid``
(the RFC 7638 JWK thumbprint). ``keyring.json`` beside them records each key's status and public half,
so retired keys stay published in the JWKS — old signatures keep verifying — while their private
halves are deleted at retirement: nothing can sign with a retired key again.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Literal

import rfc8785
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from registry.core.db import utcnow

KeyStatus = Literal["active", "retired"]
MANIFEST = "keyring.json"


class KeyRingError(Exception):
    """The key directory is missing, unreadable or inconsistent."""


def b64url(data: bytes) -> str:
    """Base64url without padding, as JOSE uses everywhere."""
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def b64url_decode(text: str) -> bytes:
    """Inverse of :func:`b64url`; raises ``ValueError`` on bad input."""
    try:
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (ValueError, TypeError) as exc:
        raise ValueError("invalid base64url") from exc


def public_jwk(public: Ed25519PublicKey) -> dict[str, str]:
    """The bare OKP JWK members of a public key (no kid)."""
    raw = public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return {"kty": "OKP", "crv": "Ed25519", "x": b64url(raw)}


def thumbprint(jwk: dict[str, Any]) -> str:
    """RFC 7638 JWK thumbprint (SHA-256) of an OKP key: the ``kid`` of every key in the federation."""
    required = {"crv": jwk["crv"], "kty": jwk["kty"], "x": jwk["x"]}
    return b64url(hashlib.sha256(rfc8785.dumps(required)).digest())


def public_key_from_jwk(jwk: dict[str, Any]) -> Ed25519PublicKey:
    """Parse an OKP/Ed25519 JWK; ``ValueError`` for anything else."""
    if jwk.get("kty") != "OKP" or jwk.get("crv") != "Ed25519" or not isinstance(jwk.get("x"), str):
        raise ValueError("not an OKP Ed25519 JWK")
    raw = b64url_decode(jwk["x"])
    if len(raw) != 32:
        raise ValueError("Ed25519 public key must be 32 bytes")
    return Ed25519PublicKey.from_public_bytes(raw)


@dataclass(frozen=True)
class NodeKey:
    """One key of the ring. ``private`` is None for retired keys."""

    kid: str
    public: Ed25519PublicKey
    private: Ed25519PrivateKey | None
    status: KeyStatus
    created_at: datetime

    def jwk(self) -> dict[str, str]:
        """The public JWK as served in the JWKS."""
        return {
            **public_jwk(self.public),
            "kid": self.kid,
            "use": "sig",
            "alg": "EdDSA",
            "status": self.status,
        }


class KeyRing:
    """Ordered keys, newest first; exactly one active key signs."""

    def __init__(self, keys: list[NodeKey]) -> None:
        active = [k for k in keys if k.status == "active" and k.private is not None]
        if len(active) != 1:
            raise KeyRingError(f"a key ring needs exactly one active signing key, found {len(active)}")
        self.keys = sorted(keys, key=lambda k: k.created_at, reverse=True)
        self._by_kid = {k.kid: k for k in keys}
        self.active = active[0]

    def get(self, kid: str) -> NodeKey | None:
        """A key by id, active or retired."""
        return self._by_kid.get(kid)

    def jwks(self) -> dict[str, list[dict[str, str]]]:
        """The JWKS document: every key, retired ones marked, so old signatures still verify."""
        return {"keys": [k.jwk() for k in self.keys]}

    @classmethod
    def generate(cls) -> KeyRing:
        """A fresh in-memory ring (tests, throw-away nodes)."""
        return cls([_new_key()])

    @classmethod
    def create(cls, key_dir: Path) -> KeyRing:
        """Create a ring on disk; refuses to touch a directory that already holds one."""
        if (key_dir / MANIFEST).exists():
            raise KeyRingError(f"{key_dir} already holds a key ring; refusing to overwrite it")
        key_dir.mkdir(parents=True, exist_ok=True)
        os.chmod(key_dir, 0o700)
        ring = cls([_new_key()])
        ring._save(key_dir)
        return ring

    @classmethod
    def load(cls, key_dir: Path) -> KeyRing:
        """Read the ring; the active key's PEM must be present and private to its owner."""
        manifest_path = key_dir / MANIFEST
        try:
            manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise KeyRingError(f"no key ring in {key_dir} (run 'rcc-node init')") from None
        except (OSError, ValueError) as exc:
            raise KeyRingError(f"unreadable key ring {manifest_path}: {exc}") from None
        keys: list[NodeKey] = []
        for item in manifest["keys"]:
            private = None
            if item["status"] == "active":
                pem_path = key_dir / f"{item['kid']}.pem"
                if pem_path.stat().st_mode & 0o077:
                    raise KeyRingError(f"{pem_path} is readable by others; chmod 600 it")
                loaded = serialization.load_pem_private_key(pem_path.read_bytes(), password=None)
                if not isinstance(loaded, Ed25519PrivateKey):
                    raise KeyRingError(f"{pem_path} is not an Ed25519 key")
                private = loaded
            public = public_key_from_jwk(item["jwk"])
            if thumbprint(item["jwk"]) != item["kid"]:
                raise KeyRingError(f"key {item['kid']} does not match its thumbprint")
            keys.append(
                NodeKey(item["kid"], public, private, item["status"], datetime.fromisoformat(item["created_at"]))
            )
        return cls(keys)

    def rotate(self, key_dir: Path) -> KeyRing:
        """Make a new active key, retire the old one (public half kept, private half deleted)."""
        new = _new_key()
        retired = [
            NodeKey(k.kid, k.public, None, "retired", k.created_at) if k.status == "active" else k for k in self.keys
        ]
        ring = KeyRing([new, *retired])
        ring._save(key_dir)
        for key in self.keys:
            if key.status == "active":
                (key_dir / f"{key.kid}.pem").unlink(missing_ok=True)
        return ring

    def _save(self, key_dir: Path) -> None:
        for key in self.keys:
            if key.private is None:
                continue
            pem = key.private.private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
            )
            path = key_dir / f"{key.kid}.pem"
            if not path.exists():
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
                with os.fdopen(fd, "wb") as fh:
                    fh.write(pem)
        manifest = {
            "keys": [
                {
                    "kid": k.kid,
                    "status": k.status,
                    "created_at": k.created_at.isoformat(),
                    "jwk": public_jwk(k.public),
                }
                for k in self.keys
            ]
        }
        tmp = key_dir / f"{MANIFEST}.tmp"
        tmp.write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
        os.replace(tmp, key_dir / MANIFEST)


def _new_key() -> NodeKey:
    private = Ed25519PrivateKey.generate()
    public = private.public_key()
    return NodeKey(thumbprint(public_jwk(public)), public, private, "active", utcnow())
