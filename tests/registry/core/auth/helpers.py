"""Helpers for the auth tests: client authentication headers and a reader of the audit context."""

from __future__ import annotations

import base64
from typing import Any

from fastapi import FastAPI
from starlette.types import Receive, Scope, Send

from registry.core.audit.context import AuditContext


def basic(client_id: str, secret: str) -> dict[str, str]:
    """An ``Authorization: Basic`` header for a client (RFC 6749 §2.3.1)."""
    return {"Authorization": "Basic " + base64.b64encode(f"{client_id}:{secret}".encode()).decode()}


def client_credentials(**extra: str) -> dict[str, str]:
    return {"grant_type": "client_credentials", **extra}


class AuditCapture:
    """Wraps an ASGI app and keeps the audit context each request leaves in ``scope['state']``."""

    def __init__(self, app: FastAPI) -> None:
        self.app = app
        self.contexts: list[AuditContext] = []

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        state: dict[str, Any] = scope.setdefault("state", {})
        try:
            await self.app(scope, receive, send)
        finally:
            context = state.get("audit")
            if isinstance(context, AuditContext):
                self.contexts.append(context)

    @property
    def last(self) -> AuditContext:
        return self.contexts[-1]
