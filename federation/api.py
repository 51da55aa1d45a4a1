"""The inbound federation API: ``/federation/v1/…``. Every route but the directory is for authenticated peers."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Body, Request
from fastapi.responses import JSONResponse

from federation import service
from federation.guard import FederationDep, PeerDep, federation_of
from federation.models import PingResponse

router = APIRouter(prefix="/federation/v1", tags=["federation"])


@router.get("/ping", name="federation.ping")
async def ping(peer: PeerDep, request: Request) -> PingResponse:
    """Authenticated echo: who this node verified the caller to be, and this node's clock."""
    # The hot path of every health check between nodes: the runtime is read off the request, not solved
    # as a second dependency.
    return service.ping(federation_of(request), peer)


@router.post("/ping", name="federation.ping_echo")
async def ping_echo(peer: PeerDep, federation: FederationDep, payload: Annotated[Any, Body()]) -> PingResponse:
    """Authenticated echo of a JSON body: proves a body arrives exactly as it was signed."""
    return service.ping(federation, peer, echo=payload)


@router.get("/directory", name="federation.directory")
async def directory(federation: FederationDep) -> JSONResponse:
    """The current signed federation directory (public; served by the operator node only)."""
    return JSONResponse(service.served_directory(federation), headers={"Cache-Control": "no-cache"})
