"""Who is calling: the one shape every authenticated request is reduced to, whatever proved it.

A node-issued access token (a machine client) and an external OpenID Connect token (a person signed in at
their council's identity provider) both become a :class:`Principal`; routes and the audit log see only this.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Literal

ActorType = Literal["client", "user", "operator"]


@dataclass(frozen=True)
class Principal:
    """An authenticated caller and the roles it holds on this node.

    ``roles`` are role values (``schemas.vocabulary.Role``) already mapped to this node's vocabulary, so a
    check never needs to know which issuer the caller came from. ``issuer`` is the node's own base URL for
    node-issued tokens, or the external issuer's identifier. ``token_id`` is the token's ``jti`` when it has one.
    """

    subject: str
    actor_type: ActorType
    roles: frozenset[str]
    issuer: str
    expires_at: datetime | None
    token_id: str | None

    def has_any(self, roles: frozenset[str]) -> bool:
        """True if the principal holds at least one of ``roles``."""
        return not self.roles.isdisjoint(roles)
