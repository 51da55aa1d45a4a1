"""The outbox: which changes are queued for which parties, and how attempts settle (delivered, retried, refused)."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta

import pytest
from sqlmodel import Session

from agreements import exchange, outbox, service
from agreements.outbox import Attempt, QueueOnly
from registry.core.db import utcnow
from tests.agreements.conftest import GM, NAT, SE, Party, document, grant

pytestmark = pytest.mark.postgres


def states(party: Party, agreement_id: str) -> dict[str, str]:
    with Session(party.engine) as session:
        return {d.node_id: d.state for d in outbox.status(session, agreement_id=agreement_id)}


def claim(
    party: Party, *, agreement_id: str | None = None, to_node: str | None = None, due_at: datetime | None = None
) -> list[outbox.Pending]:
    with Session(party.engine) as session:
        return outbox.pending(session, agreement_id=agreement_id, to_node=to_node, due_at=due_at)


def settle(party: Party, item: outbox.Pending, attempt: Attempt) -> None:
    with Session(party.engine) as session:
        outbox.settle(session, item=item, attempt=attempt)
        session.commit()


def enqueue(party: Party, agreement_id: str, parties: list[str]) -> None:
    with Session(party.engine) as session:
        outbox.enqueue(session, agreement_id=agreement_id, parties=parties)
        session.commit()


class TestQueuedByTheService:
    def test_a_draft_stays_local_until_proposed_then_every_change_is_queued(self, se: Party, gm: Party) -> None:
        three = document(
            "three",
            [SE, GM, NAT],
            [grant(SE, [GM, NAT], ["capacity.vacancies"], ["placement-search"])],
        )
        se.call(service.create, document=three)
        se.call(service.sign, agreement_id="three")
        assert states(se, "three") == {}  # signed, but nobody else has seen it: nothing to tell
        proposed = se.call(service.propose, agreement_id="three")
        assert (proposed.state, {d.node_id: d.state for d in proposed.deliveries}) == (
            "proposed",
            {GM: "pending", NAT: "pending"},
        )
        (item,) = claim(se, to_node=GM)
        with Session(se.engine) as session:
            (message,) = outbox.messages_for(session, runtime=se.runtime, item=item)
        assert [s.node_id for s in message.signatures] == [SE]
        assert sorted(e.event["type"] for e in message.events) == ["proposed", "signed"]

        # GM takes the message in and countersigns: GM's signature is queued for both other parties.
        gm.call(exchange.receive, message=message.model_dump(mode="json"), sender_node_id=SE)
        gm.call(service.sign, agreement_id="three")
        assert states(gm, "three") == {SE: "pending", NAT: "pending"}

    def test_revoking_a_draft_nobody_else_holds_queues_nothing(self, se: Party) -> None:
        se.call(service.create, document=document())
        se.call(service.revoke, agreement_id="se-gm-mou", reason="Drafted in error")
        assert states(se, "se-gm-mou") == {}


class TestSettling:
    def test_delivered_is_recorded_per_party(self, se: Party) -> None:
        enqueue(se, "a", [GM, NAT])
        first = {i.to_node: i for i in claim(se, agreement_id="a")}
        settle(se, first[GM], Attempt("ok", status=200, delivered=True))
        assert states(se, "a") == {GM: "delivered", NAT: "pending"}
        assert [i.to_node for i in claim(se)] == [NAT]

    def test_a_change_queued_while_sending_keeps_the_party_pending(self, se: Party) -> None:
        enqueue(se, "a", [GM])
        (in_flight,) = claim(se)
        enqueue(se, "a", [GM])  # e.g. a revocation committed while the proposal was on the wire
        settle(se, in_flight, Attempt("ok", status=200, delivered=True))
        (again,) = claim(se)
        assert (again.generation, states(se, "a")) == (in_flight.generation + 1, {GM: "pending"})
        assert claim(se, due_at=utcnow()) == []  # the change's own request sends it first; the loop waits

    def test_a_second_attempt_at_the_same_change_does_not_undo_the_first(self, se: Party) -> None:
        enqueue(se, "a", [GM])
        (item,) = claim(se)
        settle(se, item, Attempt("ok", status=200, delivered=True))
        settle(se, item, Attempt("error", status=409, detail="conflict: send it again"))
        with Session(se.engine) as session:
            (row,) = outbox.status(session, agreement_id="a")
        assert (row.state, row.outcome, row.attempts) == ("delivered", "ok", 1)

    def test_failures_back_off_and_a_final_refusal_waits_for_the_next_change(self, se: Party) -> None:
        enqueue(se, "a", [GM])
        for _ in range(3):
            (item,) = claim(se)
            settle(se, item, Attempt("unreachable", detail="connection refused"))
        with Session(se.engine) as session:
            (row,) = outbox.status(session, agreement_id="a")
        assert (row.state, row.attempts, row.outcome) == ("pending", 3, "unreachable")
        assert row.next_attempt_at is not None and row.last_attempt_at is not None
        assert row.next_attempt_at - row.last_attempt_at == timedelta(seconds=8)
        assert claim(se, due_at=utcnow()) == []  # not due yet

        (item,) = claim(se)
        settle(se, item, Attempt("refused", status=403, detail="not-a-party", final=True))
        assert states(se, "a") == {GM: "rejected"}
        assert claim(se) == []
        enqueue(se, "a", [GM])
        assert [(i.to_node, i.attempts) for i in claim(se)] == [(GM, 0)]

    @pytest.mark.parametrize(("attempts", "seconds"), [(0, 2), (1, 2), (2, 4), (3, 8), (8, 256), (9, 300), (40, 300)])
    def test_retry_delay_doubles_up_to_five_minutes(self, attempts: int, seconds: int) -> None:
        assert outbox.retry_delay(attempts) == timedelta(seconds=seconds)

    def test_a_node_outside_any_federation_only_queues(self, se: Party) -> None:
        enqueue(se, "a", [GM])
        (delivery,) = asyncio.run(QueueOnly(se.runtime).deliver("a"))
        assert (delivery.node_id, delivery.state, delivery.outcome) == (GM, "pending", None)
