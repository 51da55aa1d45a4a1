"""Federation helpers for tests: signed directories for a set of test nodes, hand-made request tokens.

Tokens here are built with `cryptography` directly (not the product's token module), so a test can make
exactly the malformed, expired or mis-addressed token it needs, and so a happy-path test is an independent
check that the product accepts a correctly made token.
"""

from __future__ import annotations

import hashlib
import json
import secrets
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from registry.core.keys import KeyRing
from registry.core.signing import TYP_DIRECTORY, sign_detached
from tests.support.jose import b64e, thumbprint
from tests.support.nodes import NodeSpec

REQUEST_TYP = "rcc-request+jwt"
RESPONSE_TYP = "rcc-response+jws"


@dataclass
class PeerIdentity:
    """A node identity held by the test: an active key and optionally retired ones (private halves kept)."""

    node_id: str
    base_url: str = "http://127.0.0.1:9"
    kind: str = "regional"
    region_code: str | None = "E12000008"
    active: Ed25519PrivateKey = field(default_factory=Ed25519PrivateKey.generate)
    retired: list[Ed25519PrivateKey] = field(default_factory=list)

    def jwk(self, key: Ed25519PrivateKey, status: str) -> dict[str, str]:
        return jwk_of(key, status)

    @property
    def kid(self) -> str:
        return jwk_of(self.active, "active")["kid"]

    def entry(self) -> dict[str, Any]:
        keys = [self.jwk(self.active, "active"), *(self.jwk(k, "retired") for k in self.retired)]
        return entry(self.node_id, self.base_url, keys, kind=self.kind, region_code=self.region_code)


def jwk_of(key: Ed25519PrivateKey, status: str = "active") -> dict[str, str]:
    raw = key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    jwk = {"kty": "OKP", "crv": "Ed25519", "x": b64e(raw)}
    return {**jwk, "kid": thumbprint(jwk), "use": "sig", "alg": "EdDSA", "status": status}


def entry(
    node_id: str,
    base_url: str,
    keys: list[dict[str, Any]],
    *,
    kind: str = "regional",
    region_code: str | None = "E12000008",
    neighbours: list[str] | None = None,
) -> dict[str, Any]:
    """One directory entry."""
    return {
        "node_id": node_id,
        "name": node_id,
        "kind": kind,
        "region_code": region_code if kind == "regional" else None,
        "base_url": base_url,
        "keys": keys,
        "neighbours": neighbours or [],
    }


def ring_entry(node_id: str, base_url: str, ring: KeyRing, **kwargs: Any) -> dict[str, Any]:
    """A directory entry for a node whose key ring the test holds."""
    return entry(node_id, base_url, ring.jwks()["keys"], **kwargs)


def spec_entry(spec: NodeSpec) -> dict[str, Any]:
    """A directory entry for an ``rcc-node init``-ed node, read from its key ring on disk."""
    ring = KeyRing.load(spec.data_dir / "keys")
    return ring_entry(spec.node_id, spec.base_url, ring, kind=spec.kind, region_code=spec.region_code)


def iso(when: datetime) -> str:
    return when.replace(microsecond=0).isoformat().replace("+00:00", "Z")


def directory(
    entries: list[dict[str, Any]],
    *,
    serial: int = 1,
    operator: str = "rcc-national",
    issued: datetime | None = None,
    lifetime: timedelta = timedelta(days=7),
) -> dict[str, Any]:
    """An unsigned directory document."""
    issued = issued or datetime.now(UTC) - timedelta(seconds=5)
    return {
        "serial": serial,
        "issued_at": iso(issued),
        "expires_at": iso(issued + lifetime),
        "operator": operator,
        "nodes": entries,
    }


def sign(document: dict[str, Any], operator: KeyRing) -> dict[str, Any]:
    """The signed envelope, as the operator would publish it."""
    return {"directory": document, "signature": sign_detached(document, operator.active, typ=TYP_DIRECTORY)}


def write_json(path: Path, value: Any) -> Path:
    path.write_text(json.dumps(value, indent=2), encoding="utf-8")
    return path


def operator_jwks(operator: KeyRing) -> str:
    """The operator's public keys as inline JSON (setting ``operator_jwks``)."""
    return json.dumps(operator.jwks())


def configure(spec: NodeSpec, **values: Any) -> None:
    """Append federation settings to a node's node.toml (strings, numbers, booleans, paths)."""
    lines = []
    for key, value in values.items():
        if isinstance(value, bool):
            rendered = "true" if value else "false"
        elif isinstance(value, int | float):
            rendered = repr(value)
        else:
            rendered = json.dumps(str(value))
        lines.append(f"{key} = {rendered}\n")
    with (spec.data_dir / "node.toml").open("a", encoding="utf-8") as fh:
        fh.writelines(lines)


def token(
    key: Ed25519PrivateKey,
    *,
    iss: str,
    aud: str,
    url: str,
    method: str = "GET",
    body: bytes = b"",
    purpose: str = "placement-search",
    agreement: str | None = None,
    now: float | None = None,
    lifetime: int = 60,
    typ: str = REQUEST_TYP,
    alg: str = "EdDSA",
    **overrides: Any,
) -> tuple[str, str]:
    """A request JWT made with `cryptography` directly; returns (token, jti). ``overrides`` replace claims."""
    issued = int(now if now is not None else time.time())
    jti = secrets.token_urlsafe(16)
    claims: dict[str, Any] = {
        "iss": iss,
        "aud": aud,
        "iat": issued,
        "exp": issued + lifetime,
        "jti": jti,
        "purpose": purpose,
        "agreement": agreement,
        "htm": method,
        "htu": url,
        "bdh": b64e(hashlib.sha256(body).digest()),
    }
    claims.update(overrides)
    header = {"alg": alg, "typ": typ, "kid": jwk_of(key)["kid"]}
    signing_input = f"{b64e(json.dumps(header).encode())}.{b64e(json.dumps(claims).encode())}"
    return f"{signing_input}.{b64e(key.sign(signing_input.encode()))}", str(claims["jti"])


def bearer(value: str) -> dict[str, str]:
    return {"authorization": f"Bearer {value}"}
