"""Routes of local auth: the OAuth 2.0 token endpoint and ``whoami``; :func:`install` wires auth into an app.

``POST /oauth/token`` answers in RFC 6749 §5.1/§5.2 JSON, not problem+json: OAuth client libraries parse
``{"error": …}``, and the RFC fixes that shape for this one endpoint.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qsl

from fastapi import APIRouter, FastAPI, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse

from registry.core.audit.context import audit_context
from registry.core.auth.deps import TOKEN_PATH, AnyRole, authenticator_for
from registry.core.auth.models import WhoAmI
from registry.core.auth.server import NodeAuthorizationServer, TokenRequest
from registry.core.node import Node

router = APIRouter(tags=["auth"])
_SERVER = "auth.server"
_FORM = "application/x-www-form-urlencoded"
_NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}

_TOKEN_OPENAPI: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {
            _FORM: {
                "schema": {
                    "type": "object",
                    "required": ["grant_type"],
                    "properties": {
                        "grant_type": {"type": "string", "enum": ["client_credentials"]},
                        "scope": {"type": "string", "description": "space-separated roles (a subset of the client's)"},
                        "client_assertion_type": {"type": "string"},
                        "client_assertion": {"type": "string", "description": "RFC 7523 private_key_jwt assertion"},
                    },
                }
            }
        },
    }
}
_TOKEN_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {"description": "RFC 6749 §5.1 access token response"},
    400: {"description": "RFC 6749 §5.2 error (invalid_request, invalid_scope, unsupported_grant_type…)"},
    401: {"description": "invalid_client, with WWW-Authenticate"},
    429: {"description": "client locked out after repeated failures, with Retry-After"},
}


def authorization_server_for(node: Node) -> NodeAuthorizationServer:
    """The node's token endpoint engine, built on first use."""
    server = node.extensions.get(_SERVER)
    if not isinstance(server, NodeAuthorizationServer):
        server = NodeAuthorizationServer(node)
        node.extensions[_SERVER] = server
    return server


def _oauth_error(status: int, error: str, description: str) -> JSONResponse:
    return JSONResponse({"error": error, "error_description": description}, status_code=status, headers=_NO_STORE)


def parse_token_form(content_type: str, body: bytes) -> dict[str, str] | str:
    """The form parameters, or why they are unacceptable (RFC 6749 §3.2: form-encoded, each parameter once)."""
    if content_type.split(";", 1)[0].strip().lower() != _FORM:
        return f"the token request must be {_FORM}"
    try:
        pairs = parse_qsl(body.decode("utf-8"), keep_blank_values=True, strict_parsing=bool(body))
    except (UnicodeDecodeError, ValueError):
        return "the form body cannot be parsed"
    form: dict[str, str] = {}
    for name, value in pairs:
        if name in form:
            return f"parameter {name!r} appears more than once"
        form[name] = value
    return form


@router.post(
    TOKEN_PATH,
    name="auth.token",
    openapi_extra=_TOKEN_OPENAPI,
    responses=_TOKEN_RESPONSES,
    response_class=JSONResponse,
)
async def token(request: Request) -> JSONResponse:
    """Issue an access token to a client (OAuth 2.0 client credentials; client_secret_basic or private_key_jwt)."""
    node: Node = request.app.state.node
    audit = audit_context(request)
    audit.actor_type = "client"
    form = parse_token_form(request.headers.get("content-type", ""), await request.body())
    if isinstance(form, str):
        audit.deny("invalid-request")
        return _oauth_error(400, "invalid_request", form)
    headers = {"Authorization": request.headers["authorization"]} if "authorization" in request.headers else {}
    oauth_request = TokenRequest(f"{node.settings.base_url}{TOKEN_PATH}", headers, form)
    status, body, response_headers = await run_in_threadpool(authorization_server_for(node).token, oauth_request)
    audit.actor_id = oauth_request.client_id_attempted
    if oauth_request.client is not None and oauth_request.issued is not None:
        audit.actor_id = oauth_request.client.get_client_id()
        audit.roles = sorted(str(oauth_request.issued.get("scope") or "").split())
        audit.issuer = node.settings.base_url
        audit.permit("token-issued")
    else:
        audit.deny(oauth_request.refusal or "refused")
    return JSONResponse(body, status_code=status, headers=dict(response_headers))


@router.get("/v1/whoami", name="auth.whoami", response_model=WhoAmI)
async def whoami(principal: AnyRole) -> WhoAmI:
    """Who this node takes the caller to be: subject, roles, issuer and when the token expires."""
    return WhoAmI(
        subject=principal.subject,
        actor_type=principal.actor_type,
        roles=sorted(principal.roles),
        issuer=principal.issuer,
        expires_at=principal.expires_at,
        token_id=principal.token_id,
    )


def install(app: FastAPI) -> None:
    """Add the auth routes to ``app`` and build the node's authenticator and token endpoint up front."""
    node: Node = app.state.node
    authenticator_for(node)
    authorization_server_for(node)
    app.include_router(router)
