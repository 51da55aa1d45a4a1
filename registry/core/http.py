"""HTTP plumbing every request passes through: request ids, body size limit, accepted media types.

A pure ASGI middleware (not Starlette's ``BaseHTTPMiddleware``, which costs a task and a copy per request):
it answers 413 before reading more than the limit and 415 for a body in a media type no route accepts,
and stamps ``X-Request-ID`` on every response — echoing a sane one from the client, making one otherwise.
"""

from __future__ import annotations

import itertools
import json
import logging
import os
import re
import secrets
from collections.abc import Iterator
from typing import Any

from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from registry.core.errors import PROBLEM_MEDIA_TYPE, PROBLEM_TYPE_BASE

REQUEST_ID_HEADER = "x-request-id"
_REQUEST_ID_BYTES = REQUEST_ID_HEADER.encode("ascii")
_SANE_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
ACCEPTED_MEDIA_TYPES = ("application/json", "application/x-www-form-urlencoded")
_BODY_METHODS = {"POST", "PUT", "PATCH"}
log = logging.getLogger("rcc.http")


_id_source: tuple[int, str, Iterator[int]] | None = None


def new_request_id() -> str:
    """A request id unique to this process (URL-safe, 22 chars): a random per-process prefix and a counter.

    Request ids correlate responses, logs and audit entries; they are not secrets (a client may send its own),
    so a counter behind 72 random bits serves, without a system call per request. A forked worker notices
    the new process id and draws its own prefix.
    """
    global _id_source  # one source per process, replaced after a fork
    source = _id_source
    pid = os.getpid()
    if source is None or source[0] != pid:
        source = _id_source = (pid, secrets.token_urlsafe(9), itertools.count())
    return f"{source[1]}{next(source[2]):010x}"


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
        # One pass over the raw headers for the four this layer reads (no dict of every header, no decoding).
        offered = length = content_type = None
        chunked = False
        for raw_name, value in scope["headers"]:
            name = raw_name.lower()
            if name == b"x-request-id":
                offered = value
            elif name == b"content-length":
                length = value
            elif name == b"content-type":
                content_type = value
            elif name == b"transfer-encoding":
                chunked = True
        offered_id = offered.decode("latin-1") if offered is not None else ""
        request_id = offered_id if _SANE_REQUEST_ID.match(offered_id) else new_request_id()
        request_id_bytes = request_id.encode("latin-1")
        scope.setdefault("state", {})["request_id"] = request_id

        async def refuse(status: int, code: str, title: str, detail: str) -> None:
            for message in _problem(status, code, title, detail, request_id):
                await send(message)

        if length is not None and (not length.isdigit() or int(length) > self.max_body_bytes):
            await refuse(413, "payload-too-large", "Payload too large", f"body over {self.max_body_bytes} bytes")
            return
        has_body = (length is not None and length != b"0") or chunked
        if (
            has_body
            and scope["method"] in _BODY_METHODS
            and not media_type_accepted(content_type.decode("latin-1") if content_type is not None else "")
        ):
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

        started = False

        async def send_with_id(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                message["headers"] = [*message.get("headers", ()), (_REQUEST_ID_BYTES, request_id_bytes)]
            await send(message)

        try:
            await self.app(scope, limited_receive, send_with_id)
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
