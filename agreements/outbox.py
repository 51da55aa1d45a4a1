"""Telling the other parties: the outbox of agreement changes still to deliver, and the courier that delivers them.

Every change this node makes to an agreement the other parties already know of — a proposal, a signature,
a revocation, a withdrawal, a renewal — queues one delivery per other party (:func:`enqueue`) in the same
transaction as the change, so nothing is committed that the others would not eventually hear of. A
:class:`Courier` sends them: the federation layer installs one on ``node.extensions[COURIER_EXTENSION]`` that
posts to each party's ``/federation/v1/agreements/inbox`` right after the change commits, and again later,
with backoff, while a party is down. Without one (a node outside any federation) deliveries wait, queued.

What is sent is always everything this node holds about the agreement (:func:`agreements.exchange.outbox_for`),
so a delivery is idempotent and a later one covers every earlier one that failed. A delivery is marked
``delivered`` only if no newer change was queued while it was on the wire (``generation``).

Routes that change an agreement therefore own two short transactions instead of the request's one
(:func:`change_and_deliver`): the change commits *before* anything leaves the node — a peer must never hold
a signature or revocation this node could still roll back, and no database lock is held across a network
call — and the outcomes are recorded after.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Annotated, Protocol, TypeVar

import anyio.to_thread
from fastapi import Depends, Request
from sqlalchemy import update
from sqlmodel import Session, col, select

from agreements import exchange
from agreements.errors import AgreementNotFound
from agreements.models import AgreementDelivery, AgreementMessage, AgreementPublic, DeliveryPublic
from agreements.runtime import AgreementsRuntime, runtime_of
from registry.core.audit.context import AuditContext
from registry.core.db import utcnow
from registry.core.node import Node

log = logging.getLogger("rcc.agreements.outbox")

COURIER_EXTENSION = "agreements.courier"
"""``node.extensions`` slot where the federation layer puts its :class:`Courier`."""

PENDING, DELIVERED, REJECTED = "pending", "delivered", "rejected"
QUEUED_GRACE_SECONDS = 15.0
"""A change's deliveries are first sent by the request that made it; the retry loop leaves them alone this long
(longer than a courier's delivery deadline), so the two never send the same thing at once."""
FIRST_RETRY_SECONDS = 2.0
MAX_RETRY_SECONDS = 300.0
_DETAIL_CHARS = 512
T = TypeVar("T")


def retry_delay(attempts: int) -> timedelta:
    """Backoff after ``attempts`` failed attempts: 2 s, 4 s, 8 s … at most 5 minutes."""
    seconds = FIRST_RETRY_SECONDS * 2 ** max(attempts - 1, 0)
    return timedelta(seconds=min(seconds, MAX_RETRY_SECONDS))


@dataclass(frozen=True)
class Pending:
    """A delivery to make: which agreement, to whom, and the generation it was claimed at."""

    agreement_id: str
    to_node: str
    generation: int
    attempts: int


@dataclass(frozen=True)
class Attempt:
    """What became of one delivery attempt, as the courier classifies it.

    ``delivered``: the party's node stored (or already held) everything sent. ``final``: refused for good
    (not a party there, a conflicting version) — not retried until the next change. Otherwise it is retried.
    """

    outcome: str
    status: int | None = None
    detail: str | None = None
    delivered: bool = False
    final: bool = False


# --- the outbox table --------------------------------------------------------------------------------------


def enqueue(session: Session, *, agreement_id: str, parties: Iterable[str], now: datetime | None = None) -> None:
    """Queue (again) a delivery of ``agreement_id`` to each of ``parties``; in the caller's transaction.

    It is due for the retry loop only after :data:`QUEUED_GRACE_SECONDS`: the request (or command) that made the
    change sends it first, and anyone may send it earlier with :func:`pending` without ``due_at``.
    """
    now = now or utcnow()
    due = now + timedelta(seconds=QUEUED_GRACE_SECONDS)
    for party in sorted(set(parties)):
        # One UPDATE so concurrent changes each count: a delivery claimed before the later one is not "delivered".
        result = session.execute(
            update(AgreementDelivery)
            .where(col(AgreementDelivery.agreement_id) == agreement_id, col(AgreementDelivery.to_node) == party)
            .values(
                generation=col(AgreementDelivery.generation) + 1,
                state=PENDING,
                attempts=0,
                queued_at=now,
                next_attempt_at=due,
            )
        )
        if getattr(result, "rowcount", 0) == 0:
            session.add(
                AgreementDelivery(
                    agreement_id=agreement_id, to_node=party, state=PENDING, queued_at=now, next_attempt_at=due
                )
            )
    session.flush()


def pending(
    session: Session,
    *,
    agreement_id: str | None = None,
    to_node: str | None = None,
    due_at: datetime | None = None,
) -> list[Pending]:
    """Deliveries still to make (of one agreement, to one node, and/or due by ``due_at``), oldest queued first."""
    statement = select(AgreementDelivery).where(col(AgreementDelivery.state) == PENDING)
    if agreement_id is not None:
        statement = statement.where(col(AgreementDelivery.agreement_id) == agreement_id)
    if to_node is not None:
        statement = statement.where(col(AgreementDelivery.to_node) == to_node)
    if due_at is not None:
        statement = statement.where(col(AgreementDelivery.next_attempt_at) <= due_at)
    rows = session.exec(statement.order_by(col(AgreementDelivery.queued_at), col(AgreementDelivery.to_node)))
    return [Pending(r.agreement_id, r.to_node, r.generation, r.attempts) for r in rows]


def next_due(session: Session) -> datetime | None:
    """When the earliest pending delivery is due (``None``: nothing is pending)."""
    statement = (
        select(AgreementDelivery.next_attempt_at)
        .where(col(AgreementDelivery.state) == PENDING)
        .order_by(col(AgreementDelivery.next_attempt_at))
        .limit(1)
    )
    return session.exec(statement).first()


def messages_for(session: Session, *, runtime: AgreementsRuntime, item: Pending) -> list[AgreementMessage]:
    """What to send ``item.to_node``: one message per version it is a party to, oldest version first."""
    try:
        outgoing = exchange.outbox_for(session, runtime=runtime, agreement_id=item.agreement_id)
    except AgreementNotFound:
        return []
    messages = [o.message for o in outgoing if o.to == item.to_node]
    return sorted(messages, key=lambda m: m.version)


def settle(session: Session, *, item: Pending, attempt: Attempt, now: datetime | None = None) -> None:
    """Record an attempt: delivered (if nothing newer was queued meanwhile), refused for good, or retry later."""
    now = now or utcnow()
    row = session.get(AgreementDelivery, (item.agreement_id, item.to_node))
    if row is None:
        return
    if row.generation != item.generation or row.state != PENDING:
        # Stale: a newer change was queued while this attempt was on the wire (it goes out on its own), or
        # another attempt at the same change has already settled it. Either way this one has nothing to say.
        return
    row.last_attempt_at = now
    row.outcome = attempt.outcome
    row.status = attempt.status
    row.detail = attempt.detail[:_DETAIL_CHARS] if attempt.detail else None
    if attempt.delivered:
        row.state, row.delivered_at, row.next_attempt_at = DELIVERED, now, None
        row.attempts += 1
    elif attempt.final:
        row.state, row.next_attempt_at = REJECTED, None
        row.attempts += 1
    else:
        row.attempts += 1
        row.next_attempt_at = now + retry_delay(row.attempts)
    session.add(row)
    session.flush()


def status(session: Session, *, agreement_id: str) -> list[DeliveryPublic]:
    """Each other party's delivery state for one agreement, by node id."""
    rows = session.exec(
        select(AgreementDelivery)
        .where(col(AgreementDelivery.agreement_id) == agreement_id)
        .order_by(col(AgreementDelivery.to_node))
    )
    return [
        DeliveryPublic(
            node_id=r.to_node,
            state=r.state,
            outcome=r.outcome,
            status=r.status,
            detail=r.detail,
            attempts=r.attempts,
            queued_at=r.queued_at,
            last_attempt_at=r.last_attempt_at,
            next_attempt_at=r.next_attempt_at,
            delivered_at=r.delivered_at,
        )
        for r in rows
    ]


# --- the courier -------------------------------------------------------------------------------------------


class Courier(Protocol):
    """Sends an agreement's pending deliveries now and reports every other party's delivery state after."""

    async def deliver(
        self, agreement_id: str, *, context: AuditContext | None = None, request_id: str | None = None
    ) -> list[DeliveryPublic]: ...


class QueueOnly:
    """The courier of a node outside any federation: deliveries stay queued, and are reported as such."""

    def __init__(self, runtime: AgreementsRuntime) -> None:
        self.runtime = runtime

    async def deliver(
        self,
        agreement_id: str,
        *,
        context: AuditContext | None = None,  # noqa: ARG002 - the protocol's signature
        request_id: str | None = None,  # noqa: ARG002
    ) -> list[DeliveryPublic]:
        """Nothing is sent; the queued deliveries as they stand."""
        return await anyio.to_thread.run_sync(self._status, agreement_id)

    def _status(self, agreement_id: str) -> list[DeliveryPublic]:
        with Session(self.runtime.engine) as session:
            return status(session, agreement_id=agreement_id)


def courier_of(node: Node) -> Courier:
    """The node's courier: the federation's when installed, else one that only queues."""
    courier: Courier | None = node.extensions.get(COURIER_EXTENSION)
    return courier if courier is not None else QueueOnly(runtime_of(node))


def get_courier(request: Request) -> Courier:
    """Route dependency: the serving node's courier."""
    return courier_of(request.app.state.node)


CourierDep = Annotated[Courier, Depends(get_courier)]


def committed(runtime: AgreementsRuntime, work: Callable[[Session], T]) -> T:
    """Run ``work`` in a session of its own and commit it (the unit of work of a change that is then sent)."""
    with Session(runtime.engine) as session:
        result = work(session)
        session.commit()
        return result


async def change_and_deliver(
    runtime: AgreementsRuntime,
    courier: Courier,
    change: Callable[[Session], AgreementPublic],
    *,
    context: AuditContext | None = None,
    request_id: str | None = None,
) -> AgreementPublic:
    """Commit ``change`` (a service call), then have the courier send what it queued; the agreement as changed,
    with each other party's delivery state after the attempt."""
    agreement = await anyio.to_thread.run_sync(committed, runtime, change)
    try:
        deliveries = await courier.deliver(agreement.agreement, context=context, request_id=request_id)
    except Exception:
        # The change is committed and its deliveries are queued: report them as they stand, never a 5xx for
        # something that was stored. The retry loop sends them once this node can again.
        log.exception("delivering agreement %s after a change", agreement.agreement)
        return agreement
    return agreement.model_copy(update={"deliveries": deliveries})
