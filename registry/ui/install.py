"""Wiring the pages into a node's app: the session cookie, the routes, and HTML error pages under ``/ui/``."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from starlette.middleware.sessions import SessionMiddleware
from starlette.types import ASGIApp, Receive, Scope, Send

from registry.core.node import Node
from registry.ui import agreements, assets, audit, capacity, feecaps, signin
from registry.ui.render import install_error_pages
from registry.ui.session import SESSION_COOKIE, session_secret


class PagesSessionMiddleware:
    """Starlette's session middleware, for requests under ``/ui`` only.

    The API and the federation routes never read a cookie; every request they serve would otherwise pay for
    parsing one and for a wrapped ``send``.
    """

    def __init__(self, app: ASGIApp, /, **options: Any) -> None:
        self.app = app
        self.pages = SessionMiddleware(app, **options)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and (scope["path"] == "/ui" or scope["path"].startswith("/ui/")):
            await self.pages(scope, receive, send)
        else:
            await self.app(scope, receive, send)


def install_ui(app: FastAPI, node: Node) -> None:
    """Serve the pages at ``/ui/`` (called once by ``create_app``, before the request-context middleware).

    Added before the request-context and audit middleware, the session middleware sits *inside* them: a page's
    request is audited with its actor (the role check reads the session) and its response, cookie and all.
    """
    settings = node.settings
    app.add_middleware(
        PagesSessionMiddleware,
        secret_key=session_secret(node),
        session_cookie=SESSION_COOKIE,
        max_age=int(settings.ui_session_hours * 3600),
        path="/ui",
        same_site="lax",
        https_only=settings.base_url.startswith("https://"),
    )
    for module in (signin, capacity, agreements, audit, feecaps, assets):
        app.include_router(module.router)
    install_error_pages(app)
