"""The durable writer and the sequencer, on SQLite and PostgreSQL: gap-free indices, stored nodes, signed heads."""

from __future__ import annotations

import asyncio
import threading
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import delete, insert, select, update
from sqlmodel import Session

from registry.core.audit.context import AuditContext
from registry.core.audit.entry import build_entry
from registry.core.audit.errors import AuditStoreError, AuditUnavailable
from registry.core.audit.log import ENTRY, HEAD, NODE, AuditLog, append_in, read_head, signed_head_of
from registry.core.audit.recording import (
    aappend_outbound,
    append_outbound,
    audit_log,
    close_audit_log,
    sequence_pending,
)
from registry.core.db import make_engine, utcnow
from registry.core.merkle import MissingNodeError
from registry.core.node import Node
from tests.registry.core.audit import rfc9162
from tests.registry.core.audit.conftest import fill, sample_entry
from tests.support import jose
from tests.support.garbage import garbage_into
from tests.support.nodes import wait_for

pytestmark = pytest.mark.postgres


def stored_leaves(log: AuditLog) -> list[bytes]:
    """Leaf hashes recomputed from the stored entries, in index order (as an outside auditor would)."""
    with log.engine.connect() as conn:
        rows = conn.execute(select(ENTRY.c.seq, ENTRY.c.entry).order_by(ENTRY.c.seq)).all()
    assert [r.seq for r in rows] == list(range(len(rows)))
    return [rfc9162.sha256(b"\x00" + r.entry.encode()) for r in rows]


def head_of(log: AuditLog):
    with log.engine.connect() as conn:
        return signed_head_of(read_head(conn))


def committed_batches(writer: Any, monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The size of each batch ``writer`` commits from now on, in order."""
    batches: list[int] = []
    original = writer._insert

    def counting(inserter: Any, rows: Any) -> None:
        batches.append(len(rows))
        original(inserter, rows)

    monkeypatch.setattr(writer, "_insert", counting)
    return batches


class TestSequencer:
    def test_entries_get_contiguous_indices_in_arrival_order(self, audit) -> None:
        entries = fill(audit, 37)
        assert audit.sequence_pending() == 37
        with audit.engine.connect() as conn:
            rows = conn.execute(select(ENTRY.c.seq, ENTRY.c.entry).order_by(ENTRY.c.id)).all()
        assert [r.seq for r in rows] == list(range(37))
        assert [r.entry.encode() for r in rows] == [e.canonical for e in entries]

    def test_a_step_leaves_no_reference_cycles(self, audit) -> None:
        # Every request's entry passes through a step: what one allocates must go by reference counting, not
        # wait for the garbage collector (statements built per step left 5 cyclic objects each time).
        fill(audit, 3)
        audit.step()  # warm up: the compact range and the statements' compiled forms exist
        found: list[int] = []
        for window in range(3):
            with garbage_into(found):
                for index in range(5):
                    audit.append(sample_entry(1000 * window + index))
                    audit.append(sample_entry(1000 * window + 500 + index))
                    assert audit.step() == 2
        # A cycle left by every step shows in every window; garbage another thread makes meanwhile (a thread of
        # an earlier test finishing: 3,546 objects once in a full PostgreSQL run) in one at most.
        assert min(found) == 0

    def test_every_perfect_subtree_is_stored_and_matches_the_reference(self, audit) -> None:
        fill(audit, 37)
        audit.sequence_pending()
        leaves = stored_leaves(audit)
        with audit.engine.connect() as conn:
            stored = {(r.level, r.idx): bytes(r.digest) for r in conn.execute(select(NODE))}
        expected = {
            (level, i): rfc9162.root(leaves[i << level : (i + 1) << level])
            for level in range(6)
            for i in range(37 >> level)
        }
        assert stored == expected

    def test_signed_head_verifies_independently_and_matches_the_reference_root(self, audit, keys) -> None:
        fill(audit, 21)
        audit.sequence_pending()
        head = head_of(audit)
        assert head.tree_head.tree_size == 21
        assert head.tree_head.root_hash == rfc9162.root(stored_leaves(audit)).hex()
        assert head.tree_head.node_id == "rcc-test"
        document = head.tree_head.model_dump()
        assert (
            jose.verify_detached(document, head.signature, keys.jwks(), "rcc-tree-head+jws")["kid"] == keys.active.kid
        )

    def test_known_answer_roots_through_the_store(self, audit) -> None:
        # Leaf hashes of the published RFC 6962/9162 inputs, stored as if entries: each head must give the KAT root.
        for n, data in enumerate(rfc9162.KAT_INPUTS):
            with audit.engine.begin() as conn:
                conn.execute(
                    insert(ENTRY),
                    [{"ts": utcnow(), "entry": "{}", "leaf_hash": rfc9162.sha256(b"\x00" + data)}],
                )
            audit.sequence_pending()
            assert head_of(audit).tree_head.root_hash == rfc9162.KAT_ROOTS[n]

    def test_an_empty_log_signs_the_empty_root(self, audit) -> None:
        assert audit.sequence_pending() == 0
        head = head_of(audit)
        assert (head.tree_head.tree_size, head.tree_head.root_hash) == (0, rfc9162.EMPTY_ROOT)

    def test_batches_and_restarts_extend_the_same_tree(self, audit, keys) -> None:
        fill(audit, 5)
        audit.sequence_pending()
        fill(audit, 9, start=5)
        audit.sequence_pending()
        cold = AuditLog(engine=audit.engine, node_id="rcc-test", keys=keys)  # a restarted worker: no cache
        fill(cold, 3, start=14)
        assert cold.sequence_pending() == 3
        assert head_of(audit).tree_head.root_hash == rfc9162.root(stored_leaves(audit)).hex()

    def test_large_backlogs_are_sequenced_in_bounded_batches(self, audit) -> None:
        audit.max_batch = 4
        fill(audit, 10)
        assert [audit.step() for _ in range(4)] == [4, 4, 2, 0]
        assert head_of(audit).tree_head.tree_size == 10

    def test_heartbeat_resigns_an_unchanged_tree(self, audit) -> None:
        audit.sequence_pending()
        first = head_of(audit)
        assert audit.step() == 0 and head_of(audit) == first  # nothing new, heartbeat not due
        audit.heartbeat_interval = 0
        assert audit.step() == 0
        second = head_of(audit)
        assert second.tree_head.timestamp > first.tree_head.timestamp
        assert second.tree_head.root_hash == first.tree_head.root_hash

    def test_a_store_missing_nodes_is_not_extended(self, audit, keys) -> None:
        fill(audit, 6)
        audit.sequence_pending()
        with audit.engine.begin() as conn:
            conn.execute(delete(NODE).where(NODE.c.level == 2, NODE.c.idx == 0))
        fill(audit, 1, start=6)
        cold = AuditLog(engine=audit.engine, node_id="rcc-test", keys=keys)
        with pytest.raises((MissingNodeError, AuditStoreError)):
            cold.step()
        assert head_of(audit).tree_head.tree_size == 6

    def test_a_head_that_disagrees_with_the_nodes_is_not_extended(self, audit, keys) -> None:
        fill(audit, 4)
        audit.sequence_pending()
        with audit.engine.begin() as conn:
            conn.execute(update(HEAD).values(root_hash="00" * 32))
        fill(audit, 1, start=4)
        with pytest.raises(AuditStoreError, match="stored nodes give root"):
            AuditLog(engine=audit.engine, node_id="rcc-test", keys=keys).step()


class TestWriter:
    def test_append_is_durable_before_it_returns(self, audit) -> None:
        entry = sample_entry(1)
        audit.append(entry)
        with audit.engine.connect() as conn:
            assert conn.execute(select(ENTRY.c.entry, ENTRY.c.seq)).one() == (entry.canonical.decode(), None)

    def test_concurrent_appends_and_sequencing_give_a_gap_free_duplicate_free_log(self, audit) -> None:
        audit.start()
        threads, per_thread = 8, 40

        def worker(t: int) -> None:
            for i in range(per_thread):
                audit.append(sample_entry(t * 1000 + i))

        pool = [threading.Thread(target=worker, args=(t,)) for t in range(threads)]
        for thread in pool:
            thread.start()
        for thread in pool:
            thread.join()
        audit.sequence_pending()
        with audit.engine.connect() as conn:
            rows = conn.execute(select(ENTRY.c.seq, ENTRY.c.entry)).all()
        assert sorted(r.seq for r in rows) == list(range(threads * per_thread))
        assert len({r.entry for r in rows}) == threads * per_thread
        assert head_of(audit).tree_head.root_hash == rfc9162.root(stored_leaves(audit)).hex()

    def test_sequencers_of_several_workers_take_turns(self, audit, keys, shared_db_url) -> None:
        # Each "worker" has its own engine, writer and sequencer on the one database, as uvicorn workers do.
        workers = [AuditLog(engine=make_engine(shared_db_url), node_id="rcc-test", keys=keys) for _ in range(3)]
        try:

            def run(w: int) -> None:
                for i in range(30):
                    workers[w].append(sample_entry(w * 1000 + i))
                    if i % 7 == 0:
                        workers[w].sequence_pending()

            pool = [threading.Thread(target=run, args=(w,)) for w in range(3)]
            for thread in pool:
                thread.start()
            for thread in pool:
                thread.join()
            workers[0].sequence_pending()
        finally:
            for worker in workers:
                worker.stop()
                worker.engine.dispose()
        leaves = stored_leaves(audit)  # asserts indices 0..89 exactly once each
        assert len(leaves) == 90
        assert head_of(audit).tree_head.root_hash == rfc9162.root(leaves).hex()

    def test_background_sequencer_signs_new_entries_without_being_asked(self, audit) -> None:
        audit.start()
        audit.append(sample_entry(1))
        head = wait_for(lambda: (h := head_of(audit)) is not None and h.tree_head.tree_size >= 1 and h, timeout=10)
        assert head.tree_head.tree_size == 1

    def test_a_failed_write_is_reported_not_swallowed(self, db_url, keys) -> None:
        engine = make_engine(db_url)  # never migrated: no audit_entry table
        log = AuditLog(engine=engine, node_id="rcc-test", keys=keys)
        try:
            with pytest.raises(AuditUnavailable):
                log.append(sample_entry(1))
        finally:
            log.stop()
            engine.dispose()

    def test_one_loop_turns_entries_reach_the_writer_thread_as_one_batch(self, audit, monkeypatch) -> None:
        writer = audit.writer
        monkeypatch.setattr(writer, "_inline", False)  # the writer-thread path, as on PostgreSQL
        batches = committed_batches(writer, monkeypatch)

        async def many() -> None:
            await asyncio.gather(*(audit.aappend(sample_entry(i)) for i in range(20)))

        asyncio.run(many())
        assert batches == [20]  # one hand-over, one transaction, every waiter released
        assert audit.sequence_pending() == 20

    def test_entries_of_the_next_loop_turn_share_the_commit(self, audit, monkeypatch) -> None:
        # Requests that finish one turn after the first (their bytes arrived while it was answered) join its
        # batch: one commit for both on either path.
        writer = audit.writer
        batches = committed_batches(writer, monkeypatch)

        async def later(i: int) -> None:
            await asyncio.sleep(0)  # one loop turn after the first append
            await audit.aappend(sample_entry(i))

        async def staggered() -> None:
            await asyncio.gather(audit.aappend(sample_entry(0)), later(1))

        asyncio.run(staggered())
        assert batches == [2]
        assert audit.sequence_pending() == 2

    def test_stopped_log_restarts_on_the_next_append(self, audit) -> None:
        audit.append(sample_entry(1))
        audit.stop()
        audit.append(sample_entry(2))
        assert audit.sequence_pending() == 2


class TestAppendIn:
    def test_state_change_and_entry_commit_together(self, audit) -> None:
        context = AuditContext(actor_id="c1")
        entry = build_entry(node_id="rcc-test", direction="inbound", action="x.create", context=context, status=201)
        with Session(audit.engine) as session:
            append_in(session, entry)
            assert not context.recorded
            session.commit()
        assert context.recorded
        assert audit.sequence_pending() == 1

    def test_a_rolled_back_change_leaves_no_entry(self, audit) -> None:
        context = AuditContext(actor_id="c1")
        entry = build_entry(node_id="rcc-test", direction="inbound", action="x.create", context=context)
        with Session(audit.engine) as session:
            append_in(session, entry)
            session.rollback()
        assert not context.recorded
        assert audit.sequence_pending() == 0


class TestOutbound:
    @pytest.fixture
    def node(self, module_settings, keys, audit):
        node = Node(settings=module_settings, engine=audit.engine, keys=keys, head_revisions=set())
        node.extensions["audit"] = audit
        return node

    def test_outbound_call_is_recorded_with_the_peer_signature(self, node) -> None:
        caller = AuditContext(actor_type="client", actor_id="commissioner-app", roles=["commissioner"])
        append_outbound(
            node,
            peer="rcc-gm",
            action="capacity.search",
            dataset="capacity.vacancies",
            purpose="placement-search",
            agreement="agr-1",
            status=200,
            outcome="ok",
            request_sha256="aa" * 32,
            response_sha256="bb" * 32,
            peer_signature="eyJhbGciOiJFZERTQSJ9.e30.sig",
            result_count=3,
            request_id="r-1",
            context=caller,
        )
        asyncio.run(
            aappend_outbound(
                node,
                peer="rcc-ldn",
                action="capacity.search",
                dataset="capacity.vacancies",
                purpose="placement-search",
                agreement=None,
                status=403,
                outcome="refused",
                request_sha256="aa" * 32,
                response_sha256=None,
                peer_signature=None,
                result_count=None,
                request_id="r-1",
            )
        )
        assert sequence_pending(node) == 2
        assert audit_log(node) is node.extensions["audit"]
        with node.engine.connect() as conn:
            rows = conn.execute(select(ENTRY.c.peer, ENTRY.c.decision, ENTRY.c.entry).order_by(ENTRY.c.seq)).all()
        assert [(r.peer, r.decision) for r in rows] == [("rcc-gm", "permit"), ("rcc-ldn", "deny")]
        assert '"direction":"outbound"' in rows[0].entry and '"actor_id":"commissioner-app"' in rows[0].entry
        assert '"peer_signature":"eyJhbGciOiJFZERTQSJ9.e30.sig"' in rows[0].entry
        assert '"reason":"refused"' in rows[1].entry

    def test_timeouts_decide_nothing(self, node) -> None:
        append_outbound(
            node,
            peer="rcc-gm",
            action="x",
            dataset=None,
            purpose=None,
            agreement=None,
            status=None,
            outcome="timeout",
            request_sha256=None,
            response_sha256=None,
            peer_signature=None,
            result_count=None,
            request_id=None,
        )
        sequence_pending(node)
        with node.engine.connect() as conn:
            assert conn.execute(select(ENTRY.c.decision)).scalar_one() is None

    def test_a_command_closing_its_log_keeps_its_entries_and_holds_no_connection(
        self, module_settings, keys, audit
    ) -> None:
        # What a command that called peers does before it ends (registry.cli.common.node_federation); ``audit``
        # only empties the log first, on the same database.
        engine = make_engine(module_settings.effective_database_url)
        node = Node(settings=module_settings, engine=engine, keys=keys, head_revisions=set())
        try:
            asyncio.run(
                aappend_outbound(
                    node,
                    peer="rcc-gm",
                    action="POST /federation/v1/agreements/inbox",
                    dataset=None,
                    purpose=None,
                    agreement="agr-1",
                    status=202,
                    outcome="ok",
                    request_sha256=None,
                    response_sha256=None,
                    peer_signature=None,
                    result_count=None,
                    request_id="cli-1",
                )
            )
            assert engine.pool.checkedout() > 0  # the log's writer holds one
            close_audit_log(node)
            close_audit_log(node)  # twice is harmless
            assert engine.pool.checkedout() == 0
            assert "audit" not in node.extensions
        finally:
            engine.dispose()
        with audit.engine.connect() as conn:
            stored = conn.execute(select(ENTRY.c.entry).where(ENTRY.c.seq.is_(None))).scalars().all()
        assert len(stored) == 1 and '"request_id":"cli-1"' in stored[0]


def test_entry_times_round_trip_on_both_engines(audit) -> None:
    moment = utcnow() - timedelta(days=3)
    with audit.engine.begin() as conn:
        conn.execute(insert(ENTRY), [{"ts": moment, "entry": "{}", "leaf_hash": b"\x00" * 32}])
    with audit.engine.connect() as conn:
        assert conn.execute(select(ENTRY.c.ts)).scalar_one() == moment


class TestReadiness:
    def test_ready_while_entries_are_sequenced_and_not_when_they_pile_up(self, audit) -> None:
        from registry.core.audit.install import readiness

        name, ok, detail = readiness(audit)
        assert (name, ok) == ("audit_log", True)
        stale = sample_entry(1)
        with audit.engine.begin() as conn:
            conn.execute(insert(ENTRY), [{**stale.row(), "ts": utcnow() - timedelta(minutes=5)}])
        _, ok, detail = readiness(audit)
        assert not ok and "oldest_pending" in detail
        audit.sequence_pending()
        assert readiness(audit)[1]
