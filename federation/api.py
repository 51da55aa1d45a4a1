"""The inbound federation API: ``/federation/v1/…``. Every route but the directory is for authenticated peers.

``GET /federation/v1/ping`` is every node's health check of every other, so it is served by
:func:`serve_ping` through a :class:`DirectRoute` rather than by FastAPI's per-request machinery (dependency
solving, response-model validation, two exit stacks): the same guard and the same endpoint function, called
directly. FastAPI still documents it from :func:`ping`'s signature.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any

from fastapi import APIRouter, Body, Request
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute
from starlette.types import ASGIApp, Receive, Scope, Send

from federation import service
from federation.guard import FederationDep, PeerDep, authenticate_peer, federation_of
from federation.models import PingResponse

PREFIX = "/federation/v1"
router = APIRouter(prefix=PREFIX, tags=["federation"])
_JSON_HEADER = (b"content-type", b"application/json")


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
    body = answer.model_dump_json().encode()
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [_JSON_HEADER, (b"content-length", str(len(body)).encode("ascii"))],
        }
    )
    await send({"type": "http.response.body", "body": body})


class DirectRoute(APIRoute):
    """A route FastAPI documents and names like any other, served by a plain ASGI function instead.

    It must sit in the app's own route list (``app.router.routes``): an included router rebuilds its routes'
    handlers from the endpoint, and would serve it the usual way. ``app.dependency_overrides`` do not reach
    it: its ASGI function calls what it depends on itself.
    """

    def __init__(self, path: str, endpoint: Callable[..., Any], *, serve: ASGIApp, **options: Any) -> None:
        super().__init__(path, endpoint, **options)
        self.app = serve


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
