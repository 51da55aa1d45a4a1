"""The inbound federation API: ``/federation/v1/…``. Every route but the directory is for authenticated peers.

``GET /federation/v1/ping`` is every node's health check of every other, so it is served by
:func:`serve_ping` through a :class:`~federation.direct.DirectRoute` rather than by FastAPI's per-request machinery:
the same guard and the same endpoint function, called directly. FastAPI still documents it from :func:`ping`'s
signature.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Body, Request
from fastapi.responses import JSONResponse
from starlette.types import Receive, Scope, Send

from federation import service
from federation.direct import DirectRoute, send_json
from federation.guard import FederationDep, PeerDep, authenticate_peer, federation_of
from federation.models import PingResponse

PREFIX = "/federation/v1"
router = APIRouter(prefix=PREFIX, tags=["federation"])


async def ping(peer: PeerDep, request: Request) -> PingResponse:
    """Authenticated echo: who this node verified the caller to be, and this node's clock."""
    return service.ping(federation_of(request), peer)


async def serve_ping(scope: Scope, receive: Receive, send: Send) -> None:
    """:func:`ping` as a plain ASGI app: guard, endpoint, JSON — what FastAPI would do, minus its overhead.

    A refusal raises out of here exactly as it does out of the dependency, to the node's problem+json handler;
    the answer is already a validated :class:`PingResponse`, so it is serialised without validating it again.
    """
    request = Request(scope, receive)
    answer = await ping(await authenticate_peer(request), request)
    await send_json(send, answer.model_dump_json().encode())


def ping_route() -> DirectRoute:
    """``GET /federation/v1/ping``, served by :func:`serve_ping`."""
    return DirectRoute(
        PREFIX + "/ping",
        ping,
        serve=serve_ping,
        methods=["GET"],
        name="federation.ping",
        response_model=PingResponse,
        tags=["federation"],
    )


@router.post("/ping", name="federation.ping_echo")
async def ping_echo(peer: PeerDep, federation: FederationDep, payload: Annotated[Any, Body()]) -> PingResponse:
    """Authenticated echo of a JSON body: proves a body arrives exactly as it was signed."""
    return service.ping(federation, peer, echo=payload)


@router.get("/directory", name="federation.directory")
async def directory(federation: FederationDep) -> JSONResponse:
    """The current signed federation directory (public; served by the operator node only)."""
    return JSONResponse(service.served_directory(federation), headers={"Cache-Control": "no-cache"})
