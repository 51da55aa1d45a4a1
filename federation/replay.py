"""The replay cache: every request token's ``jti`` is used once, across all workers of a node.

A ``jti`` is claimed by inserting it into ``federation_replay``, whose primary key is the unique constraint
that makes a second use fail — in whichever worker or process it arrives, on SQLite and PostgreSQL alike.
The claim is committed before the request goes any further, so an acknowledged request can never be replayed
after a crash. Rows live until the token could no longer be accepted anyway (``exp`` + clock skew) and are
then purged.

Why a sequencer: a commit per request would serialise every federated call on the database's fsync and put
a blocking driver call on the event loop. Claims instead queue up and one thread writes them in batches
(``INSERT … ON CONFLICT DO NOTHING RETURNING jti``: the rows not returned were replays), one transaction per
batch — group commit — while the event loop keeps serving.

On SQLite a node has one writer at a time anyway, and handing each claim to a thread costs more than the
write (a GIL hand-over and a wake-up per batch, measured as the largest single cost of a federated ping after
the signature check). There, once :meth:`ReplayCache.share_write_lock` has given the cache the process's
SQLite write lock (the audit log's, so claims and audit entries never meet SQLite's busy handler, which
sleeps in milliseconds), the claims an event loop gathers in one turn are inserted on that loop at the end of
the turn, over one kept connection that never waits: if the lock is taken or the write fails, the batch goes
to the writer thread as before. Either way the claim is committed before ``claim`` returns.

Inline, the claims need no ``RETURNING``: when the insert's row count equals the batch size every claim was
fresh (the usual case), and only a batch holding a replay is written again to learn which (``RETURNING`` on
SQLite costs as much again as the insert).
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from typing import Any

from sqlalchemy import Engine, delete
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.pool import PoolProxiedConnection

from federation.models import ReplayEntry
from registry.core.db import KeptConnection, utcnow

_Pending = tuple[str, str, datetime, "asyncio.Future[bool]"]


class ReplayCache:
    """Single-use ``jti`` claims, batched into group commits by one writer thread."""

    def __init__(self, engine: Engine, *, max_batch: int = 256, purge_every_seconds: float = 60.0) -> None:
        self.engine = engine
        self.max_batch = max_batch
        self.purge_every_seconds = purge_every_seconds
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="rcc-replay")
        self._pending: list[_Pending] = []
        self._flusher: asyncio.Task[None] | None = None
        self._next_purge = time.monotonic() + purge_every_seconds
        self._insert_builder: Any = postgresql.insert if engine.dialect.name == "postgresql" else sqlite.insert
        self._sqlite = engine.dialect.name == "sqlite"
        self._write_lock: threading.Lock | None = None
        # Inline claims (SQLite with a shared write lock): per event loop, the claims of the current turn.
        self._turn: dict[asyncio.AbstractEventLoop, list[_Pending]] = {}
        self._inline = KeptConnection(engine, busy_timeout_ms=0)  # never waits: a busy lock sends work to the thread
        self._sql: dict[int, str] = {}  # the inline INSERT per batch size
        table = ReplayEntry.__table__  # type: ignore[attr-defined]
        self._expires_bind = table.c.expires_at.type.bind_processor(engine.dialect)

    def share_write_lock(self, lock: threading.Lock) -> None:
        """SQLite only: serialise this cache's writes with the process's other writers under ``lock``.

        Also turns on inline claims (see the module docstring). Ignored on other engines, whose writers do
        not exclude each other.
        """
        if self._sqlite:
            self._write_lock = lock

    async def claim(self, *, jti: str, issuer: str, expires_at: datetime) -> bool:
        """Record ``jti`` as used; True if this is its first use, False if it was seen before (a replay).

        Raises whatever the database raises if it cannot record the claim: the caller must then refuse,
        never serve a request whose token it could not burn.
        """
        loop = asyncio.get_running_loop()
        future: asyncio.Future[bool] = loop.create_future()
        item = (jti, issuer, expires_at, future)
        if self._write_lock is not None:
            turn = self._turn.get(loop)
            if turn is None:
                turn = self._turn[loop] = []
                loop.call_soon(self._flush_turn, loop)
            turn.append(item)
        else:
            self._to_thread(loop, [item])
        return await future

    def _to_thread(self, loop: asyncio.AbstractEventLoop, items: list[_Pending]) -> None:
        self._pending.extend(items)
        flusher = self._flusher
        if flusher is None or flusher.done() or flusher.get_loop() is not loop:
            # (A flusher of another loop — an earlier test client's — will never run again: start one here.)
            self._flusher = loop.create_task(self._flush())

    def _flush_turn(self, loop: asyncio.AbstractEventLoop) -> None:
        """End of an event-loop turn: insert its claims here if the write lock is free, else via the thread."""
        batch = self._turn.pop(loop, [])
        lock = self._write_lock
        if not batch or lock is None:
            return
        if not lock.acquire(blocking=False):
            self._to_thread(loop, batch)
            return
        try:
            fresh, replays = _split_repeats(batch)
            inserted = self._insert_inline(fresh)
        except Exception:  # busy (another worker is writing) or anything else: let the writer thread try
            self._to_thread(loop, batch)
            return
        finally:
            lock.release()
        self._settle_inline(replays, fresh, inserted)

    def _settle_inline(self, replays: list[_Pending], fresh: list[_Pending], inserted: set[str] | None) -> None:
        """Answer an inline batch's claims (``inserted`` None: every fresh claim was inserted); purge when due."""
        for item in replays:
            _settle(item[3], False)
        for jti, _issuer, _exp, future in fresh:
            _settle(future, inserted is None or jti in inserted)
        if time.monotonic() >= self._next_purge:
            self._next_purge = time.monotonic() + self.purge_every_seconds
            self._executor.submit(self.purge)

    def _insert_statement(self, rows: list[_Pending]) -> tuple[str, list[Any]]:
        """The inline multi-row ``INSERT … ON CONFLICT DO NOTHING`` for ``rows``, and its parameters."""
        sql = self._sql.get(len(rows))
        if sql is None:
            marks = ", ".join(["(?, ?, ?)"] * len(rows))
            # Only placeholders are spliced in; every value travels as a bound parameter.
            sql = self._sql[len(rows)] = (
                f"INSERT INTO federation_replay (jti, issuer, expires_at) VALUES {marks} "  # noqa: S608
                "ON CONFLICT (jti) DO NOTHING"
            )
        process = self._expires_bind
        params = [v for jti, issuer, exp, _ in rows for v in (jti, issuer, process(exp) if process else exp)]
        return sql, params

    def _insert_inline(self, rows: list[_Pending]) -> set[str] | None:
        """The claims in one transaction over the kept connection, never waiting for SQLite's lock.

        Returns None when every row was inserted, else the jtis that were (the others were replays).
        """
        sql, params = self._insert_statement(rows)

        def insert(connection: PoolProxiedConnection, cursor: Any) -> set[str] | None:
            cursor.execute(sql, params)
            if cursor.rowcount == len(rows):
                return None
            connection.rollback()  # a replay among them: write the batch again to learn which
            cursor.execute(sql + " RETURNING jti", params)
            return {str(row[0]) for row in cursor.fetchall()}

        return self._inline.transaction(insert)

    def claim_now(self, *, jti: str, issuer: str, expires_at: datetime) -> bool:
        """Synchronous single claim (command line, tests)."""
        return jti in self._insert([(jti, issuer, expires_at)])

    async def _flush(self) -> None:
        loop = asyncio.get_running_loop()
        while self._pending:
            batch, self._pending = self._pending[: self.max_batch], self._pending[self.max_batch :]
            fresh, replays = _split_repeats(batch)
            for item in replays:
                _settle(item[3], False)
            try:
                inserted = await loop.run_in_executor(
                    self._executor, self._insert, [(jti, issuer, exp) for jti, issuer, exp, _ in fresh]
                )
            except Exception as exc:
                for item in fresh:
                    if not item[3].done():
                        with contextlib.suppress(RuntimeError):
                            item[3].set_exception(exc)
                continue
            for jti, _issuer, _exp, future in fresh:
                _settle(future, jti in inserted)
            if time.monotonic() >= self._next_purge:
                self._next_purge = time.monotonic() + self.purge_every_seconds
                await loop.run_in_executor(self._executor, self.purge)

    def _insert(self, rows: list[tuple[str, str, datetime]]) -> set[str]:
        if not rows:
            return set()
        with self._guard():
            return self._insert_unlocked(rows)

    @contextlib.contextmanager
    def _guard(self) -> Iterator[None]:
        lock = self._write_lock
        if lock is None:
            yield
        else:
            with lock:
                yield

    def _insert_unlocked(self, rows: list[tuple[str, str, datetime]]) -> set[str]:
        table = ReplayEntry.__table__  # type: ignore[attr-defined]
        statement = (
            self._insert_builder(table)
            .values([{"jti": jti, "issuer": issuer, "expires_at": exp} for jti, issuer, exp in rows])
            .on_conflict_do_nothing(index_elements=["jti"])
            .returning(table.c.jti)
        )
        with self.engine.begin() as connection:
            return set(connection.execute(statement).scalars())

    def purge(self, now: datetime | None = None) -> int:
        """Delete claims whose tokens have expired beyond the clock skew; returns how many."""
        table = ReplayEntry.__table__  # type: ignore[attr-defined]
        with self._guard(), self.engine.begin() as connection:
            result = connection.execute(delete(table).where(table.c.expires_at < (now or utcnow())))
            return int(result.rowcount)

    def close(self) -> None:
        """Stop the writer thread once the claims already handed to it are written; drop the kept connection.

        Waits for the thread: a claim or purge still running would otherwise give its connection back after the
        node's engine was disposed of, to a pool nobody holds (see ``registry.core.threads``).
        """
        self._executor.shutdown(wait=True)
        lock = self._write_lock
        if lock is None:
            self._inline.release()
        elif lock.acquire(timeout=5.0):
            try:
                self._inline.release()
            finally:
                lock.release()


def _split_repeats(batch: list[_Pending]) -> tuple[list[_Pending], list[_Pending]]:
    """The first claim of each jti in a batch, and the repeats (replays within the batch itself)."""
    fresh: list[_Pending] = []
    repeats: list[_Pending] = []
    seen: set[str] = set()
    for item in batch:
        if item[0] in seen:
            repeats.append(item)
        else:
            seen.add(item[0])
            fresh.append(item)
    return fresh, repeats


def _settle(future: asyncio.Future[bool], value: bool) -> None:
    if future.done():  # the waiting request was cancelled (client went away)
        return
    with contextlib.suppress(RuntimeError):  # its event loop is closed: nobody is waiting any more
        future.set_result(value)
