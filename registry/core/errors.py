"""Errors as classes, rendered by one handler as RFC 9457 ``application/problem+json``.

Service code raises a :class:`NodeError` subclass carrying its evidence as attributes; the handler turns it
into ``{type, title, status, detail, code, ...extra}``. Framework errors (unknown route, wrong method,
validation) and unexpected failures go through the same handler, so a client never sees HTML, a stack
trace or a 5xx for bad input.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import JSONResponse

PROBLEM_MEDIA_TYPE = "application/problem+json"
PROBLEM_TYPE_BASE = "urn:rcc-registry:problem:"


class NodeError(Exception):
    """Base of every error the product reports to a client."""

    status: ClassVar[int] = 400
    code: ClassVar[str] = "bad-request"
    title: ClassVar[str] = "Bad request"

    def __init__(
        self,
        detail: str | None = None,
        *,
        errors: Sequence[dict[str, str]] | None = None,
        headers: dict[str, str] | None = None,
        **extra: Any,
    ) -> None:
        self.detail = detail or self.title
        self.errors = list(errors) if errors else None
        self.headers = headers or {}
        self.extra = extra
        super().__init__(self.detail)

    def problem(self) -> dict[str, Any]:
        """The problem+json body."""
        body: dict[str, Any] = {
            "type": PROBLEM_TYPE_BASE + self.code,
            "title": self.title,
            "status": self.status,
            "detail": self.detail,
            "code": self.code,
        }
        if self.errors is not None:
            body["errors"] = self.errors
        body.update({k: v for k, v in self.extra.items() if v is not None})
        return body


class BadRequest(NodeError):
    """The request cannot be understood (unparseable body, bad header)."""


class ValidationFailed(NodeError):
    """The request is well-formed but its content breaks a rule; ``errors`` names each JSON path."""

    status = 422
    code = "validation-failed"
    title = "Validation failed"


class Unauthenticated(NodeError):
    """No credentials, or credentials that cannot be trusted."""

    status = 401
    code = "unauthenticated"
    title = "Authentication required"


class Forbidden(NodeError):
    """Authenticated, but not allowed."""

    status = 403
    code = "forbidden"
    title = "Forbidden"


class NotFound(NodeError):
    """No such resource."""

    status = 404
    code = "not-found"
    title = "Not found"


class Conflict(NodeError):
    """The request conflicts with the current state."""

    status = 409
    code = "conflict"
    title = "Conflict"


class PreconditionFailed(NodeError):
    """An ``If-Match`` (or similar) precondition no longer holds."""

    status = 412
    code = "precondition-failed"
    title = "Precondition failed"


class PayloadTooLarge(NodeError):
    """The body is over the node's configured limit."""

    status = 413
    code = "payload-too-large"
    title = "Payload too large"


class UnsupportedMediaType(NodeError):
    """The body is not in a media type the route accepts."""

    status = 415
    code = "unsupported-media-type"
    title = "Unsupported media type"


class PreconditionRequired(NodeError):
    """The update must be conditional (``If-Match``)."""

    status = 428
    code = "precondition-required"
    title = "Precondition required"


class ServiceUnavailable(NodeError):
    """The node cannot serve this now (database or audit log down) and refuses rather than serve unsafely."""

    status = 503
    code = "service-unavailable"
    title = "Service unavailable"


_STATUS_CODES: dict[int, tuple[str, str]] = {
    400: ("bad-request", "Bad request"),
    401: ("unauthenticated", "Authentication required"),
    403: ("forbidden", "Forbidden"),
    404: ("not-found", "Not found"),
    405: ("method-not-allowed", "Method not allowed"),
    406: ("not-acceptable", "Not acceptable"),
    413: ("payload-too-large", "Payload too large"),
    415: ("unsupported-media-type", "Unsupported media type"),
    422: ("validation-failed", "Validation failed"),
    429: ("too-many-requests", "Too many requests"),
    500: ("internal-error", "Internal server error"),
    503: ("service-unavailable", "Service unavailable"),
}


def problem_response(
    status: int,
    detail: str,
    *,
    code: str | None = None,
    title: str | None = None,
    headers: dict[str, str] | None = None,
    **extra: Any,
) -> JSONResponse:
    """A problem+json response for a status, with the product's stable code and title."""
    default_code, default_title = _STATUS_CODES.get(status, ("error", "Error"))
    body: dict[str, Any] = {
        "type": PROBLEM_TYPE_BASE + (code or default_code),
        "title": title or default_title,
        "status": status,
        "detail": detail,
        "code": code or default_code,
    }
    body.update({k: v for k, v in extra.items() if v is not None})
    return JSONResponse(body, status_code=status, media_type=PROBLEM_MEDIA_TYPE, headers=headers)


def json_pointer(location: Sequence[str | int]) -> str:
    """Where a validation error is: an RFC 6901 pointer into the body (``/grants/0``), or ``query:name``."""
    parts = list(location)
    if parts and parts[0] in ("query", "path", "header", "cookie"):
        return f"{parts[0]}:" + ".".join(str(p) for p in parts[1:])
    if parts and parts[0] == "body":
        parts = parts[1:]
    return "".join("/" + str(p).replace("~", "~0").replace("/", "~1") for p in parts)


async def _node_error(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, NodeError)  # noqa: S101 - registered for NodeError only
    return JSONResponse(exc.problem(), status_code=exc.status, media_type=PROBLEM_MEDIA_TYPE, headers=exc.headers)


async def _http_error(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)  # noqa: S101
    detail = exc.detail if isinstance(exc.detail, str) else _STATUS_CODES.get(exc.status_code, ("", "Error"))[1]
    if exc.status_code == 404 and detail == "Not Found":
        detail = "no such route"
    elif exc.status_code == 405 and detail == "Method Not Allowed":
        detail = "this route does not accept that method"
    return problem_response(exc.status_code, detail, headers=dict(exc.headers or {}))


async def _validation_error(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)  # noqa: S101
    errors = [{"path": json_pointer(e.get("loc", ())), "message": str(e.get("msg", "invalid"))} for e in exc.errors()]
    if any(e.get("type") == "json_invalid" for e in exc.errors()):
        return problem_response(400, "request body is not valid JSON", code="malformed-json", errors=errors)
    return problem_response(422, "the request does not match what this route accepts", errors=errors)


def install_error_handlers(app: FastAPI) -> None:
    """Route every error of ``app`` through problem+json (unexpected ones: see ``registry.core.http``)."""
    app.add_exception_handler(NodeError, _node_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
