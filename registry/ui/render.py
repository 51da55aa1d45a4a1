"""Rendering pages: the Jinja2 templates, what every page is given, security headers, and HTML error pages.

Errors under ``/ui/`` are the API's own error classes (raised by the same services), shown as an HTML page
with the same status instead of problem+json: a person gets a page that says what went wrong and what to do,
an API client still gets problem+json everywhere else.
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable
from datetime import date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import jinja2
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from registry.core import domain
from registry.core.auth.errors import MissingRole
from registry.core.errors import NodeError
from registry.core.node import Node
from registry.ui.session import PAGES, SignInRequired, csrf_token, session_principal

UI_PREFIX = "/ui"
NOTHING = "\u2013"  # an en dash: what a table cell shows for "no value"
TEMPLATES = Path(__file__).parent / "templates"

# Pages load only this node's own stylesheet and script; nothing inline, nothing from elsewhere, never framed.
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "X-Frame-Options": "DENY",
    "Cache-Control": "no-store",  # pages show what this person may see: never keep them in a shared cache
}


def when(value: datetime | date | str | None) -> str:
    """A time as people read it: ``28 Nov 2026, 21:30 UTC`` (dates: ``28 Nov 2026``)."""
    if value is None or value == "":
        return NOTHING
    if isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            return value
        return parsed.strftime("%-d %b %Y, %H:%M UTC")
    if isinstance(value, datetime):
        return value.strftime("%-d %b %Y, %H:%M UTC")
    return value.strftime("%-d %b %Y")


def money(value: float | Decimal | None) -> str:
    """Pounds with pence: ``£1,234.50``."""
    if value is None:
        return NOTHING
    amount = Decimal(str(value))
    return f"{'-' if amount < 0 else ''}£{abs(amount):,.2f}"


def region_name(code: str | None) -> str:
    """An ONS region's name (the code itself if unknown)."""
    if not code:
        return NOTHING
    return domain.regions().get(code, code)


def la_name(code: str | None) -> str:
    """A local authority's name (the code itself if unknown)."""
    if not code:
        return NOTHING
    la = domain.local_authorities().get(code)
    return la.name if la is not None else code


def words(value: str | None) -> str:
    """A vocabulary value as words: ``emotional-behavioural-difficulties`` → ``Emotional behavioural difficulties``."""
    if not value:
        return ""
    text = str(value).replace("-", " ").replace("_", " ")
    return text[:1].upper() + text[1:]


@functools.cache
def environment() -> jinja2.Environment:
    """The template environment (built once; it holds no per-node state)."""
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES),
        autoescape=jinja2.select_autoescape(["html", "svg"]),
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters.update(when=when, money=money, region_name=region_name, la_name=la_name, words=words)
    return env


def page_context(request: Request) -> dict[str, Any]:
    """What every page is given: who is signed in, the navigation they may use, the node, the CSRF token."""
    node: Node = request.app.state.node
    principal = session_principal(request)
    held = principal.roles if principal is not None else frozenset()
    nav = [
        {"name": name, "label": label, "href": request.app.url_path_for(name)}
        for name, label, roles in PAGES
        if not held.isdisjoint(roles)
    ]
    current = getattr(request.scope.get("route"), "name", None)
    return {
        "request": request,
        "principal": principal,
        "nav": nav,
        "current": current,
        "node": node.settings,
        "csrf_token": csrf_token(request),
        "url": request.app.url_path_for,
        "dev_signin": node.settings.ui_dev_signin,
    }


def render(
    request: Request, template: str, *, status: int = 200, headers: dict[str, str] | None = None, **context: Any
) -> HTMLResponse:
    """A page: ``template`` with the page context and ``context``, and the security headers."""
    html = environment().get_template(template).render(**page_context(request), **context)
    return HTMLResponse(html, status_code=status, headers={**SECURITY_HEADERS, **(headers or {})})


def is_page(request: Request) -> bool:
    """Whether the request is for a page (errors there are HTML)."""
    path = request.url.path
    return path == UI_PREFIX or path.startswith(UI_PREFIX + "/")


def error_page(request: Request, exc: Exception) -> HTMLResponse:
    """The HTML page for an error raised while serving a page, with the status the API would answer."""
    headers: dict[str, str] = {}
    problems: list[str] = []
    if isinstance(exc, NodeError):
        status, title, detail = exc.status, exc.title, exc.detail
        problems = [f"{e.get('path', '')}: {e.get('message', '')}".lstrip(": ") for e in exc.errors or []]
    elif isinstance(exc, RequestValidationError):
        status, title, detail = 422, "Check what you entered", "some of what was sent is not valid"
        problems = [f"{_where(e.get('loc', ()))}: {e.get('msg', 'invalid')}" for e in exc.errors()]
    elif isinstance(exc, StarletteHTTPException):
        status = exc.status_code
        title = {404: "Page not found", 405: "That cannot be done here"}.get(status, "Something is wrong")
        detail = exc.detail if isinstance(exc.detail, str) and status not in (404, 405) else ""
        if status == 405 and exc.headers and "Allow" in exc.headers:
            headers["Allow"] = exc.headers["Allow"]
    else:  # pragma: no cover - only the three kinds above are routed here
        status, title, detail = 500, "Sorry, there is a problem with the service", ""
    return render(
        request,
        "error.html",
        status=status,
        headers=headers,
        title=title,
        detail=detail,
        problems=problems,
        sign_in=isinstance(exc, SignInRequired),
        missing_role=exc.required if isinstance(exc, MissingRole) else None,
        status_code=status,
    )


def _where(location: Any) -> str:
    parts = [str(p) for p in location if p not in ("body", "query", "path")]
    return ".".join(parts) or "request"


Handler = Callable[[Request, Exception], Awaitable[Response]]


def install_error_pages(app: FastAPI) -> None:
    """Show errors under ``/ui/`` as HTML pages; leave every other route's problem+json as it is."""
    for kind in (NodeError, StarletteHTTPException, RequestValidationError):
        original: Handler | None = app.exception_handlers.get(kind)  # type: ignore[assignment]
        if original is None:
            continue

        async def handler(request: Request, exc: Exception, original: Handler = original) -> Response:
            if is_page(request):
                return error_page(request, exc)
            return await original(request, exc)

        app.exception_handlers[kind] = handler
