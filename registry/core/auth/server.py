"""The OAuth 2.0 token endpoint's engine: authlib's ``AuthorizationServer`` adapted to this node.

authlib ships framework glue for Flask and Django only, so this module supplies the Starlette side itself:
the route parses the ``application/x-www-form-urlencoded`` body, and :meth:`NodeAuthorizationServer.token`
hands authlib a ready :class:`TokenRequest` and turns its ``(status, body, headers)`` into a response.
authlib runs the RFC 6749 §4.4 client credentials grant, the §5.2 errors and the client-authentication
registry; the two methods registered in it are this node's:

* ``client_secret_basic`` — scrypt-hashed secret, compared in constant time; a process-local cache keyed by
  an HMAC of the presented secret spares the scrypt cost on the next request with the same, correct secret.
* ``private_key_jwt`` — RFC 7523 client assertion (``iss`` = ``sub`` = client id, ``aud`` = this token
  endpoint or the node's base URL, short ``exp``, single-use ``jti``), verified with PyJWT against the
  client's registered public JWK (authlib's own assertion class decodes with joserfc; the house does JOSE
  with PyJWT and ``cryptography``).

Both count failures per client and lock the client out for a while after too many (429, ``Retry-After``),
before any secret or signature is checked. Every refusal leaves its reason on the request for the audit entry.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import math
import secrets
import threading
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import jwt
from authlib.oauth2.rfc6749 import (
    AuthorizationServer,
    ClientCredentialsGrant,
    InvalidClientError,
    InvalidRequestError,
    InvalidScopeError,
    OAuth2Error,
    OAuth2Request,
)
from authlib.oauth2.rfc6749.requests import BasicOAuth2Payload
from authlib.oauth2.rfc6749.util import extract_basic_authorization, scope_to_list
from authlib.oauth2.rfc7523 import JWTBearerClientAssertion

from registry.core.auth.jwks import key_algorithms
from registry.core.auth.service import (
    ROLE_VALUES,
    ClientSnapshot,
    get_snapshot,
    lock_state,
    record_failure,
    record_success,
    use_assertion_jti,
    verify_secret,
)
from registry.core.auth.tokens import issue_access_token
from registry.core.db import utcnow
from registry.core.node import Node

ASSERTION_TYPE = JWTBearerClientAssertion.CLIENT_ASSERTION_TYPE
MAX_ASSERTION_LIFETIME = timedelta(minutes=10)
ASSERTION_LEEWAY_SECONDS = 60
GENERIC_FAILURE = "client authentication failed"
log = logging.getLogger("rcc.auth")


class ClientLockedOut(OAuth2Error):  # type: ignore[misc]
    """Too many failed authentications for one client: refused without checking, until ``retry_after``."""

    error = "invalid_client"
    status_code = 429

    def __init__(self, retry_after: int) -> None:
        self.retry_after = retry_after
        super().__init__(description="too many failed authentications for this client; try again later")

    def get_headers(self) -> list[tuple[str, str]]:
        headers: list[tuple[str, str]] = super().get_headers()
        return [*headers, ("Retry-After", str(self.retry_after))]


class TokenRequest(OAuth2Request):  # type: ignore[misc]
    """authlib's request object built from what the route already parsed.

    ``OAuth2Request.__init__`` refuses plain ``http`` URIs; whether the node sits behind TLS is the
    deployment's decision (its ``base_url``), so that check is skipped here. ``refusal`` and
    ``client_id_attempted`` carry evidence back to the audit entry.
    """

    def __init__(self, uri: str, headers: dict[str, str], form: dict[str, str]) -> None:
        self.method = "POST"
        self.uri = uri
        self.headers = headers
        self._body = None
        self._form = form
        self.payload = BasicOAuth2Payload(form)
        self.client: OAuthClient | None = None
        self.auth_method: str | None = None
        self.user = None
        self.authorization_code = None
        self.refresh_token = None
        self.credential = None
        self._scope = None
        self.refusal: str | None = None
        self.client_id_attempted: str | None = None
        self.issued: dict[str, Any] | None = None

    @property
    def form(self) -> dict[str, str]:
        return self._form

    @property
    def args(self) -> dict[str, str]:
        return {}


@dataclass
class OAuthClient:
    """A stored client as authlib's ``ClientMixin`` sees it."""

    row: ClientSnapshot

    @property
    def roles(self) -> frozenset[str]:
        return self.row.role_set

    def get_client_id(self) -> str:
        return self.row.id

    def get_default_redirect_uri(self) -> None:
        return None

    def get_allowed_scope(self, scope: str | None) -> str:
        requested = set(scope_to_list(scope) or [])
        return " ".join(sorted(requested & self.roles)) if requested else " ".join(sorted(self.roles))

    def check_redirect_uri(self, redirect_uri: str) -> bool:  # noqa: ARG002 - no redirects in this grant
        return False

    def check_client_secret(self, client_secret: str) -> bool:
        return self.row.secret_hash is not None and verify_secret(client_secret, self.row.secret_hash)

    def check_endpoint_auth_method(self, method: str, endpoint: str) -> bool:
        return endpoint == "token" and method == self.row.auth_method

    def check_response_type(self, response_type: str) -> bool:  # noqa: ARG002 - token endpoint only
        return False

    def check_grant_type(self, grant_type: str) -> bool:
        return grant_type == "client_credentials"


class NodeClientCredentialsGrant(ClientCredentialsGrant):  # type: ignore[misc]
    """RFC 6749 §4.4 with this node's two client-authentication methods and role-as-scope checking."""

    TOKEN_ENDPOINT_AUTH_METHODS = ["client_secret_basic", "private_key_jwt"]  # noqa: RUF012 - authlib's API

    def validate_requested_scope(self) -> None:
        """Every role asked for must be a role, and one the client holds (``invalid_scope`` otherwise)."""
        requested = set(scope_to_list(self.request.payload.scope) or [])
        unknown = requested - ROLE_VALUES
        if unknown:
            self.request.refusal = "unknown-scope"
            raise InvalidScopeError(description=f"unknown roles: {' '.join(sorted(unknown))}")
        missing = requested - self.client.roles
        if missing:
            self.request.refusal = "scope-not-granted"
            raise InvalidScopeError(description=f"roles not granted to this client: {' '.join(sorted(missing))}")


@dataclass
class _SecretCache:
    """Client id → (stored hash, HMAC of the secret that matched it) under a per-process random key."""

    key: bytes = field(default_factory=lambda: secrets.token_bytes(32))
    entries: dict[str, tuple[str, bytes]] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def _mac(self, secret: str) -> bytes:
        return hmac.new(self.key, secret.encode(), hashlib.sha256).digest()

    def matches(self, client: ClientSnapshot, secret: str) -> bool:
        entry = self.entries.get(client.id)
        return entry is not None and entry[0] == client.secret_hash and hmac.compare_digest(entry[1], self._mac(secret))

    def remember(self, client: ClientSnapshot, secret: str) -> None:
        if client.secret_hash is None:
            return
        with self.lock:
            if len(self.entries) > 10_000:
                self.entries.clear()
            self.entries[client.id] = (client.secret_hash, self._mac(secret))


class NodeAuthorizationServer(AuthorizationServer):  # type: ignore[misc]
    """One node's token endpoint: authlib's server with this node's clients, tokens and lock-out."""

    def __init__(self, node: Node) -> None:
        super().__init__(scopes_supported=sorted(ROLE_VALUES))
        self.node = node
        self.token_url = f"{node.settings.base_url}/oauth/token"
        self._secrets = _SecretCache()
        self.register_grant(NodeClientCredentialsGrant)
        self.register_token_generator("default", self._generate_token)
        self.register_client_auth_method("client_secret_basic", self._authenticate_basic)
        self.register_client_auth_method("private_key_jwt", self._authenticate_assertion)

    # --- authlib hooks -------------------------------------------------------------------------------------

    def query_client(self, client_id: str) -> OAuthClient | None:
        """A usable (not revoked) client by id."""
        row = self._load(client_id)
        return OAuthClient(row) if row is not None and row.revoked_at is None else None

    def save_token(self, token: dict[str, Any], request: TokenRequest) -> None:
        # Access tokens are self-contained JWTs; nothing to store. Keep the facts for the audit entry.
        request.issued = {"scope": token.get("scope"), "expires_in": token.get("expires_in")}

    def send_signal(self, name: str, *args: Any, **kwargs: Any) -> None:
        """authlib's signal hook; nothing listens."""

    def handle_response(
        self, status: int, body: Any, headers: list[tuple[str, str]]
    ) -> tuple[int, Any, list[tuple[str, str]]]:
        return status, body, headers

    def _generate_token(
        self,
        grant_type: str,  # noqa: ARG002 - only client_credentials is registered
        client: OAuthClient,
        user: Any = None,  # noqa: ARG002
        scope: str | None = None,
        expires_in: int | None = None,  # noqa: ARG002
        include_refresh_token: bool = False,  # noqa: ARG002 - RFC 6749 §4.4.3: no refresh token
    ) -> dict[str, Any]:
        issued = issue_access_token(
            self.node.keys,
            base_url=self.node.settings.base_url,
            client_id=client.get_client_id(),
            roles=client.get_allowed_scope(scope).split(),
            ttl_seconds=self.node.settings.access_token_ttl_seconds,
        )
        return issued.response()

    # --- the one entry point ---------------------------------------------------------------------------------

    def token(self, request: TokenRequest) -> tuple[int, Any, list[tuple[str, str]]]:
        """Run the token endpoint for one parsed request; ``(status, body, headers)`` in RFC 6749 shape."""
        if "Authorization" in request.headers and request.form.get("client_assertion"):
            request.refusal = "multiple-client-auth"
            error = InvalidRequestError(description="use one client authentication method, not several")
            return self.handle_error_response(request, error)  # type: ignore[no-any-return]
        try:
            return self.create_token_response(request)  # type: ignore[no-any-return]
        finally:
            if request.refusal is None and request.issued is None:
                request.refusal = _default_refusal(request)

    def create_oauth2_request(self, request: TokenRequest) -> TokenRequest:
        return request

    # --- client authentication -----------------------------------------------------------------------------

    def _load(self, client_id: str) -> ClientSnapshot | None:
        return get_snapshot(self.node.engine, client_id=client_id)

    def _usable(self, request: TokenRequest, client_id: str, method: str) -> ClientSnapshot:
        """The client named by the request, if it may try ``method`` now; refuses unknown, revoked, locked out."""
        request.client_id_attempted = client_id
        row = self._load(client_id)
        if row is None:
            request.refusal = "unknown-client"
        elif row.revoked_at is not None:
            request.refusal = "client-revoked"
        elif row.auth_method != method:
            request.refusal = "wrong-auth-method"
        if row is None or request.refusal is not None:
            raise InvalidClientError(status_code=401, description=GENERIC_FAILURE)
        state = lock_state(row)
        if state.locked and state.until is not None:
            request.refusal = "client-locked-out"
            raise ClientLockedOut(max(1, math.ceil((state.until - utcnow()).total_seconds())))
        return row

    def _failed(self, request: TokenRequest, row: ClientSnapshot, reason: str) -> InvalidClientError:
        settings = self.node.settings
        request.refusal = reason
        state = record_failure(
            self.node.engine,
            client_id=row.id,
            max_failures=settings.auth_max_failures,
            window=timedelta(seconds=settings.auth_failure_window_seconds),
            lockout=timedelta(seconds=settings.auth_lockout_seconds),
        )
        if state.locked:
            request.refusal = f"{reason}; client-locked-out"
            log.warning("client %s locked out after %d failed authentications", row.id, state.failures)
        return InvalidClientError(status_code=401, description=GENERIC_FAILURE)

    def _authenticate_basic(self, _query_client: Any, request: TokenRequest) -> OAuthClient | None:
        client_id, secret = extract_basic_authorization(request.headers)
        if not client_id:
            return None
        row = self._usable(request, client_id, "client_secret_basic")
        if not secret:
            raise self._failed(request, row, "no-secret")
        if self._secrets.matches(row, secret):
            record_success(self.node.engine, client=row)
            return OAuthClient(row)
        if row.secret_hash is None or not verify_secret(secret, row.secret_hash):
            raise self._failed(request, row, "wrong-secret")
        self._secrets.remember(row, secret)
        record_success(self.node.engine, client=row)
        return OAuthClient(row)

    def _authenticate_assertion(self, _query_client: Any, request: TokenRequest) -> OAuthClient | None:
        if request.form.get("client_assertion_type") != ASSERTION_TYPE or not request.form.get("client_assertion"):
            return None
        assertion = request.form["client_assertion"]
        try:
            header = jwt.get_unverified_header(assertion)
            unverified = jwt.decode(assertion, options={"verify_signature": False})
        except jwt.PyJWTError:
            request.refusal = "malformed-assertion"
            raise InvalidClientError(status_code=401, description="client_assertion is not a JWT") from None
        client_id = unverified.get("sub")
        if not isinstance(client_id, str) or not client_id:
            request.refusal = "malformed-assertion"
            raise InvalidClientError(status_code=401, description="client_assertion has no sub")
        row = self._usable(request, client_id, "private_key_jwt")
        claims = self._verify_assertion(request, row, assertion, header)
        expires_at = datetime.fromtimestamp(claims["exp"], UTC)
        if not use_assertion_jti(self.node.engine, client_id=row.id, jti=str(claims["jti"]), expires_at=expires_at):
            raise self._failed(request, row, "assertion-replayed")
        record_success(self.node.engine, client=row)
        return OAuthClient(row)

    def _verify_assertion(
        self, request: TokenRequest, row: ClientSnapshot, assertion: str, header: dict[str, Any]
    ) -> Any:
        jwk = json.loads(row.jwk or "{}")
        algorithms = key_algorithms(jwk)
        if header.get("alg") not in algorithms:
            raise self._failed(request, row, "assertion-bad-algorithm")
        try:
            key = jwt.PyJWK(jwk, algorithm=header["alg"]).key
            claims = jwt.decode(
                assertion,
                key,
                algorithms=[header["alg"]],
                audience=[self.token_url, self.node.settings.base_url],
                issuer=row.id,
                leeway=ASSERTION_LEEWAY_SECONDS,
                options={"require": ["iss", "sub", "aud", "exp", "jti"]},
            )
        except jwt.PyJWTError as exc:
            log.info("client %s sent a bad assertion: %s", row.id, type(exc).__name__)
            raise self._failed(request, row, f"assertion-invalid:{type(exc).__name__}") from None
        if claims.get("sub") != row.id or not isinstance(claims.get("jti"), str):
            raise self._failed(request, row, "assertion-invalid:claims")
        lifetime = datetime.fromtimestamp(claims["exp"], UTC) - utcnow()
        if lifetime > MAX_ASSERTION_LIFETIME:
            raise self._failed(request, row, "assertion-lifetime-too-long")
        return claims


def _default_refusal(request: TokenRequest) -> str:
    grant_type = request.form.get("grant_type")
    if grant_type != "client_credentials":
        return "unsupported-grant-type" if grant_type else "missing-grant-type"
    return "no-client-authentication"
