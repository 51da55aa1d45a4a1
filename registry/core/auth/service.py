"""Clients of this node: registration, listing, revocation, secret checks and the lock-out counter.

Secrets are 256-bit random strings made here, stored only as scrypt hashes (parameters kept in the hash so
they can be raised later) and compared in constant time. The functions follow the house vocabulary: session
first, the rest keyword-only, ``flush()`` never ``commit()`` — except the lock-out bookkeeping, which must
survive the refusal it accompanies and so runs in its own short transaction on the engine.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import jwt
from sqlalchemy import Engine, bindparam, case, delete, select, update
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col

from registry.core.auth.errors import ClientAlreadyRevoked, ClientInvalid, ClientNotFound
from registry.core.auth.jwks import key_algorithms
from registry.core.auth.models import AuthMethod, Client, ClientAssertionJti, ClientCreate, ClientCredentials
from registry.core.db import utcnow
from registry.core.keys import b64url, b64url_decode
from schemas.vocabulary import Role

# scrypt at n=2^14, r=8, p=1 costs ~16 MiB and tens of milliseconds; the secrets are random 256-bit strings,
# so this guards a leaked table against nothing weaker than brute force of a 2^256 space — it is defence in depth.
SCRYPT_N, SCRYPT_R, SCRYPT_P, SCRYPT_DKLEN = 2**14, 8, 1, 32
_SCRYPT_PREFIX = "scrypt"
ROLE_VALUES = frozenset(role.value for role in Role)

_PRIVATE_JWK_MEMBERS = {"d", "p", "q", "dp", "dq", "qi", "k", "oth"}


def hash_secret(secret: str) -> str:
    """An scrypt hash of ``secret`` with a fresh salt: ``scrypt$n$r$p$salt$hash``."""
    salt = secrets.token_bytes(16)
    digest = hashlib.scrypt(
        secret.encode(), salt=salt, n=SCRYPT_N, r=SCRYPT_R, p=SCRYPT_P, dklen=SCRYPT_DKLEN, maxmem=64 * 1024 * 1024
    )
    return f"{_SCRYPT_PREFIX}${SCRYPT_N}${SCRYPT_R}${SCRYPT_P}${b64url(salt)}${b64url(digest)}"


def verify_secret(secret: str, stored: str) -> bool:
    """True if ``secret`` hashes to ``stored``; compared in constant time; False for any malformed hash."""
    try:
        prefix, n, r, p, salt, digest = stored.split("$")
        if prefix != _SCRYPT_PREFIX:
            return False
        expected = b64url_decode(digest)
        actual = hashlib.scrypt(
            secret.encode(),
            salt=b64url_decode(salt),
            n=int(n),
            r=int(r),
            p=int(p),
            dklen=len(expected),
            maxmem=64 * 1024 * 1024,
        )
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(actual, expected)


def _check_jwk(jwk: dict[str, Any]) -> str:
    if _PRIVATE_JWK_MEMBERS & jwk.keys():
        raise ClientInvalid("jwk", "this is a private or symmetric key; register the public key only")
    if not key_algorithms(jwk):
        raise ClientInvalid("jwk", "unsupported key: use an OKP Ed25519, EC P-256/384/521 or RSA public key")
    try:
        jwt.PyJWK(jwk)
    except (jwt.PyJWTError, ValueError, TypeError, KeyError) as exc:
        raise ClientInvalid("jwk", f"not a usable public key: {exc}") from None
    return json.dumps(jwk, sort_keys=True, separators=(",", ":"))


def new_client_id(name: str) -> str:
    """A readable, unguessable id: a slug of the name and 8 random hex digits (audit entries stay legible)."""
    slug = re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")[:40].strip("-") or "client"
    return f"{slug}-{secrets.token_hex(4)}"


def create(session: Session, *, data: ClientCreate, client_id: str | None = None) -> ClientCredentials:
    """Register a client; returns it with its clear secret, which is never shown again.

    With a JWK the client authenticates by ``private_key_jwt`` and gets no secret; otherwise by
    ``client_secret_basic`` with a new random secret.
    """
    roles = sorted({Role(role).value for role in data.roles})
    if not roles:
        raise ClientInvalid("roles", "a client needs at least one role")
    secret: str | None = None
    method: AuthMethod
    if data.jwk is not None:
        method, jwk_text, secret_hash = "private_key_jwt", _check_jwk(data.jwk), None
    else:
        secret = secrets.token_urlsafe(32)
        method, jwk_text, secret_hash = "client_secret_basic", None, hash_secret(secret)
    client = Client(
        id=client_id or new_client_id(data.name),
        name=data.name,
        roles=" ".join(roles),
        auth_method=method,
        secret_hash=secret_hash,
        jwk=jwk_text,
        created_at=utcnow(),
    )
    session.add(client)
    session.flush()
    return ClientCredentials(
        client_id=client.id,
        name=client.name,
        roles=roles,
        auth_method=client.auth_method,
        created_at=client.created_at,
        client_secret=secret,
    )


def get(session: Session, *, client_id: str) -> Client | None:
    """A client by id, revoked or not."""
    return session.get(Client, client_id)


def get_client_or_raise(session: Session, *, client_id: str) -> Client:
    """A client by id, or :class:`ClientNotFound`."""
    client = get(session, client_id=client_id)
    if client is None:
        raise ClientNotFound(client_id)
    return client


def list_clients(session: Session, *, include_revoked: bool = True) -> list[Client]:
    """Every client, oldest first."""
    statement = select(Client).order_by(col(Client.created_at), col(Client.id))
    if not include_revoked:
        statement = statement.where(col(Client.revoked_at).is_(None))
    return list(session.scalars(statement))


def revoke(session: Session, *, client_id: str) -> Client:
    """Revoke a client for good: it can get no new token, and tokens it holds stop working on their next use."""
    client = get_client_or_raise(session, client_id=client_id)
    if client.revoked_at is not None:
        raise ClientAlreadyRevoked(client_id)
    client.revoked_at = utcnow()
    session.add(client)
    session.flush()
    return client


@dataclass(frozen=True)
class ClientStatus:
    """What validating a token needs to know about its client, read in one primary-key lookup."""

    roles: frozenset[str]
    revoked: bool


_STATUS_SQL = {
    "qmark": "SELECT roles, revoked_at FROM auth_client WHERE id = ?",
    "pyformat": "SELECT roles, revoked_at FROM auth_client WHERE id = %(id)s",
    "format": "SELECT roles, revoked_at FROM auth_client WHERE id = %s",
    "named": "SELECT roles, revoked_at FROM auth_client WHERE id = :id",
}


def client_status(engine: Engine, client_id: str) -> ClientStatus | None:
    """The client's current roles and whether it is revoked (None if unknown): one primary-key read per call.

    Runs on every request carrying a node-issued token — that is what makes revocation take effect at once in
    every worker — so it goes straight to a pooled DBAPI connection with fixed SQL: measured on SQLite at
    ~25 µs, against ~95 µs through ``exec_driver_sql`` and ~330 µs building a Core ``select`` per call.
    """
    style = engine.dialect.paramstyle
    params: Any = {"id": client_id} if style in ("pyformat", "named") else (client_id,)
    connection = engine.raw_connection()
    try:
        cursor = connection.cursor()
        try:
            cursor.execute(_STATUS_SQL[style], params)
            row = cursor.fetchone()
        finally:
            cursor.close()
    finally:
        connection.close()
    if row is None:
        return None
    return ClientStatus(roles=frozenset(str(row[0]).split()), revoked=row[1] is not None)


@dataclass(frozen=True)
class ClientSnapshot:
    """A client as the token endpoint reads it on every request: plain values, no ORM state."""

    id: str
    roles: str
    auth_method: str
    secret_hash: str | None
    jwk: str | None
    revoked_at: datetime | None
    failed_auth_count: int
    locked_until: datetime | None

    @property
    def role_set(self) -> frozenset[str]:
        """The roles as a set."""
        return frozenset(self.roles.split())


_CLIENT_TABLE = Client.__table__  # type: ignore[attr-defined]
_SNAPSHOT_BY_ID = select(*(_CLIENT_TABLE.c[name] for name in ClientSnapshot.__dataclass_fields__)).where(
    _CLIENT_TABLE.c.id == bindparam("client_id")
)


def get_snapshot(engine: Engine, *, client_id: str) -> ClientSnapshot | None:
    """A client by id, revoked or not, read in its own short connection.

    A prebuilt Core statement and a dataclass instead of ``Session.get`` and an ORM instance: about a third
    of the cost (measured), and the token endpoint pays it on every request.
    """
    with engine.connect() as connection:
        row = connection.execute(_SNAPSHOT_BY_ID, {"client_id": client_id}).first()
    return ClientSnapshot(*row) if row is not None else None


@dataclass(frozen=True)
class LockState:
    """Whether a client is locked out of the token endpoint, and until when."""

    locked: bool
    until: datetime | None
    failures: int


def record_failure(
    engine: Engine, *, client_id: str, max_failures: int, window: timedelta, lockout: timedelta
) -> LockState:
    """Count one failed authentication; lock the client out for ``lockout`` once ``max_failures`` fall in ``window``.

    Its own transaction (the request's fails), and a single conditional UPDATE so concurrent workers never
    lose a count.
    """
    now = utcnow()
    table = Client.__table__  # type: ignore[attr-defined]
    fresh_window = (table.c.failed_auth_since.is_(None)) | (table.c.failed_auth_since < now - window)
    with engine.begin() as connection:
        connection.execute(
            update(table)
            .where(table.c.id == client_id)
            .values(
                failed_auth_since=case((fresh_window, now), else_=table.c.failed_auth_since),
                failed_auth_count=case((fresh_window, 1), else_=table.c.failed_auth_count + 1),
            )
        )
        row = connection.execute(select(table.c.failed_auth_count).where(table.c.id == client_id)).first()
        failures = int(row[0]) if row is not None else 0
        if row is not None and failures >= max_failures:
            until = now + lockout
            connection.execute(
                update(table)
                .where(table.c.id == client_id)
                .values(locked_until=until, failed_auth_count=0, failed_auth_since=None)
            )
            return LockState(locked=True, until=until, failures=failures)
    return LockState(locked=False, until=None, failures=failures)


def record_success(engine: Engine, *, client: Client | ClientSnapshot) -> None:
    """Clear the failure count after a good authentication (no write when there is nothing to clear)."""
    if client.failed_auth_count == 0 and client.locked_until is None:
        return
    table = Client.__table__  # type: ignore[attr-defined]
    with engine.begin() as connection:
        connection.execute(
            update(table)
            .where(table.c.id == client.id)
            .values(failed_auth_count=0, failed_auth_since=None, locked_until=None)
        )


def lock_state(client: Client | ClientSnapshot, *, now: datetime | None = None) -> LockState:
    """Whether ``client`` (as loaded) is locked out right now."""
    now = now or utcnow()
    locked = client.locked_until is not None and client.locked_until > now
    return LockState(locked=locked, until=client.locked_until if locked else None, failures=client.failed_auth_count)


_JTI_TABLE = ClientAssertionJti.__table__  # type: ignore[attr-defined]
_PURGE_JTIS = delete(_JTI_TABLE).where(_JTI_TABLE.c.expires_at < bindparam("now"))
_INSERT_JTI = _JTI_TABLE.insert()


def use_assertion_jti(engine: Engine, *, client_id: str, jti: str, expires_at: datetime) -> bool:
    """Record a client assertion's ``jti``; False if it was used before (a replay). Expired ids are purged.

    Its own short transaction, committed before the token is issued, so a replay is caught by any worker;
    the statements are built once (building them per call cost as much as running them).
    """
    try:
        with engine.begin() as connection:
            connection.execute(_PURGE_JTIS, {"now": utcnow()})
            connection.execute(_INSERT_JTI, {"client_id": client_id, "jti": jti, "expires_at": expires_at})
    except IntegrityError:
        return False
    return True
