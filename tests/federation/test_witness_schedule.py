"""The witnessing schedule without a clock: the wait and its jitter, the claim that lets one worker run each round,
idempotent keeping of heads, the setting, and one worker's loop step on an in-process node.

Storage tests run on SQLite and PostgreSQL; the races are real threads on one database, released together.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import random
import threading
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import Engine, func, select
from sqlmodel import Session

from federation import witness, witness_task
from federation.directory import DirectoryKey
from federation.fanout import PeerCall
from federation.models import PeerResult, WitnessedHead, WitnessSchedule
from federation.tokens import ed25519_verifier
from federation.witness import WitnessReport, _keep, schedule_interval
from federation.witness_schedule import (
    JITTER_FRACTION,
    begin,
    claim,
    finish,
    next_due,
    read,
    reports_of,
    seconds_until_next,
)
from federation.witness_task import ROUND_ACTION, WitnessScheduler, round_entry
from registry.app import create_app
from registry.core.db import make_engine
from registry.core.keys import KeyRing
from registry.core.node import Node
from registry.core.settings import Settings, SettingsError, load_settings
from schemas.vocabulary import PeerOutcome, Role
from tests.registry.core import rfc9162_reference
from tests.support.agreements import sign_document
from tests.support.federation import PeerIdentity
from tests.support.threads import Gate, cancel_mid_call
from tests.support.tokens import bearer

pytestmark = pytest.mark.postgres

T0 = datetime(2026, 11, 29, 12, 0, tzinfo=UTC)
ENTRIES = [f"entry {i}".encode() for i in range(20)]  # a peer's log, for tree heads and proofs made by the test


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


@pytest.fixture
def engine(migrated_db_url: str) -> Iterator[Engine]:
    engine = make_engine(migrated_db_url)
    yield engine
    engine.dispose()


def race(jobs: int, job: Callable[[int], Any]) -> list[Any]:
    """Run ``job(i)`` in ``jobs`` threads released at the same moment; their results in order."""
    barrier = threading.Barrier(jobs)

    def run(i: int) -> Any:
        barrier.wait()
        return job(i)

    with concurrent.futures.ThreadPoolExecutor(jobs) as pool:
        return list(pool.map(run, range(jobs)))


class TestSecondsUntilNext:
    @pytest.mark.parametrize(
        ("since", "now", "jitter", "expected"),
        [
            (0, 0, 0.0, 300.0),  # a round just started: the whole interval
            (0, 100, 0.0, 200.0),  # what is left of it
            (0, 300, 0.0, 0.0),  # due now
            (0, 5000, 0.0, 0.0),  # long overdue (the node was down): at once, never a negative sleep
            (0, 0, 0.5, 300.0 + 0.5 * JITTER_FRACTION * 300),  # plus the jitter's share of the interval
            (0, 5000, 0.999, 0.999 * JITTER_FRACTION * 300),  # overdue still gets jitter: nodes back together drift
            (0, 0, 7.0, 300.0 + JITTER_FRACTION * 300),  # a draw outside [0, 1) is clipped
            (0, 0, -1.0, 300.0),
        ],
    )
    def test_the_wait_is_the_rest_of_the_interval_plus_a_bounded_jitter(
        self, since: float, now: float, jitter: float, expected: float
    ) -> None:
        assert seconds_until_next(at(since), now=at(now), interval=300, jitter=jitter) == pytest.approx(expected)

    def test_two_workers_drawing_different_jitter_wake_at_different_times_within_the_bound(self) -> None:
        waits = [
            seconds_until_next(T0, now=T0, interval=60, jitter=random.Random(seed).random())  # noqa: S311
            for seed in range(50)
        ]
        assert len(set(waits)) == len(waits)
        assert all(60 <= wait < 60 * (1 + JITTER_FRACTION) for wait in waits)


class TestNextDue:
    def test_the_next_round_is_due_an_interval_after_the_last_one_started(self) -> None:
        last = WitnessSchedule(round=4, trigger="schedule", worker="w", started_at=at(10), finished_at=at(12))
        assert next_due(last, interval=30, since=T0) == at(40)

    def test_before_any_round_it_counts_from_the_start_and_off_means_never(self) -> None:
        assert next_due(None, interval=30, since=T0) == at(30)
        last = WitnessSchedule(round=1, trigger="manual", worker="w", started_at=at(10))
        assert next_due(last, interval=0, since=T0) is None


class TestClaim:
    def test_one_round_per_interval_whoever_asks(self, engine: Engine) -> None:
        assert read(engine) is None
        assert claim(engine, worker="a", now=at(0), interval=60) == 1  # the first round creates the record
        assert claim(engine, worker="b", now=at(1), interval=60) is None
        assert claim(engine, worker="a", now=at(59.9), interval=60) is None
        assert claim(engine, worker="b", now=at(60), interval=60) == 2
        last = read(engine)
        assert last is not None
        assert (last.round, last.worker, last.trigger, last.started_at, last.finished_at) == (
            2,
            "b",
            "schedule",
            at(60),
            None,
        )

    def test_a_manual_round_is_never_refused_and_counts_as_the_last_round(self, engine: Engine) -> None:
        assert begin(engine, worker="officer", now=at(0)) == 1  # on a node that never ran one
        assert claim(engine, worker="a", now=at(30), interval=60) is None
        assert begin(engine, worker="officer", now=at(31)) == 2  # inside the interval all the same
        assert claim(engine, worker="a", now=at(60), interval=60) is None  # 29 s after the manual round
        assert claim(engine, worker="a", now=at(91), interval=60) == 3

    def test_only_the_current_round_records_its_end(self, engine: Engine) -> None:
        assert claim(engine, worker="a", now=at(0), interval=60) == 1
        assert begin(engine, worker="officer", now=at(5)) == 2
        assert finish(engine, number=1, now=at(6), reports=[{"peer": "x", "verdict": "first"}]) is False
        report = {"peer": "rcc-peer", "verdict": "unreachable", "detail": "connection refused"}
        assert finish(engine, number=2, now=at(7), reports=[report], error=None) is True
        last = read(engine)
        assert last is not None
        assert (last.round, last.trigger, last.finished_at, reports_of(last)) == (2, "manual", at(7), [report])

    def test_a_failed_round_keeps_its_error(self, engine: Engine) -> None:
        claim(engine, worker="a", now=at(0), interval=60)
        assert finish(engine, number=1, now=at(1), reports=[], error="DirectoryUnavailable: expired") is True
        last = read(engine)
        assert last is not None
        assert (last.error, reports_of(last)) == ("DirectoryUnavailable: expired", [])

    def test_workers_racing_for_the_first_round_elect_exactly_one(self, engine: Engine) -> None:
        won = race(6, lambda i: claim(engine, worker=f"w{i}", now=at(0), interval=60))
        assert sorted(won, key=lambda n: n or 0) == [None] * 5 + [1]
        last = read(engine)
        assert last is not None and last.worker == f"w{won.index(1)}"

    def test_workers_racing_for_a_due_round_elect_exactly_one(self, engine: Engine) -> None:
        claim(engine, worker="w0", now=at(0), interval=60)
        won = race(6, lambda i: claim(engine, worker=f"w{i}", now=at(60 + i / 1000), interval=60))
        assert [n for n in won if n is not None] == [2]

    def test_manual_rounds_racing_on_a_new_node_all_run_with_their_own_numbers(self, engine: Engine) -> None:
        numbers = race(4, lambda i: begin(engine, worker=f"officer{i}", now=at(i)))
        assert sorted(numbers) == [1, 2, 3, 4]


class TestKeep:
    def test_two_rounds_keeping_the_same_head_at_once_store_it_once_without_error(self, engine: Engine) -> None:
        def head() -> WitnessedHead:
            return WitnessedHead(
                peer="rcc-peer",
                tree_size=12,
                root_hash="ab" * 32,
                timestamp=T0,
                signature="sig",
                witnessed_at=T0,
                verdict="first",
            )

        race(6, lambda _i: _keep(engine, head()))
        _keep(engine, head())  # and again, in sequence
        with Session(engine) as session:
            assert session.exec(select(func.count()).select_from(WitnessedHead)).one() == (1,)


class TestSetting:
    @pytest.mark.parametrize("value", ["0.5", "-1", "86401", "nan", "often"])
    def test_a_bad_interval_stops_the_node_naming_the_setting(self, tmp_path: Path, value: str) -> None:
        with pytest.raises(SettingsError) as caught:
            load_settings(data_dir=tmp_path, witness_interval_seconds=value)
        assert list(caught.value.problems) == ["witness_interval_seconds"]

    @pytest.mark.parametrize(("value", "expected"), [(None, 300.0), ("0", 0.0), ("1", 1.0), ("86400", 86400.0)])
    def test_off_one_second_a_day_and_five_minutes_by_default(
        self, tmp_path: Path, value: str | None, expected: float
    ) -> None:
        overrides = {} if value is None else {"witness_interval_seconds": value}
        assert load_settings(data_dir=tmp_path, **overrides).witness_interval_seconds == expected

    def test_the_environment_sets_it(self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setenv("RCC_WITNESS_INTERVAL_SECONDS", "30")
        assert load_settings(data_dir=tmp_path).witness_interval_seconds == 30.0


class TestScheduler:
    """One worker's loop step on an in-process node: no sleeping, the schedule row is the evidence."""

    def test_a_node_without_a_federation_schedules_nothing(self, app: FastAPI) -> None:
        assert schedule_interval(app.state.node) == 0.0

    def test_a_federated_node_runs_on_the_setting(self, fed_app: FastAPI) -> None:
        assert schedule_interval(fed_app.state.node) == 300.0

    def test_a_won_round_is_recorded_and_a_second_worker_in_the_same_interval_stands_down(
        self, fed_app: FastAPI
    ) -> None:
        node: Node = fed_app.state.node
        first = WitnessScheduler(node, interval=300, worker="host:1")
        second = WitnessScheduler(node, interval=300, worker="host:2")
        assert asyncio.run(first.tick()) == []  # no agreement lets this node witness anyone: nobody asked
        assert asyncio.run(second.tick()) is None
        last = read(node.engine)
        assert last is not None
        assert (last.round, last.worker, last.trigger, last.error) == (1, "host:1", "schedule", None)
        assert last.finished_at is not None and reports_of(last) == []

    def test_the_delay_counts_from_the_last_round_a_worker_has_not_run_itself(self, fed_app: FastAPI) -> None:
        node: Node = fed_app.state.node

        class Draw(random.Random):
            def random(self) -> float:
                return 0.5

        scheduler = WitnessScheduler(node, interval=300, worker="host:1", rng=Draw())
        scheduler.started_at = T0
        # No round yet: from the worker's own start, plus half the jitter's share (0.5 x 10 % x 300 s).
        before = datetime.now(UTC)
        wait = asyncio.run(scheduler.delay())
        after = datetime.now(UTC)
        due = T0 + timedelta(seconds=300)
        assert max(0.0, (due - after).total_seconds()) + 15 <= wait <= max(0.0, (due - before).total_seconds()) + 15
        # Another worker's round counts as much as this one's own (dated ahead so the wait is long enough to see).
        tomorrow = datetime.now(UTC) + timedelta(days=1)
        claim(node.engine, worker="host:2", now=tomorrow, interval=300)
        before = datetime.now(UTC)
        wait = asyncio.run(scheduler.delay())
        assert wait <= (tomorrow + timedelta(seconds=300) - before).total_seconds() + 15
        assert wait > 86400

    def test_the_rounds_own_entry_names_the_node_and_no_request(self, fed_app: FastAPI) -> None:
        node: Node = fed_app.state.node
        reports = [
            WitnessReport(peer="rcc-a", verdict="consistent", tree_size=9),
            WitnessReport(peer="rcc-b", verdict="unreachable", detail="connection refused"),
            WitnessReport(peer="rcc-c", verdict="consistent", tree_size=4),
        ]
        entry = round_entry(node, 7, reports, worker="host:1", started_at=T0).document
        assert (entry["action"], entry["actor_type"], entry["actor_id"], entry["roles"]) == (
            ROUND_ACTION,
            "node",
            node.node_id,
            [],
        )
        assert (entry["request_id"], entry["peer"], entry["result_count"], entry["outcome"]) == (None, None, 3, "ok")
        assert entry["extra"] == {
            "witness_round": 7,
            "trigger": "schedule",
            "worker": "host:1",
            "started_at": "2026-11-29T12:00:00.000000Z",
            "verdicts": {"consistent": 2, "unreachable": 1},
        }


class TestRoutes:
    def test_a_manual_round_is_the_last_round_and_the_next_scheduled_one_counts_from_it(
        self, fed_app: FastAPI, fed_client: TestClient, audits: list[Any]
    ) -> None:
        officer = bearer(fed_app, Role.governance, subject="dpo")
        before = fed_client.get("/v1/audit/witness", headers=officer).json()
        node: Node = fed_app.state.node
        assert (before["interval_seconds"], before["last_round"], before["latest"]) == (300, None, [])
        assert stamp(before["next_due_at"]) == node.started_at + timedelta(seconds=300)

        response = fed_client.post("/v1/audit/witness", headers=officer)
        assert response.status_code == 200, response.text
        assert response.json() == {"reports": []}
        state = fed_client.get("/v1/audit/witness", headers=officer).json()
        last = state["last_round"]
        assert (last["round"], last["trigger"], last["reports"], last["error"]) == (1, "manual", [], None)
        assert last["finished_at"] is not None
        assert stamp(state["next_due_at"]) == stamp(last["started_at"]) + timedelta(seconds=300)
        (context,) = [ctx for path, ctx in audits if path == "/v1/audit/witness" and ctx.result_count is not None]
        assert (context.actor_type, context.extra["witness_round"]) == ("client", 1)

    def test_the_schedule_off_shows_no_next_round(self, fed_settings: Settings, keys: KeyRing) -> None:
        settings = fed_settings.model_copy(update={"witness_interval_seconds": 0.0})
        engine = make_engine(settings.effective_database_url)
        try:
            app = create_app(settings, keys=keys, engine=engine)
            with TestClient(app) as client:
                state = client.get("/v1/audit/witness", headers=bearer(app, Role.governance)).json()
        finally:
            engine.dispose()
        assert (state["interval_seconds"], state["next_due_at"], state["last_round"]) == (0, None, None)


def stamp(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


class TestFailures:
    def test_a_failing_round_is_logged_and_the_loop_goes_on(
        self, fed_app: FastAPI, caplog: pytest.LogCaptureFixture
    ) -> None:
        class Flaky(WitnessScheduler):
            ticks = 0

            async def delay(self) -> float:
                return 0.0

            async def tick(self) -> list[WitnessReport] | None:
                self.ticks += 1
                if self.ticks == 3:
                    raise asyncio.CancelledError  # the node stopping: the only way out of the loop
                raise RuntimeError(f"round {self.ticks} broke")

        scheduler = Flaky(fed_app.state.node, interval=300, worker="host:1")
        with caplog.at_level("WARNING", logger="rcc.federation.witness"), pytest.raises(asyncio.CancelledError):
            asyncio.run(scheduler.run())
        assert scheduler.ticks == 3
        assert [r.getMessage() for r in caplog.records if "failed" in r.getMessage()] == [
            "scheduled witnessing round failed: RuntimeError: round 1 broke",
            "scheduled witnessing round failed: RuntimeError: round 2 broke",
        ]

    @pytest.mark.parametrize(
        ("raised", "error"),
        [
            (RuntimeError("directory expired"), "RuntimeError: directory expired"),
            (asyncio.CancelledError(), "cancelled: the node stopped"),
        ],
    )
    def test_a_round_that_breaks_off_is_recorded_with_why(
        self, fed_app: FastAPI, monkeypatch: pytest.MonkeyPatch, raised: BaseException, error: str
    ) -> None:
        async def broken(*_args: Any, **_kwargs: Any) -> list[WitnessReport]:
            raise raised

        monkeypatch.setattr(witness, "witness_round", broken)
        node: Node = fed_app.state.node
        with pytest.raises(type(raised)):
            asyncio.run(WitnessScheduler(node, interval=300, worker="host:1").tick())
        last = read(node.engine)
        assert last is not None
        assert (last.round, last.error, reports_of(last)) == (1, error, [])
        assert last.finished_at is not None


class TestStopping:
    """Cancelling the loop mid-query waits for the query's thread (``registry.core.threads``): nothing it started
    holds a connection after."""

    def test_a_loop_stopped_while_reading_the_schedule_stops_after_the_read(
        self, fed_app: FastAPI, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        node: Node = fed_app.state.node
        gate = Gate(lambda: read(node.engine))
        monkeypatch.setattr(witness_task, "read", gate)
        assert asyncio.run(cancel_mid_call(gate, WitnessScheduler(node, interval=300, worker="host:1").run()))
        assert gate.finished

    def test_a_loop_stopped_while_claiming_a_round_stops_after_the_claim(
        self, fed_app: FastAPI, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        node: Node = fed_app.state.node
        gate = Gate(lambda: None)  # another worker won the round
        monkeypatch.setattr(witness_task, "claim", gate)
        assert asyncio.run(cancel_mid_call(gate, WitnessScheduler(node, interval=300, worker="host:1").tick()))
        assert gate.finished


class TestOverlappingRounds:
    """A head fetched before another round kept a newer one is no rollback, if the newer one provably extends it."""

    @staticmethod
    def body(peer: PeerIdentity, size: int, timestamp: datetime) -> dict[str, Any]:
        head = {
            "node_id": peer.node_id,
            "tree_size": size,
            "root_hash": rfc9162_reference.mth(ENTRIES[:size]).hex(),
            "timestamp": timestamp.isoformat().replace("+00:00", "Z"),
        }
        return {"tree_head": head, "signature": sign_document(head, peer.active, typ="rcc-tree-head+jws")}

    @staticmethod
    def judge(node: Node, peer: PeerIdentity, body: dict[str, Any]) -> WitnessReport:
        public = peer.jwk(peer.active, "active")
        keys = {peer.kid: DirectoryKey(peer.kid, "active", public, ed25519_verifier(peer.active.public_key()))}
        call = PeerCall(peer.node_id, witness.TREE_HEAD_PATH, "audit-witnessing", dataset="audit.tree-heads")
        return asyncio.run(witness._judge(node, node.extensions["federation"], call, body, keys, None, None))

    @pytest.mark.parametrize(
        ("stamp", "proof", "verdict", "detail"),
        [
            (50, "valid", "unchanged", "an older head than the 20-entry one kept"),
            (50, "forged", "inconsistent", "no valid consistency proof from the 12-entry head to the 20-entry one"),
            (50, None, "unreachable", "consistency proof: connection refused"),
            (150, None, "inconsistent", "the log shrank from 20 entries"),  # signed after the head kept: a rollback
        ],
    )
    def test_a_smaller_head_signed_before_the_one_kept_needs_a_proof_that_the_kept_one_extends_it(
        self,
        fed_app: FastAPI,
        peer: PeerIdentity,
        monkeypatch: pytest.MonkeyPatch,
        stamp: int,
        proof: str | None,
        verdict: str,
        detail: str,
    ) -> None:
        node: Node = fed_app.state.node
        assert self.judge(node, peer, self.body(peer, 20, at(100))).verdict == "first"
        asked: list[str] = []

        async def call(peer_id: str, method: str, path: str, **_kwargs: Any) -> PeerResult:
            asked.append(path)
            if proof is None:
                return PeerResult(peer_id, PeerOutcome.unreachable, 1.0, detail="connection refused")
            hashes = rfc9162_reference.proof(12, ENTRIES)
            if proof == "forged":
                hashes = [bytes(32), *hashes[1:]]
            answer = {"first": 12, "second": 20, "proof": [h.hex() for h in hashes]}
            return PeerResult(peer_id, PeerOutcome.ok, 1.0, status=200, body=answer)

        monkeypatch.setattr(node.extensions["federation"].client, "call", call)
        report = self.judge(node, peer, self.body(peer, 12, at(stamp)))
        assert (report.verdict, report.detail, report.tree_size, report.previous_size) == (verdict, detail, 12, 20)
        assert asked == ([] if stamp > 100 else [f"{witness.CONSISTENCY_PATH}?first=12&second=20"])
        with Session(node.engine) as session:
            rows = session.exec(select(WitnessedHead.tree_size, WitnessedHead.verdict)).all()
        held = {(size, verdict) for size, verdict in rows}
        # Only evidence is kept beside the head of 20: a forged proof or a rollback, never a stale view.
        assert held == ({(20, "first")} if verdict in ("unchanged", "unreachable") else {(20, "first"), (12, verdict)})
