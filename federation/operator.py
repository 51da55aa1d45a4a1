"""Operator tooling: build a directory from a list of nodes, sign it with the operator's key.

``rcc-node directory build`` reads a TOML or JSON list of members. A member given by ``base_url`` is fetched:
its signed ``/.well-known/rcc-node`` descriptor must verify under its own published keys, name the same base
URL (and the ``node_id`` / ``kid`` the operator expects, where given — the out-of-band check that stops a
man in the middle at build time). A member given in full (``node_id``, ``name``, ``kind``, ``region_code``,
``base_url``, ``keys``) is taken as the operator vouches for it. Neighbours come from the shipped region
adjacency. ``rcc-node directory sign`` then signs the document with the operator node's active key.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import datetime, timedelta
from typing import Any

import schemas
from federation.directory import DIRECTORY_SCHEMA, format_time
from federation.errors import DirectoryRejected
from registry.core.domain import neighbours
from registry.core.keys import KeyRing, public_key_from_jwk, thumbprint
from registry.core.signing import TYP_DESCRIPTOR, TYP_DIRECTORY, SignatureInvalid, sign_detached, verify_detached

DEFAULT_VALID_DAYS = 7.0
DescriptorFetcher = Callable[[str], Any]
"""``fetch(base_url)`` → the parsed JSON of ``{base_url}/.well-known/rcc-node``."""


def node_entry_from_descriptor(
    signed: Any, *, base_url: str, node_id: str | None = None, kid: str | None = None
) -> dict[str, Any]:
    """Check a node's signed descriptor and turn it into a directory entry; :class:`DirectoryRejected` if not."""
    if not isinstance(signed, dict) or not isinstance(signed.get("descriptor"), dict):
        raise DirectoryRejected("bad-descriptor", f"{base_url} did not serve a signed node descriptor")
    descriptor = signed["descriptor"]
    jwks = descriptor.get("jwks", {}).get("keys", [])
    keys: dict[str, dict[str, Any]] = {}
    for jwk in jwks:
        if not isinstance(jwk, dict) or jwk.get("kid") != thumbprint(jwk):
            raise DirectoryRejected("bad-descriptor", f"{base_url}: a key's kid is not its thumbprint")
        keys[jwk["kid"]] = jwk

    def resolve(key_id: str) -> Any:
        jwk = keys.get(key_id)
        return public_key_from_jwk(jwk) if jwk is not None and jwk.get("status") == "active" else None

    try:
        verify_detached(descriptor, str(signed.get("signature", "")), typ=TYP_DESCRIPTOR, resolve=resolve)
    except SignatureInvalid as exc:
        raise DirectoryRejected("bad-descriptor", f"{base_url}: descriptor signature refused: {exc.detail}") from None
    if descriptor.get("base_url") != base_url.rstrip("/"):
        raise DirectoryRejected("bad-descriptor", f"{base_url} says its base URL is {descriptor.get('base_url')}")
    if node_id is not None and descriptor.get("node_id") != node_id:
        raise DirectoryRejected("bad-descriptor", f"{base_url} is node {descriptor.get('node_id')}, not {node_id}")
    if kid is not None and (kid not in keys or keys[kid].get("status") != "active"):
        raise DirectoryRejected("bad-descriptor", f"{base_url} does not hold the pinned active key {kid}")
    region = descriptor.get("region_code")
    return {
        "node_id": descriptor["node_id"],
        "name": descriptor["name"],
        "kind": descriptor["kind"],
        "region_code": region,
        "base_url": descriptor["base_url"],
        "keys": [keys[k] for k in keys],
        "neighbours": sorted(neighbours().get(region, frozenset())) if region else [],
    }


def build_directory(
    spec: Mapping[str, Any],
    *,
    fetch: DescriptorFetcher,
    now: datetime,
    serial: int | None = None,
    valid_days: float | None = None,
) -> dict[str, Any]:
    """The unsigned directory document for ``spec`` (``operator``, ``nodes``, optional ``serial``, ``valid_days``).

    The serial defaults to the Unix time of the build, so successive builds always increase.
    """
    members = spec.get("nodes")
    if not isinstance(members, list) or not members:
        raise DirectoryRejected("invalid", "the node list needs a non-empty 'nodes' array")
    nodes: list[dict[str, Any]] = []
    for member in members:
        if not isinstance(member, dict) or not isinstance(member.get("base_url"), str):
            raise DirectoryRejected("invalid", "every member needs a base_url")
        if "keys" in member:
            entry = {
                k: member[k] for k in ("node_id", "name", "kind", "region_code", "base_url", "keys") if k in member
            }
            region = entry.get("region_code")
            entry["neighbours"] = member.get(
                "neighbours", sorted(neighbours().get(region, frozenset())) if region else []
            )
        else:
            entry = node_entry_from_descriptor(
                fetch(member["base_url"]),
                base_url=member["base_url"],
                node_id=member.get("node_id"),
                kid=member.get("kid"),
            )
        nodes.append(entry)
    days = float(valid_days if valid_days is not None else spec.get("valid_days", DEFAULT_VALID_DAYS))
    document = {
        "serial": int(serial if serial is not None else spec.get("serial", int(now.timestamp()))),
        "issued_at": format_time(now),
        "expires_at": format_time(now + timedelta(days=days)),
        "operator": spec.get("operator"),
        "nodes": nodes,
    }
    errors = schemas.validate(DIRECTORY_SCHEMA, document)
    if errors:
        raise DirectoryRejected(
            "invalid",
            "the built directory is not valid",
            errors=[{"path": e.path, "message": e.message} for e in errors],
        )
    return document


def sign_directory(document: Mapping[str, Any], keys: KeyRing) -> dict[str, Any]:
    """The signed envelope ``{"directory", "signature"}``, signed by the operator node's active key."""
    errors = schemas.validate(DIRECTORY_SCHEMA, document)
    if errors:
        raise DirectoryRejected(
            "invalid",
            "refusing to sign an invalid directory",
            errors=[{"path": e.path, "message": e.message} for e in errors],
        )
    return {"directory": dict(document), "signature": sign_detached(dict(document), keys.active, typ=TYP_DIRECTORY)}
