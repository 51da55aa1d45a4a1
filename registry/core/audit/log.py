"""One node's audit log at run time: the durable writer and the sequencer.

**Writing** (fail closed, off the ORM session) is :mod:`registry.core.audit.writer`: every entry is committed,
unsequenced, before the request it records is answered, concurrent requests sharing a commit.

**Sequencing** (group commit). A background thread per process assigns contiguous indices to pending
entries in batches. Woken when the writer reports a commit, it lingers ``linger`` seconds so the entries of
concurrent requests share one batch; then, in one transaction, it locks the single ``audit_head`` row (an
``UPDATE``: a row lock on PostgreSQL, the write lock on SQLite), reads the tree size, takes pending entries
in arrival order, stores each newly completed perfect subtree (``CompactRange``), and signs a new tree head.
The lock makes exactly one sequencer at a time extend the tree across all workers, and ``seq`` is unique, so
the sequence is gap-free and duplicate-free. Besides the writer's wake-ups it polls every ``poll_interval``
for entries written elsewhere (other workers, ``append_in``), and re-signs an unchanged head every
``heartbeat_interval`` so witnesses see it alive. :meth:`AuditLog.sequence_pending` does the same
synchronously (tests, CLI).

Threads start on demand and stop when the app shuts down or is garbage-collected; nothing depends on the ASGI
lifespan having run.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import logging
import threading
import time
from collections.abc import Iterator, Sequence
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, Engine, Integer, bindparam, event, insert, select, update

from registry.core.audit.entry import PreparedEntry, format_time
from registry.core.audit.errors import AuditStoreError
from registry.core.audit.models import HEAD_ROW_ID, SignedTreeHead, TreeHead
from registry.core.audit.store import (
    ENTRY,
    HEAD,
    NODE,
    append_in,
    fetch_nodes,
    read_head,
    signed_head_of,
)
from registry.core.audit.writer import AuditObserver, EntryWriter
from registry.core.db import utcnow
from registry.core.keys import KeyRing
from registry.core.merkle import CompactRange
from registry.core.signing import TYP_TREE_HEAD, sign_detached

log = logging.getLogger("rcc.audit")

__all__ = [
    "ENTRY",
    "HEAD",
    "NODE",
    "AuditLog",
    "AuditObserver",
    "EntryWriter",
    "append_in",
    "fetch_nodes",
    "read_head",
    "signed_head_of",
]


# The sequencer's statements, built once with every value bound. Built on every step, they left expression
# cycles (a bound parameter and its comparator) for the garbage collector each time, on the thread that
# every request's entry passes through.
_PENDING = (
    select(ENTRY.c.id, ENTRY.c.leaf_hash)
    .where(ENTRY.c.seq.is_(None))
    .order_by(ENTRY.c.id)
    .limit(bindparam("batch", type_=Integer()))
)
_ASSIGN = (
    update(ENTRY)
    .where(ENTRY.c.id >= bindparam("low"), ENTRY.c.id <= bindparam("high"), ENTRY.c.seq.is_(None))
    .values(seq=ENTRY.c.id + bindparam("offset", type_=ENTRY.c.id.type))
)
_HAS_WORK = select(
    select(ENTRY.c.id).where(ENTRY.c.seq.is_(None)).limit(1).scalar_subquery(), HEAD.c.signature, HEAD.c.signed_at
).where(HEAD.c.id == HEAD_ROW_ID)
_LOCK_HEAD = (
    update(HEAD)
    .where(HEAD.c.id == HEAD_ROW_ID)
    .values(tree_size=HEAD.c.tree_size)
    .returning(HEAD.c.tree_size, HEAD.c.root_hash, HEAD.c.signed_at, HEAD.c.signature)
)
_HEAD_ROW_UPDATE = update(HEAD).where(HEAD.c.id == HEAD_ROW_ID)  # the columns set come with the values


class AuditLog:
    """The durable writer and the sequencer of one node's audit log, in this process."""

    def __init__(
        self,
        *,
        engine: Engine,
        node_id: str,
        keys: KeyRing,
        poll_interval: float = 0.5,
        linger: float = 0.3,
        heartbeat_interval: float = 60.0,
        max_batch: int = 10_000,
        max_write_batch: int = 1_000,
        observer: AuditObserver | None = None,
    ) -> None:
        self.engine = engine
        self.node_id = node_id
        self.keys = keys
        self.poll_interval = poll_interval
        self.linger = linger
        self.heartbeat_interval = heartbeat_interval
        self.max_batch = max_batch
        self.max_write_batch = max_write_batch
        self._sequencer: threading.Thread | None = None
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._threads_lock = threading.Lock()
        # SQLite has one writer at a time per database; serialising this process's own writers here avoids
        # its busy handler, which sleeps in milliseconds. PostgreSQL needs no such lock.
        self._sqlite = engine.dialect.name == "sqlite"
        self._write_lock = threading.Lock()
        self._compact: CompactRange | None = None
        self.observer = observer
        self._last_error: str | None = None
        self.writer = EntryWriter(
            engine,
            lock=self._write_lock if self._sqlite else None,
            on_commit=self._wake.set,
            observer=lambda: self.observer,
            max_batch=max_write_batch,
        )
        # A disposed engine means its owner is done with it (a test's node, a shut-down app): stop polling it.
        # Both threads start again on demand if the log is used after all.
        event.listen(engine, "engine_disposed", self._engine_disposed)

    @property
    def sqlite_write_lock(self) -> threading.Lock | None:
        """This process's SQLite writer lock (None on other engines), for the node's other hot writers to share.

        SQLite admits one writer at a time; writers of one process that take turns under this lock never fall
        into SQLite's busy handler, which sleeps in milliseconds.
        """
        return self._write_lock if self._sqlite else None

    def _engine_disposed(self, _engine: Engine) -> None:
        self.stop(0.0)

    # ------------------------------------------------------------------------------------------------
    # Writing

    def submit(self, entry: PreparedEntry) -> concurrent.futures.Future[None]:
        """Queue an entry for the writer; the future resolves once it is committed (or fails)."""
        return self.writer.submit(entry)

    def append(self, entry: PreparedEntry, timeout: float = 30.0) -> None:
        """Store an entry durably (unsequenced); raise :class:`AuditUnavailable` if it could not be."""
        self.writer.append(entry, timeout)

    async def aappend(self, entry: PreparedEntry) -> None:
        """:meth:`append` for async code: the event loop keeps serving while the entry is stored."""
        await self.writer.aappend(entry)

    def insert_now(self, entries: Sequence[PreparedEntry]) -> None:
        """Insert entries in one transaction on the calling thread (CLI, bulk tools)."""
        with self._write_guard(), self.engine.begin() as conn:
            conn.execute(insert(ENTRY), [e.row() for e in entries])
        self._wake.set()

    @contextlib.contextmanager
    def _write_guard(self) -> Iterator[None]:
        if self._sqlite:
            with self._write_lock:
                yield
        else:
            yield

    # ------------------------------------------------------------------------------------------------
    # Sequencing

    def notify(self) -> None:
        """Tell the sequencer there is something to sequence (it also polls)."""
        self._wake.set()

    def start(self) -> None:
        """Start the sequencer thread (idempotent); the writer starts with the first entry."""
        with self._threads_lock:
            self._stopping.clear()
            if self._sequencer is None or not self._sequencer.is_alive():
                self._sequencer = threading.Thread(target=self._sequence_loop, name="rcc-audit-sequencer", daemon=True)
                self._sequencer.start()

    def ensure_running(self) -> None:
        """Restart the sequencer if it was stopped (an app reused after its lifespan ended)."""
        sequencer = self._sequencer
        if sequencer is None or not sequencer.is_alive():
            self.start()

    def stop(self, timeout: float = 5.0) -> None:
        """Stop both threads after the writer has flushed what it holds. Safe to call more than once."""
        with self._threads_lock:
            self._stopping.set()
            self._wake.set()
            sequencer = self._sequencer
        self.writer.stop(timeout)
        if sequencer is not None and sequencer is not threading.current_thread():
            sequencer.join(timeout)

    def _sequence_loop(self) -> None:
        delay = self.poll_interval
        woken = True  # sign a first head (or catch up on a backlog) as soon as the node starts
        while not self._stopping.is_set():
            if woken and self.linger > 0:
                # Group commit: let the entries of concurrent requests gather, then sequence them in one go.
                self._stopping.wait(self.linger)
            try:
                while self.step() >= self.max_batch and not self._stopping.is_set():
                    pass  # a full batch: there may be more waiting
                if self._last_error is not None:
                    log.warning("audit sequencer recovered")
                    self._last_error = None
                delay = self.poll_interval
            except Exception as exc:  # keep the thread alive: log once per distinct failure, back off
                message = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
                if message != self._last_error:
                    log.error("audit sequencer failed: %s", message)
                    self._last_error = message
                self._compact = None
                delay = min(max(delay * 2, self.poll_interval), 30.0)
            woken = self._wake.wait(delay)
            self._wake.clear()

    def sequence_pending(self) -> int:
        """Sequence every pending entry now, on this thread, and make sure a signed head exists.

        Returns how many entries were sequenced. Safe beside running sequencers (they take turns on the lock).
        """
        total = 0
        while True:
            count = self.step()
            total += count
            if count == 0:
                return total

    def sign_now(self) -> SignedTreeHead:
        """Re-sign the current tree (after sequencing anything pending) and return the new head."""
        self.sequence_pending()
        self.step(force_sign=True)
        with self.engine.connect() as conn:
            head = signed_head_of(read_head(conn))
        assert head is not None  # noqa: S101 - step(force_sign=True) just signed it
        return head

    def step(self, *, force_sign: bool = False) -> int:
        """One sequencer transaction: up to ``max_batch`` pending entries, then a signed head.

        Returns the number of entries sequenced (0 when there was nothing to do, or only a re-signing).
        """
        with self._write_guard(), self.engine.connect() as conn:
            if not force_sign and not self._has_work(conn):
                conn.rollback()
                return 0
            head = self._lock_head(conn)
            rows = conn.execute(_PENDING, {"batch": self.max_batch}).all()
            if not rows and not (force_sign or head.signature is None or self._heartbeat_due(head.signed_at)):
                conn.rollback()
                return 0
            size = int(head.tree_size)
            work = self._compact_at(conn, size, head.root_hash).copy()
            completed = work.extend_rows([bytes(leaf) for _, leaf in rows])
            if rows:
                self._assign(conn, [int(entry_id) for entry_id, _ in rows], size)
                # Straight to the driver's executemany: thousands of three-column rows, nothing to compile.
                mark = "?" if conn.dialect.paramstyle == "qmark" else "%s"
                conn.exec_driver_sql(
                    f"INSERT INTO audit_node (level, idx, digest) VALUES ({mark}, {mark}, {mark})",  # noqa: S608
                    completed,
                )
            root_hex = work.root().hex()
            moment = max(utcnow(), head.signed_at) if head.signed_at is not None else utcnow()
            document = TreeHead(
                node_id=self.node_id, tree_size=work.size, root_hash=root_hex, timestamp=format_time(moment)
            )
            signature = sign_detached(document.model_dump(), self.keys.active, typ=TYP_TREE_HEAD)
            conn.execute(
                _HEAD_ROW_UPDATE,
                {
                    "node_id": self.node_id,
                    "tree_size": work.size,
                    "root_hash": root_hex,
                    "signed_at": moment,
                    "signature": signature,
                },
            )
            conn.commit()
        self._compact = work
        if self.observer is not None:
            self.observer.signed(size, work.size, time.perf_counter())
        return len(rows)

    @staticmethod
    def _assign(conn: Connection, ids: list[int], size: int) -> None:
        """Give the entries ``ids`` (in arrival order) the indices ``size, size + 1, …``.

        Ids usually come in unbroken runs, so each run is one ``UPDATE … SET seq = id + offset`` rather
        than one statement per entry. Every row must still be pending, or the transaction is abandoned.
        """
        start = 0
        for end in range(1, len(ids) + 1):
            if end < len(ids) and ids[end] == ids[end - 1] + 1:
                continue
            low, high = ids[start], ids[end - 1]
            result = conn.execute(_ASSIGN, {"low": low, "high": high, "offset": size + start - low})
            if result.rowcount != end - start:
                raise AuditStoreError(f"entries {low}..{high} changed while being sequenced")
            start = end

    def _has_work(self, conn: Connection) -> bool:
        """Cheap, lock-free look (one query): anything pending, no signed head yet, or a heartbeat due."""
        head = conn.execute(_HAS_WORK).first()
        if head is None:
            return True  # let the locked step report the missing head row
        return head[0] is not None or head.signature is None or self._heartbeat_due(head.signed_at)

    def _heartbeat_due(self, signed_at: datetime | None) -> bool:
        return signed_at is None or utcnow() - signed_at >= timedelta(seconds=self.heartbeat_interval)

    def _lock_head(self, conn: Connection) -> Any:
        """Lock the head row for this transaction (the one-sequencer-at-a-time guarantee) and read it."""
        if conn.dialect.name == "postgresql":
            conn.exec_driver_sql("SET LOCAL lock_timeout = '15s'")
        head = conn.execute(_LOCK_HEAD).first()
        if head is None:
            raise AuditStoreError("the audit_head row is missing; the log cannot be extended")
        return head

    def _compact_at(self, conn: Connection, size: int, root_hex: str) -> CompactRange:
        """The compact range at ``size``: kept from the last step, or rebuilt from O(log n) stored nodes."""
        cached = self._compact
        if cached is not None and cached.size == size and cached.root().hex() == root_hex:
            return cached
        compact = CompactRange.from_store(size, lambda ids: fetch_nodes(conn, ids))
        if size and compact.root().hex() != root_hex:
            raise AuditStoreError(
                f"stored nodes give root {compact.root().hex()} at size {size}, but the head says {root_hex}"
            )
        return compact
