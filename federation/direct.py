"""Federation routes served as plain ASGI functions: the hottest peer-to-peer calls, without FastAPI's
per-request machinery (dependency solving, a thread-pool hop per sync dependency, response-model validation,
two exit stacks).

A national search asks every region at once, and on a node answering them that machinery cost more than
the search itself. A :class:`DirectRoute` keeps what FastAPI gives a route (its name, its OpenAPI entry from
the endpoint's signature, the app's middlewares and problem+json handlers) and serves it with a function
that calls the guard and the endpoint directly. What it must still do by hand is here: read a JSON body into
a model with FastAPI's error shape, run a sync endpoint in one session on one thread-pool hop, and send JSON.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from fastapi import FastAPI
from fastapi.exceptions import RequestValidationError
from fastapi.routing import APIRoute
from pydantic import BaseModel, ValidationError
from sqlalchemy import Engine
from sqlmodel import Session
from starlette.types import ASGIApp, Receive, Scope, Send

M = TypeVar("M", bound=BaseModel)
T = TypeVar("T")
_JSON_HEADER = (b"content-type", b"application/json")


class DirectRoute(APIRoute):
    """A route FastAPI documents and names like any other, served by a plain ASGI function instead.

    Add it with :func:`install_direct`, to the app's own route list: an included router rebuilds its routes'
    handlers from the endpoint, and would serve it the usual way. ``app.dependency_overrides`` do not reach
    it: its ASGI function calls what it depends on itself.
    """

    def __init__(self, path: str, endpoint: Callable[..., Any], *, serve: ASGIApp, **options: Any) -> None:
        super().__init__(path, endpoint, **options)
        self.app = serve


class DirectDispatch:
    """The router's front door for direct routes: a request for a direct route's exact method and path goes
    straight to its ASGI function; anything else goes on to the router.

    Finding a route otherwise means the router's walk and FastAPI's bookkeeping for the match, which cost a
    signed ping about a tenth of what the node spends on it. It wraps the router itself, so it sits inside the
    app's exception middleware (a refusal still becomes problem+json) and inside every node middleware. It sets
    what the router would have set for the route (``route``, ``endpoint``, ``path_params``), which the audit
    entry names. Behind a proxy that mounts the node under a path prefix (``root_path``) the router decides, as
    it does for every other route.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self.routes: dict[tuple[str, str], DirectRoute] = {}

    def add(self, route: DirectRoute) -> None:
        """Serve ``route`` directly for each of its methods (HEAD stays with the router, which answers it)."""
        for method in (route.methods or set()) - {"HEAD"}:
            self.routes[(method, route.path)] = route

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and not scope.get("root_path"):
            route = self.routes.get((scope["method"], scope["path"]))
            if route is not None:
                scope["route"], scope["endpoint"], scope["path_params"] = route, route.endpoint, {}
                await route.app(scope, receive, send)
                return
        await self.app(scope, receive, send)


def install_direct(app: FastAPI, route: DirectRoute) -> None:
    """Add ``route`` to ``app``: first in its route list (so FastAPI documents and names it, and serves it if a
    request reaches the router), and to the router's :class:`DirectDispatch`."""
    app.router.routes.insert(0, route)
    dispatch = app.router.middleware_stack
    if not isinstance(dispatch, DirectDispatch):
        dispatch = app.router.middleware_stack = DirectDispatch(app.router.middleware_stack)
    dispatch.add(route)


def json_body(model: type[M], body: bytes) -> M:
    """``body`` validated as ``model``, refused as FastAPI refuses a body parameter (the node's handler turns
    it into 400 ``malformed-json`` or a 422 naming each field), so a direct route answers as any other."""
    if not body:
        raise RequestValidationError([{"type": "missing", "loc": ("body",), "msg": "Field required", "input": None}])
    try:
        return model.model_validate_json(body)
    except ValidationError as exc:
        errors = [{**error, "loc": ("body", *error["loc"])} for error in exc.errors(include_url=False)]
        raise RequestValidationError(errors) from None


def in_session(engine: Engine, call: Callable[[Session], T]) -> T:
    """``call`` in a session committed when it returns and rolled back when it raises, as ``get_session``
    does for a FastAPI route: for a direct route's sync work, on one thread-pool hop."""
    with Session(engine) as session:
        try:
            result = call(session)
            session.commit()
        except BaseException:
            session.rollback()
            raise
    return result


async def send_json(send: Send, body: bytes, status: int = 200) -> None:
    """Send ``body``, already JSON, as the whole response."""
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [_JSON_HEADER, (b"content-length", str(len(body)).encode("ascii"))],
        }
    )
    await send({"type": "http.response.body", "body": body})
