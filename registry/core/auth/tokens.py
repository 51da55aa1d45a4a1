"""Node-issued access tokens (RFC 9068 JWT profile): minting, and checking them on every protected request.

A token is an EdDSA JWT with ``typ: at+jwt``, ``iss`` = ``aud`` = the node's base URL, ``sub`` = ``client_id``
= the client, ``scope`` = the roles granted, and at most 15 minutes of life. Checking one costs an Ed25519
verify the first time a process sees it (then a cache hit: the same bytes verify the same way) and, every
time, one primary-key read of the client, so a revoked client's tokens stop working at once in every worker.
"""

from __future__ import annotations

import secrets
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Engine

from registry.core.auth.errors import TokenInvalid
from registry.core.auth.principal import Principal
from registry.core.auth.service import ROLE_VALUES, ClientStatus, client_status
from registry.core.db import utcnow
from registry.core.keys import KeyRing
from registry.core.signing import TYP_ACCESS_TOKEN, SignatureInvalid, decode_jwt, encode_jwt

MAX_TTL_SECONDS = 900
LEEWAY_SECONDS = 30.0


@dataclass(frozen=True)
class IssuedToken:
    """An access token and what the token response says about it."""

    access_token: str
    expires_in: int
    scope: str
    jti: str
    expires_at: datetime

    def response(self) -> dict[str, Any]:
        """The RFC 6749 §5.1 token response body."""
        return {
            "access_token": self.access_token,
            "token_type": "Bearer",
            "expires_in": self.expires_in,
            "scope": self.scope,
        }


def issue_access_token(
    keys: KeyRing,
    *,
    base_url: str,
    client_id: str,
    roles: Iterable[str],
    ttl_seconds: int = MAX_TTL_SECONDS,
    now: datetime | None = None,
) -> IssuedToken:
    """Sign an access token for ``client_id`` holding ``roles`` with the node's active key."""
    ttl = max(1, min(ttl_seconds, MAX_TTL_SECONDS))
    issued = (now or utcnow()).replace(microsecond=0)
    expires = issued + timedelta(seconds=ttl)
    scope = " ".join(sorted(set(roles)))
    jti = secrets.token_urlsafe(16)
    claims = {
        "iss": base_url,
        "aud": base_url,
        "sub": client_id,
        "client_id": client_id,
        "iat": int(issued.timestamp()),
        "nbf": int(issued.timestamp()),
        "exp": int(expires.timestamp()),
        "jti": jti,
        "scope": scope,
    }
    token = encode_jwt(claims, keys.active, typ=TYP_ACCESS_TOKEN)
    return IssuedToken(access_token=token, expires_in=ttl, scope=scope, jti=jti, expires_at=expires)


@dataclass(frozen=True)
class _Verified:
    subject: str
    scope_roles: frozenset[str]
    expires_at: datetime
    token_id: str | None


class VerifiedTokenCache:
    """Tokens whose signature and claims already checked out, until they expire: a bounded LRU.

    Safe because a token is immutable bytes: the same bytes verify the same way every time, and expiry and
    the client's revocation are still checked on every use.
    """

    def __init__(self, max_entries: int = 4096) -> None:
        self.max_entries = max_entries
        self._entries: OrderedDict[str, _Verified] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, token: str) -> _Verified | None:
        with self._lock:
            entry = self._entries.get(token)
            if entry is not None:
                self._entries.move_to_end(token)
            return entry

    def put(self, token: str, entry: _Verified) -> None:
        with self._lock:
            self._entries[token] = entry
            self._entries.move_to_end(token)
            while len(self._entries) > self.max_entries:
                self._entries.popitem(last=False)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()


StatusLookup = Callable[[str], ClientStatus | None]


class NodeTokenVerifier:
    """Checks access tokens this node issued: signature (EdDSA, any key of the ring), ``typ``, ``iss``, ``aud``,
    ``exp``/``nbf``, then the client: known, not revoked, and still holding the roles the token names."""

    def __init__(
        self,
        *,
        keys: KeyRing,
        base_url: str,
        engine: Engine | None = None,
        status: StatusLookup | None = None,
        cache: VerifiedTokenCache | None = None,
    ) -> None:
        if status is None:
            if engine is None:
                raise ValueError("NodeTokenVerifier needs an engine or a status lookup")
            bound_engine = engine

            def status(client_id: str) -> ClientStatus | None:
                return client_status(bound_engine, client_id)

        self.keys = keys
        self.base_url = base_url
        self._status = status
        self.cache = cache if cache is not None else VerifiedTokenCache()

    def _resolve(self, kid: str) -> Any:
        key = self.keys.get(kid)
        return key.public if key is not None else None

    def _verify_signature(self, token: str) -> _Verified:
        try:
            claims, _kid = decode_jwt(
                token,
                typ=TYP_ACCESS_TOKEN,
                resolve=self._resolve,
                audience=self.base_url,
                issuer=self.base_url,
                leeway=LEEWAY_SECONDS,
                require=("exp", "iat", "jti", "sub", "scope"),
            )
        except SignatureInvalid as exc:
            raise TokenInvalid(exc.reason, exc.detail) from None
        subject, scope, exp = claims.get("sub"), claims.get("scope"), claims.get("exp")
        if not isinstance(subject, str) or not isinstance(scope, str) or not isinstance(exp, int | float):
            raise TokenInvalid("malformed", "token claims sub, scope and exp have the wrong types")
        if exp - float(claims.get("iat", exp)) > MAX_TTL_SECONDS + LEEWAY_SECONDS:
            raise TokenInvalid("lifetime-too-long", "access tokens live at most 15 minutes")
        jti = claims.get("jti")
        return _Verified(
            subject=subject,
            scope_roles=frozenset(scope.split()) & ROLE_VALUES,
            expires_at=datetime.fromtimestamp(exp, UTC),
            token_id=jti if isinstance(jti, str) else None,
        )

    def verify(self, token: str, *, now: datetime | None = None) -> Principal:
        """The principal a node-issued token stands for, or :class:`TokenInvalid` with the reason."""
        verified = self.cache.get(token)
        if verified is None:
            verified = self._verify_signature(token)
            self.cache.put(token, verified)
        if (now or utcnow()) >= verified.expires_at + timedelta(seconds=LEEWAY_SECONDS):
            raise TokenInvalid("expired", "token has expired")
        status = self._status(verified.subject)
        if status is None:
            raise TokenInvalid("unknown-client", "the token's client is not registered on this node")
        if status.revoked:
            raise TokenInvalid("client-revoked", "the token's client has been revoked")
        return Principal(
            subject=verified.subject,
            actor_type="client",
            roles=verified.scope_roles & status.roles,
            issuer=self.base_url,
            expires_at=verified.expires_at,
            token_id=verified.token_id,
        )
