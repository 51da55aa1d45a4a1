"""The durable writer: every entry is committed, unsequenced, before the request it records is answered.

Requests hand their entry over and wait. The writer inserts whatever entries are waiting in *one* short
transaction on a plain DBAPI connection (off the request's ORM session) and then releases every waiter:
with one request in flight that is a one-row transaction; under load, concurrent requests share a commit.
Measured on this machine's PostgreSQL (fsync on), one row per transaction tops out near 1,000 rows/s however
many threads write, so sharing the commit is what lets a node record thousands of requests a second. If the
insert fails, every waiter gets :class:`AuditUnavailable` and its request answers 503.

Two paths, chosen per call:

- **writer thread** (PostgreSQL always; SQLite when contended): the entries an event loop gathers in one turn
  are handed over as one queue item (one wake-up of the thread, not one per request); a background thread
  drains the queue, inserts the batch, and wakes each waiting event loop once per batch
  (``call_soon_threadsafe``). The database round trip and fsync happen off the event loop.
- **inline** (SQLite, uncontended): entries of the requests an event loop finishes are inserted on that loop:
  a local write of well under a millisecond, with no thread hand-off. Handing every entry to a thread cost a
  one-worker node about a third of its throughput on this machine (the GIL hand-over dominates a write this
  small). The inline connection never waits: if this process's sequencer or another worker holds SQLite's
  write lock, or anything else goes wrong, the batch simply goes to the writer thread instead.

Either way a batch leaves :data:`GATHER_TURNS` loop turns after its first entry, not at the end of that first
turn: the requests whose bytes arrive while the first ones are being answered finish in the next turn and
share the commit. A SQLite commit costs several times a row, so on a busy node this roughly doubles the
requests per commit (4.5 to 7.7 with eight keep-alive clients measured here, -18 µs of CPU per request),
for one extra pass of an event loop (microseconds) when a request is alone.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
import queue
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any, Protocol

from sqlalchemy import Engine

from registry.core.audit.entry import PreparedEntry
from registry.core.audit.errors import AuditUnavailable
from registry.core.audit.store import EntryInserter

log = logging.getLogger("rcc.audit")

IDLE_SECONDS = 5.0  # an idle writer gives its connection back to the pool
GATHER_TURNS = 2  # event loop turns a batch stays open for (see the module docstring)
_STOP = object()
Waiter = concurrent.futures.Future[None] | asyncio.Future[None]


class AuditObserver(Protocol):
    """Optional hooks for metrics and benchmarks: when entries commit, when a signed head covers them."""

    def committed(self, entries: Sequence[PreparedEntry], at: float) -> None:
        """``entries`` were durably stored at ``time.perf_counter()`` value ``at``."""

    def signed(self, first: int, size: int, at: float) -> None:
        """Indices ``[first, size)`` were sequenced and covered by a signed head at ``at``."""


def _unavailable() -> AuditUnavailable:
    return AuditUnavailable("the audit log could not store this request's entry")


def _settle(waiters: list[asyncio.Future[None]], failed: bool) -> None:
    """Release one event loop's waiters for a batch (runs on that loop)."""
    for waiter in waiters:
        if not waiter.done():
            if failed:
                waiter.set_exception(_unavailable())
            else:
                waiter.set_result(None)


class EntryWriter:
    """Commits entries for one node in this process; see the module docstring."""

    def __init__(
        self,
        engine: Engine,
        *,
        lock: threading.Lock | None,
        on_commit: Callable[[], None],
        observer: Callable[[], AuditObserver | None],
        max_batch: int = 1_000,
    ) -> None:
        self.engine = engine
        self.max_batch = max_batch
        self._lock = lock
        self._on_commit = on_commit
        self._observer = observer
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._thread_lock = threading.Lock()
        self._inserter = EntryInserter(engine)
        self._inline = engine.dialect.name == "sqlite" and lock is not None
        self._inline_inserter = EntryInserter(engine, busy_timeout_ms=0) if self._inline else None
        self._turn_batches: dict[asyncio.AbstractEventLoop, list[tuple[PreparedEntry, asyncio.Future[None]]]] = {}

    # ------------------------------------------------------------------------------------------------

    def submit(self, entry: PreparedEntry) -> concurrent.futures.Future[None]:
        """Queue an entry for the writer thread; the future resolves once it is committed (or fails)."""
        future: concurrent.futures.Future[None] = concurrent.futures.Future()
        self._to_thread([(entry, future)])
        return future

    def append(self, entry: PreparedEntry, timeout: float = 30.0) -> None:
        """Store an entry durably; raise :class:`AuditUnavailable` if it could not be."""
        try:
            self.submit(entry).result(timeout)
        except concurrent.futures.TimeoutError as exc:
            raise AuditUnavailable("the audit log did not confirm the entry in time") from exc

    async def aappend(self, entry: PreparedEntry) -> None:
        """:meth:`append` for async code; the event loop keeps serving while the entry is stored."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[None] = loop.create_future()
        # The entries of the requests this loop finishes in the next GATHER_TURNS turns leave together: one
        # inline insert, or one hand-over to the writer thread (one queue item, one wake-up).
        batch = self._turn_batches.get(loop)
        if batch is None:
            batch = self._turn_batches[loop] = []
            loop.call_soon(self._gather, loop, GATHER_TURNS - 1)
        batch.append((entry, future))
        await future

    def stop(self, timeout: float) -> None:
        """Stop the writer thread once it has flushed what it holds."""
        with self._thread_lock:
            thread = self._thread
            if thread is not None and thread.is_alive():
                self._queue.put(_STOP)
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)
        if self._inline_inserter is not None and self._lock is not None and self._lock.acquire(timeout=timeout):
            try:
                self._inline_inserter.release()
            finally:
                self._lock.release()

    # ------------------------------------------------------------------------------------------------

    def _insert(self, inserter: EntryInserter, rows: list[dict[str, Any]]) -> None:
        """The one place entry rows reach the database (tests replace it to simulate a failing store)."""
        inserter.insert(rows)

    def _committed(self, batch: Sequence[tuple[PreparedEntry, Waiter]]) -> None:
        observer = self._observer()
        if observer is not None:
            observer.committed([entry for entry, _ in batch], time.perf_counter())
        self._on_commit()

    def _gather(self, loop: asyncio.AbstractEventLoop, turns_left: int) -> None:
        """Keep the loop's batch open for ``turns_left`` more turns, then flush it."""
        if turns_left > 0:
            loop.call_soon(self._gather, loop, turns_left - 1)
        else:
            self._flush_turn(loop)

    def _flush_turn(self, loop: asyncio.AbstractEventLoop) -> None:
        batch = self._turn_batches.pop(loop, [])
        if not batch:
            return
        lock, inserter = self._lock, self._inline_inserter
        if not self._inline or lock is None or inserter is None:
            self._to_thread(list(batch))
            return
        if not lock.acquire(blocking=False):
            self._to_thread(list(batch))  # the sequencer (or the writer thread) is writing: do not wait here
            return
        try:
            self._insert(inserter, [entry.row() for entry, _ in batch])
        except Exception:  # busy (another worker writing) or anything else: let the writer thread try
            self._to_thread(list(batch))
            return
        finally:
            lock.release()
        self._committed(batch)
        _settle([future for _, future in batch], failed=False)

    def _to_thread(self, batch: list[tuple[PreparedEntry, Any]]) -> None:
        self._ensure_thread()
        self._queue.put(batch)  # one item per batch: the writer thread wakes once for all of it

    def _ensure_thread(self) -> None:
        thread = self._thread
        if thread is not None and thread.is_alive():
            return
        with self._thread_lock:
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name="rcc-audit-writer", daemon=True)
                self._thread.start()

    def _run(self) -> None:
        try:
            while True:
                try:
                    item = self._queue.get(timeout=IDLE_SECONDS)
                except queue.Empty:
                    self._inserter.release()
                    continue
                if item is _STOP:
                    return
                batch = list(item)
                stop_after = False
                while len(batch) < self.max_batch:
                    try:
                        item = self._queue.get_nowait()
                    except queue.Empty:
                        break
                    if item is _STOP:
                        stop_after = True
                        break
                    batch.extend(item)
                for start in range(0, len(batch), self.max_batch):
                    self._write(batch[start : start + self.max_batch])
                if stop_after:
                    return
        finally:
            self._inserter.release()

    def _write(self, batch: list[tuple[PreparedEntry, Waiter]]) -> None:
        failed = False
        try:
            with self._lock if self._lock is not None else contextlib.nullcontext():
                self._insert(self._inserter, [entry.row() for entry, _ in batch])
        except Exception as exc:  # any driver failure: every waiting request must fail closed
            log.error("audit write failed for %d entr%s: %s", len(batch), "y" if len(batch) == 1 else "ies", exc)
            failed = True
        else:
            self._committed(batch)
        loops: dict[asyncio.AbstractEventLoop, list[asyncio.Future[None]]] = {}
        for _, waiter in batch:
            if isinstance(waiter, asyncio.Future):
                loops.setdefault(waiter.get_loop(), []).append(waiter)
            elif not waiter.done():
                if failed:
                    waiter.set_exception(_unavailable())
                else:
                    waiter.set_result(None)
        for loop, waiters in loops.items():
            with contextlib.suppress(RuntimeError):  # that loop has closed: nobody is waiting any more
                loop.call_soon_threadsafe(_settle, waiters, failed)
