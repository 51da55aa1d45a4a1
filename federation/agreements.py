"""Agreements between real nodes: the directory as the parties' keys, the courier that sends, the inbox that receives.

* :class:`DirectoryKeys` answers the agreements part's key question — is ``kid`` a key of ``node_id``, and is it
  still active? — from the federation directory held *now*: a node removed from the directory, or a key the
  operator marks retired, can no longer have a new signature or event accepted here.
* :class:`AgreementCourier` delivers the outbox (:mod:`agreements.outbox`): for each pending (agreement, party)
  it posts everything this node holds about the agreement to the party's ``POST /federation/v1/agreements/inbox``
  over the signed federation client, one message per version, oldest first. It runs right after a change
  commits (the route reports each party's outcome), again with backoff while a party is down (a timer in the
  app's lifespan), and at once for a peer that has just sent this node something (it is evidently up).
* ``POST /federation/v1/agreements/inbox`` receives proposals, signatures and events from other parties' nodes
  through :func:`agreements.exchange.receive`: every signature verified against the directory, idempotent,
  refused when the caller is not a party; audited like every federation call, with the agreement id.

Purpose: a request token must name a purpose from the closed vocabulary, but exchanging an agreement is not a
data flow and needs no agreement to permit it (that would be circular). Agreement traffic claims
``audit-witnessing`` — the closest purpose: nodes keeping each other's signed records so that none can
rewrite them alone — and carries the agreement id in the token's ``agreement`` claim. The inbox makes no
policy decision on it: it admits exactly the agreement's parties.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator
from typing import Annotated, Any

from fastapi import APIRouter, BackgroundTasks, Body, FastAPI, Request
from sqlmodel import Session

from agreements import exchange, outbox
from agreements.keys import KEY_RESOLVER_EXTENSION, PartyKey
from agreements.models import AgreementMessage, DeliveryPublic, ReceiveResult
from agreements.outbox import COURIER_EXTENSION, Attempt, Pending
from agreements.runtime import AgreementsRuntime, RuntimeDep, runtime_of
from federation.errors import DirectoryUnavailable
from federation.guard import PeerDep
from federation.models import Peer, PeerResult
from federation.runtime import Federation
from federation.store import DirectoryStore
from registry.core.audit.context import AuditContext, audit_context
from registry.core.db import SessionDep, utcnow
from registry.core.errors import NodeError
from registry.core.keys import public_key_from_jwk
from registry.core.node import Node
from registry.core.threads import run_to_completion
from schemas.vocabulary import PeerOutcome, Purpose

log = logging.getLogger("rcc.federation.agreements")

INBOX_PATH = "/federation/v1/agreements/inbox"
EXCHANGE_PURPOSE = Purpose.audit_witnessing
DELIVERY_SECONDS = 10.0
"""Overall deadline of one round of deliveries (all parties in parallel, each party's versions in order)."""
POLL_SECONDS = 5.0
"""Longest the retry loop sleeps: it also picks up deliveries queued by another worker or the command line."""
# Refusals a retry cannot change (the party's node is not a party, holds another content, finds the document
# invalid); anything else — unreachable, timeouts, a directory or key it does not know yet — is retried.
FINAL_CODES = frozenset({"not-a-party", "agreement-version-conflict", "agreement-invalid", "agreement-event-invalid"})


class DirectoryKeys:
    """The agreements :class:`~agreements.keys.KeyResolver` over the directory this node holds now.

    Looked up on every call, so a new directory — a node removed, a key retired — is in force at once. An
    expired directory answers nothing: this node then trusts no peer key, as the guard trusts no peer token.
    """

    def __init__(self, store: DirectoryStore) -> None:
        self.store = store
        self._keys: dict[tuple[int, str], PartyKey] = {}

    def __call__(self, node_id: str, kid: str) -> PartyKey | None:
        """The directory's key ``kid`` of ``node_id`` with its status there, if the node is a member now."""
        try:
            directory = self.store.require()
        except DirectoryUnavailable:
            return None
        node = directory.node(node_id, at=time.time())
        key = node.key(kid) if node is not None else None
        if key is None:
            return None
        cached = self._keys.get((directory.serial, kid))
        if cached is None:
            cached = PartyKey(public_key_from_jwk(key.jwk), "active" if key.status == "active" else "retired")
            if len(self._keys) > 4096:
                self._keys.clear()
            self._keys[(directory.serial, kid)] = cached
        return cached


class AgreementCourier:
    """Delivers the outbox over the federation client (:class:`agreements.outbox.Courier`)."""

    def __init__(self, federation: Federation, runtime: AgreementsRuntime) -> None:
        self.federation = federation
        self.runtime = runtime
        self._last_error: str | None = None

    # --- what routes and the inbox call ----------------------------------------------------------------

    async def deliver(
        self, agreement_id: str, *, context: AuditContext | None = None, request_id: str | None = None
    ) -> list[DeliveryPublic]:
        """Send every pending delivery of ``agreement_id`` now; each other party's delivery state after."""
        await self._round(agreement_id=agreement_id, context=context, request_id=request_id)
        return await run_to_completion(self._status, agreement_id)

    async def deliver_to(self, peer: str) -> int:
        """Send whatever is pending for ``peer`` now (it has just been in touch); how many deliveries were made."""
        return await self._round(to_node=peer)

    async def deliver_due(self) -> int:
        """Send the deliveries whose retry time has come; how many were attempted."""
        return await self._round(due=True)

    async def run(self) -> None:
        """The retry loop: deliver what is due, sleep until the next one is due (at most ``POLL_SECONDS``)."""
        while True:
            delay = POLL_SECONDS
            try:
                await self.deliver_due()
                delay = await run_to_completion(self._seconds_until_due)
                self._last_error = None
            except Exception as exc:  # the database may be down; keep trying, say so once
                message = f"{type(exc).__name__}: {exc}"
                if message != self._last_error:
                    log.warning("agreement deliveries: %s", message)
                self._last_error = message
            await asyncio.sleep(delay)

    # --- one round ---------------------------------------------------------------------------------------

    async def _round(
        self,
        *,
        agreement_id: str | None = None,
        to_node: str | None = None,
        due: bool = False,
        context: AuditContext | None = None,
        request_id: str | None = None,
    ) -> int:
        work = await run_to_completion(self._claim, agreement_id, to_node, due)
        if not work:
            return 0
        deadline = asyncio.get_running_loop().time() + DELIVERY_SECONDS
        attempts = await asyncio.gather(
            *(self._send(item, messages, deadline, context, request_id) for item, messages in work)
        )
        await run_to_completion(self._settle, [(item, a) for (item, _), a in zip(work, attempts, strict=True)])
        return len(work)

    def _claim(
        self, agreement_id: str | None, to_node: str | None, due: bool
    ) -> list[tuple[Pending, list[AgreementMessage]]]:
        with Session(self.runtime.engine) as session:
            items = outbox.pending(
                session, agreement_id=agreement_id, to_node=to_node, due_at=utcnow() if due else None
            )
            return [(item, outbox.messages_for(session, runtime=self.runtime, item=item)) for item in items]

    async def _send(
        self,
        item: Pending,
        messages: list[AgreementMessage],
        deadline: float,
        context: AuditContext | None,
        request_id: str | None,
    ) -> Attempt:
        """Post each version to the party in order; the first that is not accepted ends the attempt."""
        if not messages:
            return Attempt(
                "nothing-to-send", detail="this node holds no version the party is a party to", delivered=True
            )
        result: PeerResult | None = None
        for message in messages:
            try:
                result = await self.federation.client.call(
                    item.to_node,
                    "POST",
                    INBOX_PATH,
                    purpose=EXCHANGE_PURPOSE.value,
                    json_body=message.model_dump(mode="json"),
                    agreement=item.agreement_id,
                    deadline=deadline,
                    request_id=request_id,
                    context=context,
                )
            except Exception as exc:  # the client never raises for the peer; this is the node's own failure
                log.exception("delivering %s to %s", item.agreement_id, item.to_node)
                return Attempt(PeerOutcome.error.value, detail=f"{type(exc).__name__}")
            if not result.ok:
                return attempt_from(result)
        assert result is not None  # noqa: S101 - messages is not empty
        return Attempt(result.outcome.value, status=result.status, delivered=True)

    def _settle(self, attempts: list[tuple[Pending, Attempt]]) -> None:
        with Session(self.runtime.engine) as session:
            for item, attempt in attempts:
                outbox.settle(session, item=item, attempt=attempt)
            session.commit()

    def _status(self, agreement_id: str) -> list[DeliveryPublic]:
        with Session(self.runtime.engine) as session:
            return outbox.status(session, agreement_id=agreement_id)

    def _seconds_until_due(self) -> float:
        with Session(self.runtime.engine) as session:
            due = outbox.next_due(session)
        if due is None:
            return POLL_SECONDS
        return max(0.05, min(POLL_SECONDS, (due - utcnow()).total_seconds()))


def attempt_from(result: PeerResult) -> Attempt:
    """How an answer other than ``ok`` settles a delivery: final only for a signed refusal a retry cannot change."""
    code = result.body.get("code") if isinstance(result.body, dict) else None
    final = result.outcome is not PeerOutcome.bad_signature and code in FINAL_CODES
    return Attempt(result.outcome.value, status=result.status, detail=result.detail, final=final)


# --- the inbox ---------------------------------------------------------------------------------------------

router = APIRouter(prefix="/federation/v1/agreements", tags=["federation"])


def receive_from(
    session: Session, *, runtime: AgreementsRuntime, peer: Peer, message: AgreementMessage, audit: AuditContext
) -> ReceiveResult:
    """Take in what a party's node sent, with the authenticated peer as sender; the outcome goes to the audit entry."""
    audit.agreement = message.agreement
    try:
        result = exchange.receive(session, runtime=runtime, message=message, sender_node_id=peer.node_id)
    except NodeError as exc:
        reason = getattr(exc, "reason", None)
        audit.deny(str(reason) if isinstance(reason, str) else exc.code)
        raise
    audit.result_count = int(result.document_stored) + result.signatures_stored + result.events_stored
    return result


@router.post("/inbox", name="federation.agreements_inbox")
def inbox(
    peer: PeerDep,
    message: Annotated[AgreementMessage, Body()],
    session: SessionDep,
    runtime: RuntimeDep,
    request: Request,
    background: BackgroundTasks,
) -> ReceiveResult:
    """Receive a proposal, signatures or events from another party's node (verified, idempotent, parties only)."""
    result = receive_from(session, runtime=runtime, peer=peer, message=message, audit=audit_context(request))
    courier = request.app.state.node.extensions.get(COURIER_EXTENSION)
    if isinstance(courier, AgreementCourier):
        # The peer is evidently up: whatever it missed while down goes now, after this answer has been sent.
        background.add_task(courier.deliver_to, peer.node_id)
    return result


# --- wiring ------------------------------------------------------------------------------------------------


def install_agreement_exchange(app: FastAPI, node: Node, federation: Federation | None = None) -> AgreementCourier:
    """Make the directory the parties' keys, install the courier and its retry loop, and serve the inbox.

    Called by ``create_app`` after :func:`federation.install.install_federation`.
    """
    federation = federation or node.extensions["federation"]
    node.extensions[KEY_RESOLVER_EXTENSION] = DirectoryKeys(federation.store)
    courier = AgreementCourier(federation, runtime_of(node))
    node.extensions[COURIER_EXTENSION] = courier
    app.include_router(router)
    inner = app.router.lifespan_context

    @contextlib.asynccontextmanager
    async def lifespan(application: Any) -> AsyncIterator[Any]:
        async with inner(application) as state:
            # Inside the federation's lifespan: the loop stops before the federation closes its connections.
            retrier = asyncio.get_running_loop().create_task(courier.run())
            try:
                yield state
            finally:
                retrier.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await retrier

    app.router.lifespan_context = lifespan
    return courier
