"""Refusals of the resource side of auth, rendered as problem+json with an RFC 6750 challenge.

Every 401 carries ``WWW-Authenticate: Bearer …`` so a client library knows to fetch a (new) token; every
403 names the roles the route admits. The token endpoint's own errors are not here: RFC 6749 §5.2 fixes
their shape (``{"error": …}``), see :mod:`registry.core.auth.server`.
"""

from __future__ import annotations

from collections.abc import Iterable

from registry.core.errors import Conflict, Forbidden, NotFound, Unauthenticated, ValidationFailed

REALM = "rcc-node"


def _quoted(text: str) -> str:
    # RFC 6750 §3 attribute values are quoted-strings; keep them to printable ASCII without quotes.
    return "".join(ch for ch in text if 0x20 <= ord(ch) < 0x7F and ch not in '"\\')


class TokenMissing(Unauthenticated):
    """No bearer token at all (RFC 6750 §3.1: the challenge then carries no error code)."""

    code = "token-missing"
    title = "Authentication required"

    def __init__(self) -> None:
        super().__init__(
            "send an access token: Authorization: Bearer <token> (get one from POST /oauth/token)",
            headers={"WWW-Authenticate": f'Bearer realm="{REALM}"'},
        )


class TokenInvalid(Unauthenticated):
    """A bearer token that cannot be trusted; ``reason`` is the stable code the audit entry records."""

    code = "invalid-token"
    title = "Invalid access token"

    def __init__(self, reason: str, detail: str | None = None) -> None:
        self.reason = reason
        description = detail or reason
        super().__init__(
            description,
            headers={
                "WWW-Authenticate": (
                    f'Bearer realm="{REALM}", error="invalid_token", error_description="{_quoted(description)}"'
                )
            },
            reason=reason,
        )


class MissingRole(Forbidden):
    """A valid token whose roles are not among those the route admits; ``required`` names them."""

    code = "missing-role"
    title = "Missing role"

    def __init__(self, required: Iterable[str], held: Iterable[str]) -> None:
        self.required = sorted(required)
        self.held = sorted(held)
        scope = " ".join(self.required)
        super().__init__(
            f"this needs one of the roles: {', '.join(self.required)}",
            headers={"WWW-Authenticate": f'Bearer realm="{REALM}", error="insufficient_scope", scope="{scope}"'},
            required_roles=self.required,
            roles=self.held,
        )


class ClientNotFound(NotFound):
    """No client with this id on this node."""

    code = "client-not-found"
    title = "No such client"

    def __init__(self, client_id: str) -> None:
        self.client_id = client_id
        super().__init__(f"no client {client_id!r} on this node", client_id=client_id)


class ClientAlreadyRevoked(Conflict):
    """The client was revoked before; revocation is final."""

    code = "client-revoked"
    title = "Client already revoked"

    def __init__(self, client_id: str) -> None:
        self.client_id = client_id
        super().__init__(f"client {client_id!r} is already revoked", client_id=client_id)


class ClientInvalid(ValidationFailed):
    """A client registration that cannot be stored (bad role, bad JWK); ``field`` names what is wrong."""

    code = "client-invalid"
    title = "Invalid client registration"

    def __init__(self, field: str, message: str) -> None:
        self.field = field
        self.message = message
        super().__init__(f"{field}: {message}", errors=[{"path": f"/{field}", "message": message}])
