"""People's sign-in with the node's trusted OpenID Connect issuers: authorization code flow with PKCE (S256).

authlib's Starlette client does the protocol (discovery, the authorization redirect with ``state``, ``nonce``
and the PKCE challenge kept in the session, the code exchange). The ID token it brings back is then checked by
the node's own :class:`~registry.core.auth.oidc.OidcVerifier` — issuer, audience, expiry, an asymmetric
signature from the issuer's JWKS — and its roles mapped by the issuer's ``role_map``, exactly as a bearer
token from that issuer would be: a person signed in to the pages holds the roles an API token would give them.

The client id is the issuer's configured ``audience`` (an ID token's ``aud`` is the client it was issued to);
``ui_oidc_client_secret`` is sent if set, else the client is public and PKCE alone binds the code to it.
"""

from __future__ import annotations

import base64
import json
import warnings
from typing import Any

from fastapi import Request
from starlette.concurrency import run_in_threadpool

from registry.core.auth.deps import authenticator_for
from registry.core.auth.errors import TokenInvalid
from registry.core.auth.principal import Principal
from registry.core.errors import BadRequest, NodeError, NotFound
from registry.core.node import Node
from registry.core.settings import OidcIssuer

CALLBACK_PATH = "/ui/sign-in/callback"
EXTENSION = "ui.oidc"
_SESSION_ISSUER = "oidc_issuer"
_SESSION_NEXT = "oidc_next"


class SignInFailed(BadRequest):
    """The identity provider's answer cannot sign anyone in; ``reason`` is the stable code the audit records."""

    code = "sign-in-failed"
    title = "Sign-in failed"

    def __init__(self, reason: str, detail: str) -> None:
        self.reason = reason
        super().__init__(detail, reason=reason)


def _starlette_oauth() -> Any:
    # authlib warns on import that it would rather use httpx2; the product's HTTP client is httpx.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        from authlib.deprecate import AuthlibDeprecationWarning

        warnings.simplefilter("ignore", AuthlibDeprecationWarning)
        from authlib.integrations.starlette_client import OAuth

    return OAuth


class OidcSignIn:
    """The node's sign-in clients, one per trusted issuer (numbered as ``Settings.oidc_issuers`` lists them)."""

    def __init__(self, node: Node, *, client_kwargs: dict[str, Any] | None = None) -> None:
        self.node = node
        self.issuers: list[OidcIssuer] = list(node.settings.oidc_issuers)
        self._client_kwargs = client_kwargs or {}
        self._clients: dict[int, Any] = {}

    def issuer(self, number: int) -> OidcIssuer:
        """The issuer a sign-in link names; 404 if there is none."""
        if not 0 <= number < len(self.issuers):
            raise NotFound(f"no identity provider number {number} on this node")
        return self.issuers[number]

    def client(self, number: int) -> Any:
        """authlib's Starlette OAuth 2.0 client for issuer ``number`` (built on first use)."""
        client = self._clients.get(number)
        if client is None:
            config = self.issuer(number)
            secret = self.node.settings.ui_oidc_client_secret
            oauth = _starlette_oauth()()
            client = oauth.register(
                name=f"issuer{number}",
                client_id=config.audience,
                client_secret=secret,
                server_metadata_url=f"{config.issuer}/.well-known/openid-configuration",
                client_kwargs={
                    "scope": "openid",
                    "code_challenge_method": "S256",
                    "token_endpoint_auth_method": "client_secret_basic" if secret else "none",
                    "timeout": 10.0,
                    **self._client_kwargs,
                },
            )
            self._clients[number] = client
        return client

    async def start(self, request: Request, number: int, next_page: str) -> Any:
        """The redirect to the issuer's authorization endpoint (``state``, ``nonce``, PKCE kept in the session)."""
        client = self.client(number)
        request.session[_SESSION_ISSUER] = number
        request.session[_SESSION_NEXT] = next_page
        try:
            return await client.authorize_redirect(request, self.node.settings.base_url + CALLBACK_PATH)
        except Exception as exc:  # discovery failed: the identity provider is down or misconfigured
            raise SignInFailed("issuer-unavailable", f"the identity provider cannot be reached now ({exc})") from None

    async def finish(self, request: Request) -> tuple[Principal, str]:
        """The person the issuer vouched for (roles mapped) and the page to go on to; :class:`SignInFailed` if not."""
        number = request.session.get(_SESSION_ISSUER)
        next_page = request.session.get(_SESSION_NEXT)
        if not isinstance(number, int):
            raise SignInFailed("no-flow", "no sign-in was started in this browser; start again from the sign-in page")
        config = self.issuer(number)
        client = self.client(number)
        params = request.query_params
        if params.get("error"):
            raise SignInFailed("issuer-refused", f"the identity provider said: {params.get('error')}")
        state, code = params.get("state"), params.get("code")
        data = await client.framework.get_state_data(request.session, state) if state else None
        if not data or not code:
            raise SignInFailed("bad-state", "this sign-in link is not the one this browser started; start again")
        await client.framework.clear_state_data(request.session, state)
        try:
            token = await client.fetch_access_token(
                code=code, redirect_uri=data.get("redirect_uri"), code_verifier=data.get("code_verifier")
            )
        except Exception as exc:  # the code exchange failed: expired, used, or the provider refused it
            raise SignInFailed("code-exchange", f"the identity provider did not accept the sign-in ({exc})") from None
        id_token = token.get("id_token") if isinstance(token, dict) else None
        if not isinstance(id_token, str):
            raise SignInFailed("no-id-token", "the identity provider sent no ID token")
        verifier = authenticator_for(self.node).oidc
        try:
            principal: Principal = await run_in_threadpool(verifier.verify, id_token, config.issuer)
        except TokenInvalid as exc:
            raise SignInFailed(f"id-token:{exc.reason}", f"the ID token cannot be trusted: {exc.detail}") from None
        except NodeError as exc:
            raise SignInFailed("issuer-keys", exc.detail) from None
        if _claim(id_token, "nonce") != data.get("nonce"):
            raise SignInFailed("bad-nonce", "the ID token was not issued for this sign-in")
        return principal, next_page if isinstance(next_page, str) else "/ui/"


def _claim(token: str, name: str) -> Any:
    # Read only after the verifier has checked the signature: the payload is then the issuer's word.
    payload = token.split(".")[1]
    return json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4))).get(name)


def oidc_of(node: Node) -> OidcSignIn:
    """The node's sign-in clients (built on first use; a test may put its own in ``node.extensions``)."""
    sign_in = node.extensions.get(EXTENSION)
    if not isinstance(sign_in, OidcSignIn):
        sign_in = OidcSignIn(node)
        node.extensions[EXTENSION] = sign_in
    return sign_in
