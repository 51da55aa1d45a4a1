"""What the audit log needs to know about a request, gathered while the request runs.

Every request gets one :class:`AuditContext` on ``request.state.audit`` (set by the audit middleware).
Whoever learns something fills it in: authentication sets the actor, the federation guard sets the peer,
the policy decision sets dataset, purpose, agreement, decision and reason, a route sets the result count.
The audit middleware turns it into the entry once the response is known. Never put child-level data or
search criteria here: only identifiers of actors, agreements and datasets, and digests.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from starlette.requests import Request

ActorType = Literal["anonymous", "client", "user", "node", "operator"]
Decision = Literal["permit", "deny"]


@dataclass
class AuditContext:
    """Mutable facts about one request, for its audit entry."""

    actor_type: ActorType = "anonymous"
    actor_id: str | None = None
    roles: list[str] = field(default_factory=list)
    issuer: str | None = None
    dataset: str | None = None
    purpose: str | None = None
    agreement: str | None = None
    decision: Decision | None = None
    reason: str | None = None
    peer: str | None = None
    result_count: int | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    # Set once the request's entry has committed inside its own transaction (``append_in``): the audit
    # middleware then writes no second entry for it.
    recorded: bool = False

    def deny(self, reason: str) -> None:
        """Mark the request refused, keeping the first reason given."""
        if self.decision != "deny":
            self.decision, self.reason = "deny", reason

    def permit(self, reason: str | None = None) -> None:
        """Mark the request allowed (unless already refused)."""
        if self.decision is None:
            self.decision, self.reason = "permit", reason


def audit_context(request: Request) -> AuditContext:
    """The request's audit context, created on first use (so it exists even outside the middleware)."""
    context = getattr(request.state, "audit", None)
    if not isinstance(context, AuditContext):
        context = AuditContext()
        request.state.audit = context
    return context
