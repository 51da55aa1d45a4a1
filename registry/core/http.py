"""HTTP plumbing every request passes through: request ids, body size limit, accepted media types.

A pure ASGI middleware (not Starlette's ``BaseHTTPMiddleware``, which costs a task and a copy per request):
it answers 413 before reading more than the limit and 415 for a body in a media type no route accepts,
and stamps ``X-Request-ID`` on every response — echoing a sane one from the client, making one otherwise.
"""

from __future__ import annotations

import json
import logging
import re
import secrets
from typing import Any

from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from registry.core.errors import PROBLEM_MEDIA_TYPE, PROBLEM_TYPE_BASE

REQUEST_ID_HEADER = "x-request-id"
_SANE_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
ACCEPTED_MEDIA_TYPES = ("application/json", "application/x-www-form-urlencoded")
_BODY_METHODS = {"POST", "PUT", "PATCH"}
log = logging.getLogger("rcc.http")


def new_request_id() -> str:
    """A random request id (URL-safe, 22 chars)."""
    return secrets.token_urlsafe(16)


def _problem(status: int, code: str, title: str, detail: str, request_id: str) -> tuple[Message, Message]:
    body = json.dumps(
        {"type": PROBLEM_TYPE_BASE + code, "title": title, "status": status, "detail": detail, "code": code}
    ).encode()
    start: Message = {
        "type": "http.response.start",
        "status": status,
        "headers": [
            (b"content-type", PROBLEM_MEDIA_TYPE.encode()),
            (b"content-length", str(len(body)).encode()),
            (REQUEST_ID_HEADER.encode(), request_id.encode()),
        ],
    }
    return start, {"type": "http.response.body", "body": body}


def media_type_accepted(content_type: str) -> bool:
    """JSON (including ``application/*+json``) and HTML-form bodies are what the node's routes take."""
    base = content_type.split(";", 1)[0].strip().lower()
    return base in ACCEPTED_MEDIA_TYPES or (base.startswith("application/") and base.endswith("+json"))


class RequestContextMiddleware:
    """Request id, body limit and media-type gate, in one pass over the ASGI messages."""

    def __init__(self, app: ASGIApp, *, max_body_bytes: int) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        offered = headers.get(REQUEST_ID_HEADER, "")
        request_id = offered if _SANE_REQUEST_ID.match(offered) else new_request_id()
        scope.setdefault("state", {})["request_id"] = request_id

        async def refuse(status: int, code: str, title: str, detail: str) -> None:
            for message in _problem(status, code, title, detail, request_id):
                await send(message)

        length = headers.get("content-length")
        if length is not None and (not length.isdigit() or int(length) > self.max_body_bytes):
            await refuse(413, "payload-too-large", "Payload too large", f"body over {self.max_body_bytes} bytes")
            return
        has_body = (length not in (None, "0")) or "transfer-encoding" in headers
        if scope["method"] in _BODY_METHODS and has_body and not media_type_accepted(headers.get("content-type", "")):
            await refuse(
                415,
                "unsupported-media-type",
                "Unsupported media type",
                "send application/json (or an HTML form where a page posts one)",
            )
            return

        received = 0
        limit = self.max_body_bytes

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    # An HTTPException passes through FastAPI's body parsing untouched and is rendered
                    # by the problem+json handler, whoever was reading the body.
                    raise HTTPException(413, f"body over {limit} bytes")
            return message

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), (b"x-request-id", request_id.encode())]
            await send(message)

        started = False

        async def send_tracking(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send_with_id(message)

        try:
            await self.app(scope, limited_receive, send_tracking)
        except Exception:
            # Last line of defence: log the internals, tell the client nothing about them.
            log.exception("unhandled error on %s %s [%s]", scope.get("method"), scope.get("path"), request_id)
            if not started:
                await refuse(
                    500,
                    "internal-error",
                    "Internal server error",
                    "the node failed to handle this request; it has been logged",
                )


def request_id_of(scope_state: dict[str, Any]) -> str:
    """The request id the middleware assigned (or a new one outside a request)."""
    value = scope_state.get("request_id")
    return value if isinstance(value, str) else new_request_id()
