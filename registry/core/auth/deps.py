"""Authentication and role checks as FastAPI dependencies: every protected route declares the roles it admits.

``Depends(require(Role.governance))`` — or the ready-made ``Governance`` type — authenticates the bearer token
(node-issued, or from a trusted external OpenID Connect issuer), records the actor in the request's audit
context, and refuses with 401 (no or bad token) or 403 (no admitted role, naming the roles). The roles a
route admits stay readable from the route (:func:`route_roles`), which is how a test proves that every route
either declares roles or stands on the public allow-list: the default is deny.
"""

from __future__ import annotations

import base64
import inspect
import json
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import Depends, FastAPI, Request, Security
from fastapi.concurrency import run_in_threadpool
from fastapi.openapi.models import OAuthFlowClientCredentials, OAuthFlows
from fastapi.routing import RouteContext, iter_route_contexts
from fastapi.security import OAuth2
from starlette.routing import BaseRoute

from registry.core.audit.context import audit_context
from registry.core.auth.errors import MissingRole, TokenInvalid, TokenMissing
from registry.core.auth.oidc import OidcVerifier
from registry.core.auth.principal import Principal
from registry.core.auth.tokens import NodeTokenVerifier
from registry.core.errors import NodeError
from registry.core.node import Node
from schemas.vocabulary import Role

TOKEN_PATH = "/oauth/token"  # noqa: S105 - a route, not a secret
_EXTENSION = "auth.authenticator"

# Describes the scheme in OpenAPI (so /docs can fetch a token); holds no state, reads one header.
bearer_scheme = OAuth2(
    flows=OAuthFlows(
        clientCredentials=OAuthFlowClientCredentials(
            tokenUrl=TOKEN_PATH, scopes={role.value: f"the {role.value} role" for role in Role}
        )
    ),
    scheme_name="node-token",
    description="Access token from this node's POST /oauth/token (client credentials), or from a trusted issuer.",
    auto_error=False,
)


class Authenticator:
    """Turns a bearer token into a :class:`Principal`; one per node, kept in ``node.extensions``."""

    def __init__(self, node: Node) -> None:
        self.base_url = node.settings.base_url
        self.node_tokens = NodeTokenVerifier(keys=node.keys, base_url=self.base_url, engine=node.engine)
        self.oidc = OidcVerifier(list(node.settings.oidc_issuers))

    async def authenticate(self, token: str) -> Principal:
        """Validate ``token``; raise :class:`TokenInvalid` with a stable reason if it cannot be trusted.

        Node-issued tokens are checked inline (a cached signature check and one primary-key read); external
        tokens go to a worker thread, since their check may fetch the issuer's JWKS.
        """
        if self.node_tokens.cache.get(token) is not None:
            # Seen and verified as one of this node's tokens before: skip routing it by its issuer (expiry and
            # the client's status are still checked on every use by verify).
            return self.node_tokens.verify(token)
        issuer = _unverified_issuer(token)
        if issuer == self.base_url:
            return self.node_tokens.verify(token)
        if issuer is not None and self.oidc.trusts(issuer):
            return await run_in_threadpool(self.oidc.verify, token, issuer)
        raise TokenInvalid("unknown-issuer", "the token's issuer is not trusted by this node")


def _unverified_issuer(token: str) -> str | None:
    # Only routes the token to the right verifier; nothing is trusted until that verifier has checked it.
    parts = token.split(".")
    if len(parts) != 3:
        raise TokenInvalid("malformed", "the bearer token is not a JWT")
    try:
        payload = json.loads(base64.urlsafe_b64decode(parts[1] + "=" * (-len(parts[1]) % 4)))
    except ValueError:
        raise TokenInvalid("malformed", "the bearer token's payload is not JSON") from None
    issuer = payload.get("iss") if isinstance(payload, dict) else None
    return issuer if isinstance(issuer, str) else None


def authenticator_for(node: Node) -> Authenticator:
    """The node's authenticator, built on first use (so apps assembled without :func:`install` still work)."""
    authenticator = node.extensions.get(_EXTENSION)
    if not isinstance(authenticator, Authenticator):
        authenticator = Authenticator(node)
        node.extensions[_EXTENSION] = authenticator
    return authenticator


def bearer_token(authorization: str | None) -> str:
    """The token of an ``Authorization: Bearer …`` header, or :class:`TokenMissing` / :class:`TokenInvalid`."""
    if not authorization:
        raise TokenMissing()
    scheme, _, token = authorization.partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer":
        raise TokenMissing()
    if not token:
        raise TokenInvalid("malformed", "empty bearer token")
    return token


class RoleRequirement:
    """A dependency admitting principals that hold at least one of ``roles``; ``roles`` stays inspectable."""

    def __init__(self, roles: frozenset[Role]) -> None:
        self.roles: frozenset[str] = frozenset(role.value for role in roles)
        # FastAPI reads the signature to wire the security scheme with this route's scopes into OpenAPI.
        self.__signature__ = inspect.Signature(
            [
                inspect.Parameter("request", inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=Request),
                inspect.Parameter(
                    "authorization",
                    inspect.Parameter.POSITIONAL_OR_KEYWORD,
                    annotation=str | None,
                    default=Security(bearer_scheme, scopes=sorted(self.roles)),
                ),
            ],
            return_annotation=Principal,
        )

    def __repr__(self) -> str:
        return f"require({', '.join(sorted(self.roles))})"

    async def __call__(self, request: Request, authorization: str | None = None) -> Principal:
        audit = audit_context(request)
        try:
            token = bearer_token(authorization)
            principal = await authenticator_for(request.app.state.node).authenticate(token)
        except TokenMissing:
            audit.deny("unauthenticated:token-missing")
            raise
        except TokenInvalid as exc:
            audit.deny(f"unauthenticated:{exc.reason}")
            raise
        except NodeError as exc:  # e.g. an issuer's keys cannot be fetched: 503, still a refusal on record
            audit.deny(f"unauthenticated:{exc.code}")
            raise
        audit.actor_type = principal.actor_type
        audit.actor_id = principal.subject
        audit.roles = sorted(principal.roles)
        audit.issuer = principal.issuer
        if not principal.has_any(self.roles):
            audit.deny("missing-role")
            raise MissingRole(self.roles, principal.roles)
        return principal


_requirements: dict[frozenset[Role], RoleRequirement] = {}


def require(*roles: Role) -> RoleRequirement:
    """The dependency admitting any of ``roles``: ``Depends(require(Role.governance, Role.node_admin))``.

    The same roles give the same dependency object, so FastAPI runs it once per request however many
    parameters ask for it.
    """
    if not roles:
        raise ValueError("require() needs at least one role; use AnyRole to admit every role")
    key = frozenset(Role(role) for role in roles)
    requirement = _requirements.get(key)
    if requirement is None:
        requirement = _requirements.setdefault(key, RoleRequirement(key))
    return requirement


def route_roles(route: BaseRoute | RouteContext) -> frozenset[str] | None:
    """The roles a route admits (union over its role dependencies, router-level ones included), or None if it
    declares none. Takes a route of ``app.routes`` or a :class:`fastapi.routing.RouteContext` from
    :func:`routes_of`."""
    dependant = getattr(route, "dependant", None)
    if dependant is None:
        return None
    found: set[str] = set()
    declared = False
    stack: list[Any] = [dependant]
    while stack:
        current = stack.pop()
        if isinstance(current.call, RoleRequirement):
            declared = True
            found.update(current.call.roles)
        stack.extend(current.dependencies)
    return frozenset(found) if declared else None


@dataclass(frozen=True)
class RouteDeclaration:
    """One route of an assembled app and the roles it admits (None: it declares none)."""

    path: str
    methods: frozenset[str]
    roles: frozenset[str] | None
    name: str | None


def routes_of(app: FastAPI) -> list[RouteDeclaration]:
    """Every route of ``app`` with its full path and declared roles, looking inside included routers
    (FastAPI keeps them nested) — what the default-deny test walks."""
    declarations: list[RouteDeclaration] = []
    for context in iter_route_contexts(app.routes):
        path = context.path or getattr(context.original_route, "path", "") or ""
        declarations.append(
            RouteDeclaration(
                path=path,
                methods=frozenset(context.methods or ()),
                roles=route_roles(context),
                name=context.name,
            )
        )
    return declarations


NodeAdmin = Annotated[Principal, Depends(require(Role.node_admin))]
Publisher = Annotated[Principal, Depends(require(Role.publisher))]
Provider = Annotated[Principal, Depends(require(Role.provider))]
Commissioner = Annotated[Principal, Depends(require(Role.commissioner))]
Governance = Annotated[Principal, Depends(require(Role.governance))]
Analyst = Annotated[Principal, Depends(require(Role.analyst))]
AnyRole = Annotated[Principal, Depends(require(*Role))]
