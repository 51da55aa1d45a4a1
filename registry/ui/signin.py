"""Signing in and out, and the start page.

The sign-in pages are on the public allow-list (nobody is signed in yet); the development sign-in answers
only when ``ui_dev_signin`` is on, which settings refuse unless the node's base URL is a loopback address.
Sign-out is a form post with the CSRF token, so another site cannot sign a person out.
"""

from __future__ import annotations

import re
from typing import Annotated

from fastapi import APIRouter, Form, Path, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from registry.core.audit.context import audit_context
from registry.core.errors import NotFound
from registry.core.node import NodeDep
from registry.ui.oidc import SignInFailed, oidc_of
from registry.ui.render import render
from registry.ui.session import AnyUser, CsrfChecked, record_actor, sign_in, sign_out
from schemas.vocabulary import Role

router = APIRouter(prefix="/ui", tags=["pages"], include_in_schema=False)

_SAFE_NEXT = re.compile(r"^/ui(/[A-Za-z0-9._~%/?&=+-]*)?$")
DEV_ISSUER_SUFFIX = "#dev-sign-in"


def safe_next(value: str | None) -> str:
    """Where to go after signing in: a page of this service only (never another site: no open redirect)."""
    if value and _SAFE_NEXT.match(value) and "//" not in value:
        return value
    return "/ui/"


@router.get("/", name="ui.home", response_class=HTMLResponse)
def home(request: Request, principal: AnyUser) -> HTMLResponse:
    """The start page: the pages this person's roles open."""
    return render(request, "home.html", title="Start", roles=sorted(principal.roles))


@router.get("/sign-in", name="ui.sign_in", response_class=HTMLResponse)
def sign_in_page(
    request: Request, node: NodeDep, next: Annotated[str | None, Query(max_length=500)] = None
) -> HTMLResponse:
    """How to sign in: the node's identity providers, and the development sign-in where it is on."""
    record_actor(request)
    issuers = [(number, issuer.issuer) for number, issuer in enumerate(node.settings.oidc_issuers)]
    return render(
        request, "sign_in.html", title="Sign in", issuers=issuers, next_page=safe_next(next), roles=list(Role)
    )


@router.post("/sign-in/dev", name="ui.dev_sign_in")
def dev_sign_in(
    request: Request,
    node: NodeDep,
    _csrf: CsrfChecked,
    role: Annotated[str, Form(max_length=40)] = "",
    next: Annotated[str, Form(max_length=500)] = "/ui/",
) -> Response:
    """Development sign-in (local federation only): become a person holding the role picked."""
    if not node.settings.ui_dev_signin:
        audit_context(request).deny("dev-sign-in-off")
        raise NotFound("the development sign-in is not enabled on this node")
    if role not in {r.value for r in Role}:
        audit_context(request).deny("no-role-picked")
        return render(
            request,
            "sign_in.html",
            status=422,
            title="Sign in",
            issuers=[(n, i.issuer) for n, i in enumerate(node.settings.oidc_issuers)],
            next_page=safe_next(next),
            roles=list(Role),
            error="Select the role to sign in with",
        )
    sign_in(
        request,
        subject=f"dev-{role}",
        roles=frozenset({role}),
        issuer=node.settings.base_url + DEV_ISSUER_SUFFIX,
        hours=node.settings.ui_session_hours,
    )
    audit_context(request).permit("dev-sign-in")
    return RedirectResponse(safe_next(next), status_code=303)


@router.get("/sign-in/oidc/{number}", name="ui.oidc_sign_in")
async def oidc_sign_in(
    request: Request,
    node: NodeDep,
    number: Annotated[int, Path(ge=0, le=99)],
    next: Annotated[str | None, Query(max_length=500)] = None,
) -> Response:
    """Go to the identity provider to sign in (authorization code flow with PKCE)."""
    response: Response = await oidc_of(node).start(request, number, safe_next(next))
    return response


@router.get("/sign-in/callback", name="ui.oidc_callback")
async def oidc_callback(request: Request, node: NodeDep) -> Response:
    """Where the identity provider sends the person back: check the ID token, map roles, start the session."""
    context = audit_context(request)
    context.actor_type = "user"
    try:
        principal, next_page = await oidc_of(node).finish(request)
    except SignInFailed as exc:
        context.deny(f"sign-in-failed:{exc.reason}")
        raise
    sign_in(
        request,
        subject=principal.subject,
        roles=principal.roles,
        issuer=principal.issuer,
        hours=node.settings.ui_session_hours,
    )
    if not principal.roles:
        context.deny("no-roles")
        return render(request, "no_roles.html", status=403, title="You have no role on this node")
    context.permit("signed-in")
    return RedirectResponse(safe_next(next_page), status_code=303)


@router.post("/sign-out", name="ui.sign_out")
def sign_out_route(request: Request, _csrf: CsrfChecked) -> Response:
    """Sign out: the session ends here and now."""
    if record_actor(request) is not None:
        audit_context(request).permit("signed-out")
    sign_out(request)
    return render(request, "signed_out.html", title="You have signed out")
