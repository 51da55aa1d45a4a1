"""Who is signed in to the pages, which pages they may open, and the CSRF token every form carries.

A person's session is a signed cookie (Starlette's ``SessionMiddleware``, itsdangerous): it holds the subject,
the roles already mapped to this node's vocabulary, the issuer that vouched for them, when the sign-in ends,
and the CSRF token. The cookie is signed with a key derived from the node's signing key, so nothing needs to
be configured and several nodes in one process never accept each other's cookies.

Pages declare roles with :func:`page_roles`, whose dependency *is* a
:class:`~registry.core.auth.deps.RoleRequirement`: the default-deny route walk sees a page's roles exactly as
it sees an API route's, and the dependency records the actor in the request's audit context the same way.
"""

from __future__ import annotations

import hashlib
import hmac
import inspect
import secrets
import time
from datetime import UTC, datetime
from typing import Annotated, Any

from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat
from fastapi import Depends, Request

from registry.core.audit.context import audit_context
from registry.core.auth.deps import RoleRequirement
from registry.core.auth.errors import MissingRole
from registry.core.auth.principal import Principal
from registry.core.errors import Forbidden, Unauthenticated
from registry.core.node import Node
from schemas.vocabulary import Role

SESSION_COOKIE = "rcc_ui_session"
CSRF_FIELD = "csrf_token"
_ROLE_VALUES = frozenset(role.value for role in Role)


class SignInRequired(Unauthenticated):
    """No signed-in person (or the sign-in has ended): the page offers the way to sign in."""

    code = "sign-in-required"
    title = "Sign in to continue"

    def __init__(self) -> None:
        super().__init__("you need to sign in to see this page")


class CsrfRejected(Forbidden):
    """A form posted without the session's CSRF token (forged, or from a page older than the session)."""

    code = "csrf-token-invalid"
    title = "This form has expired"

    def __init__(self) -> None:
        super().__init__("the form was not sent from a page of this service; go back, reload the page and try again")


def session_secret(node: Node) -> str:
    """The cookie-signing secret: derived from the node's active signing key (rotating the key signs everyone out)."""
    private = node.keys.active.private
    assert private is not None  # noqa: S101 - a key ring's active key always holds its private half
    raw = private.private_bytes(Encoding.Raw, PrivateFormat.Raw, NoEncryption())
    return hmac.new(raw, b"rcc-registry ui session cookie v1", hashlib.sha256).hexdigest()


def _session(request: Request) -> dict[str, Any]:
    session = request.scope.get("session")
    return session if isinstance(session, dict) else {}


def session_principal(request: Request) -> Principal | None:
    """The signed-in person, or None (no session, an ended one, or one that no longer parses)."""
    user = _session(request).get("user")
    if not isinstance(user, dict):
        return None
    subject, issuer, roles, expires = user.get("sub"), user.get("iss"), user.get("roles"), user.get("exp")
    if not (isinstance(subject, str) and isinstance(issuer, str) and isinstance(roles, list)):
        return None
    if not isinstance(expires, int | float) or expires <= time.time():
        return None
    return Principal(
        subject=subject,
        actor_type="user",
        roles=frozenset(role for role in roles if role in _ROLE_VALUES),
        issuer=issuer,
        expires_at=datetime.fromtimestamp(expires, UTC),
        token_id=None,
    )


def sign_in(request: Request, *, subject: str, roles: frozenset[str], issuer: str, hours: float) -> None:
    """Start a session for a person whose identity and roles were just established.

    Everything the session held before is dropped and the CSRF token is renewed, so a session (or token)
    planted before sign-in is worthless after it.
    """
    session = request.scope["session"]
    session.clear()
    session["user"] = {
        "sub": subject,
        "roles": sorted(roles),
        "iss": issuer,
        "exp": int(time.time() + hours * 3600),
    }
    session["csrf"] = secrets.token_urlsafe(32)
    context = audit_context(request)
    context.actor_type, context.actor_id, context.roles, context.issuer = "user", subject, sorted(roles), issuer


def sign_out(request: Request) -> None:
    """End the session (the cookie is emptied on this response)."""
    session = request.scope.get("session")
    if isinstance(session, dict):
        session.clear()


def csrf_token(request: Request) -> str:
    """The session's CSRF token, made on first use (the sign-in form needs one before anyone is signed in)."""
    session = request.scope.get("session")
    if not isinstance(session, dict):
        return ""
    token = session.get("csrf")
    if not isinstance(token, str) or not token:
        token = session["csrf"] = secrets.token_urlsafe(32)
    return token


def record_actor(request: Request) -> Principal | None:
    """Put the signed-in person (if any) into the audit context, for pages open to everyone."""
    principal = session_principal(request)
    if principal is not None:
        context = audit_context(request)
        context.actor_type, context.actor_id = "user", principal.subject
        context.roles, context.issuer = sorted(principal.roles), principal.issuer
    return principal


async def require_csrf(request: Request) -> None:
    """Refuse (403) a form whose ``csrf_token`` is not the session's: what makes cross-site posts useless."""
    form = await request.form()
    sent = form.get(CSRF_FIELD)
    expected = _session(request).get("csrf")
    if not (isinstance(sent, str) and isinstance(expected, str) and secrets.compare_digest(sent, expected)):
        audit_context(request).deny("csrf-token-invalid")
        raise CsrfRejected()


CsrfChecked = Annotated[None, Depends(require_csrf)]


class PageRoleRequirement(RoleRequirement):
    """A page's role check: the person signed in to this session must hold one of ``roles``.

    A :class:`RoleRequirement` (so :func:`~registry.core.auth.deps.route_roles` reads its roles), but it takes
    no bearer token: pages are opened by people with a session cookie, never by API clients.
    """

    def __init__(self, roles: frozenset[Role]) -> None:
        super().__init__(roles)
        self.__signature__ = inspect.Signature(
            [inspect.Parameter("request", inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=Request)],
            return_annotation=Principal,
        )

    def __repr__(self) -> str:
        return f"page_roles({', '.join(sorted(self.roles))})"

    async def __call__(self, request: Request, authorization: str | None = None) -> Principal:  # noqa: ARG002
        audit = audit_context(request)
        principal = record_actor(request)
        if principal is None:
            audit.deny("unauthenticated:no-session")
            raise SignInRequired()
        if not principal.has_any(self.roles):
            audit.deny("missing-role")
            raise MissingRole(self.roles, principal.roles)
        return principal


_requirements: dict[frozenset[Role], PageRoleRequirement] = {}


def page_roles(*roles: Role) -> PageRoleRequirement:
    """The dependency admitting a signed-in person holding any of ``roles`` (one object per set of roles)."""
    key = frozenset(Role(role) for role in roles)
    requirement = _requirements.get(key)
    if requirement is None:
        requirement = _requirements.setdefault(key, PageRoleRequirement(key))
    return requirement


AnyUser = Annotated[Principal, Depends(page_roles(*Role))]
CommissionerUser = Annotated[Principal, Depends(page_roles(Role.commissioner))]
SecureBedUser = Annotated[Principal, Depends(page_roles(Role.commissioner, Role.analyst))]
AgreementsUser = Annotated[Principal, Depends(page_roles(Role.node_admin, Role.governance))]
AdminUser = Annotated[Principal, Depends(page_roles(Role.node_admin))]
GovernanceUser = Annotated[Principal, Depends(page_roles(Role.governance))]

# Which pages each role sees in the navigation (the role checks above are what enforce it).
PAGES: tuple[tuple[str, str, frozenset[str]], ...] = (
    ("ui.search", "Find a placement", frozenset({Role.commissioner.value})),
    ("ui.secure_beds", "Secure beds in England", frozenset({Role.commissioner.value, Role.analyst.value})),
    ("ui.agreements", "Agreements", frozenset({Role.node_admin.value, Role.governance.value})),
    ("ui.audit", "Audit", frozenset({Role.governance.value})),
    ("ui.fee_caps", "Fee caps across England", _ROLE_VALUES),
)
