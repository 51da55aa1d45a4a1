"""Storage and wire models of local auth: OAuth 2.0 clients, used client-assertion ids, the whoami view.

Secrets never leave the table class: ``Client.secret_hash`` holds an scrypt hash, and the clear secret
exists only in :class:`ClientCredentials`, returned once when the client is made.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import field_validator
from sqlalchemy import Column, ForeignKey, Index, String, Text
from sqlmodel import Field, SQLModel

from registry.core.db import UTCDateTime
from schemas.vocabulary import Role

AuthMethod = Literal["client_secret_basic", "private_key_jwt"]


class ClientBase(SQLModel):
    """What every view of a client shares."""

    name: str = Field(min_length=1, max_length=200)


class Client(ClientBase, table=True):
    """An OAuth 2.0 client of this node (RFC 6749 §2), authenticating by secret or by its registered public key.

    ``roles`` is the space-separated, sorted set of roles the client may be granted. The lock-out columns
    count failed authentications inside one window; they live on the row so every worker sees them.
    """

    __tablename__ = "auth_client"

    id: str = Field(primary_key=True, max_length=80)
    roles: str = Field(max_length=255)
    auth_method: str = Field(max_length=32)
    secret_hash: str | None = Field(default=None, max_length=255)
    jwk: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    created_at: datetime = Field(sa_column=Column(UTCDateTime, nullable=False))
    revoked_at: datetime | None = Field(default=None, sa_column=Column(UTCDateTime, nullable=True))
    failed_auth_count: int = Field(default=0)
    failed_auth_since: datetime | None = Field(default=None, sa_column=Column(UTCDateTime, nullable=True))
    locked_until: datetime | None = Field(default=None, sa_column=Column(UTCDateTime, nullable=True))

    @property
    def role_set(self) -> frozenset[str]:
        """The roles as a set."""
        return frozenset(self.roles.split())


class ClientCreate(ClientBase):
    """What an operator gives to make a client: a name, its roles, and optionally its public key (JWK)."""

    roles: list[Role] = Field(min_length=1)
    jwk: dict[str, Any] | None = None

    @field_validator("roles")
    @classmethod
    def _distinct(cls, value: list[Role]) -> list[Role]:
        return sorted(set(value))


class ClientPublic(ClientBase):
    """A client as listed: never its secret or its hash."""

    client_id: str
    roles: list[str]
    auth_method: str
    created_at: datetime
    revoked_at: datetime | None = None
    locked_until: datetime | None = None

    @classmethod
    def of(cls, client: Client) -> ClientPublic:
        """The public view of a stored client."""
        return cls(
            client_id=client.id,
            name=client.name,
            roles=sorted(client.role_set),
            auth_method=client.auth_method,
            created_at=client.created_at,
            revoked_at=client.revoked_at,
            locked_until=client.locked_until,
        )


class ClientCredentials(ClientPublic):
    """A new client and its secret, shown once (``client_secret`` is None for a ``private_key_jwt`` client)."""

    client_secret: str | None = None


class ClientAssertionJti(SQLModel, table=True):
    """``jti`` values of client assertions already used (RFC 7523 §3 item 7): each is accepted once, kept until
    the assertion expires, and the primary key makes a replay fail even when two workers race."""

    __tablename__ = "auth_assertion_jti"
    __table_args__ = (Index("ix_auth_assertion_jti_expires_at", "expires_at"),)

    client_id: str = Field(
        sa_column=Column(String(80), ForeignKey("auth_client.id", ondelete="CASCADE"), primary_key=True)
    )
    jti: str = Field(primary_key=True, max_length=255)
    expires_at: datetime = Field(sa_column=Column(UTCDateTime, nullable=False))


class WhoAmI(SQLModel):
    """The caller as this node sees it."""

    subject: str
    actor_type: str
    roles: list[str]
    issuer: str
    expires_at: datetime | None
    token_id: str | None
