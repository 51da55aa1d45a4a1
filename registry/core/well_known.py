"""Public endpoints that identify the node and report its health: JWKS, signed descriptor, liveness, readiness.

These are on the public allow-list: a peer must be able to learn a node's keys and identity before it
holds any agreement with it, and an orchestrator must be able to probe health without a token.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from registry.core.db import utcnow
from registry.core.errors import problem_response
from registry.core.node import Node, NodeDep
from registry.core.signing import TYP_DESCRIPTOR, sign_detached

router = APIRouter(tags=["node"])


def descriptor(node: Node) -> dict[str, Any]:
    """The node descriptor document (what ``/.well-known/rcc-node`` signs)."""
    s = node.settings
    return {
        "node_id": s.node_id,
        "name": s.name,
        "kind": s.kind,
        "region_code": s.region_code,
        "base_url": s.base_url,
        "jwks": node.keys.jwks(),
        "datasets": sorted(node.datasets),
        "software_version": node.software_version,
        "issued_at": _now_iso(),
    }


def _now_iso() -> str:
    return utcnow().replace(microsecond=0).isoformat().replace("+00:00", "Z")


@router.get("/.well-known/jwks.json", name="well_known.jwks")
def jwks(node: NodeDep) -> dict[str, Any]:
    """The node's public signing keys (RFC 7517), retired keys marked, so old signatures still verify."""
    return node.keys.jwks()


@router.get("/.well-known/rcc-node", name="well_known.descriptor")
def node_descriptor(node: NodeDep) -> dict[str, Any]:
    """The node's signed descriptor: identity, keys, datasets offered, software version."""
    document = descriptor(node)
    return {
        "descriptor": document,
        "signature": sign_detached(document, node.keys.active, typ=TYP_DESCRIPTOR),
    }


@router.get("/healthz", name="well_known.healthz")
def healthz() -> dict[str, str]:
    """Liveness: the process is up and answering."""
    return {"status": "ok"}


@router.get("/readyz", name="well_known.readyz", responses={503: {"description": "not ready, with reasons"}})
def readyz(node: NodeDep) -> JSONResponse:
    """Readiness: database reachable and migrated, signing key loaded, and whatever else the node registered."""
    ok, checks = node.readiness()
    if ok:
        return JSONResponse({"status": "ready", "checks": checks})
    failing = ", ".join(name for name, check in checks.items() if not check["ok"])
    return problem_response(503, f"not ready: {failing}", code="not-ready", checks=checks)
