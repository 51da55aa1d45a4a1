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
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from typing import Any

from sqlalchemy import Engine, delete
from sqlalchemy.dialects import postgresql, sqlite

from federation.models import ReplayEntry
from registry.core.db import utcnow

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

    async def claim(self, *, jti: str, issuer: str, expires_at: datetime) -> bool:
        """Record ``jti`` as used; True if this is its first use, False if it was seen before (a replay).

        Raises whatever the database raises if it cannot record the claim: the caller must then refuse,
        never serve a request whose token it could not burn.
        """
        loop = asyncio.get_running_loop()
        future: asyncio.Future[bool] = loop.create_future()
        self._pending.append((jti, issuer, expires_at, future))
        flusher = self._flusher
        if flusher is None or flusher.done() or flusher.get_loop() is not loop:
            # (A flusher of another loop — an earlier test client's — will never run again: start one here.)
            self._flusher = loop.create_task(self._flush())
        return await future

    def claim_now(self, *, jti: str, issuer: str, expires_at: datetime) -> bool:
        """Synchronous single claim (command line, tests)."""
        return jti in self._insert([(jti, issuer, expires_at)])

    async def _flush(self) -> None:
        loop = asyncio.get_running_loop()
        while self._pending:
            batch, self._pending = self._pending[: self.max_batch], self._pending[self.max_batch :]
            fresh: list[_Pending] = []
            seen: set[str] = set()
            for item in batch:
                if item[0] in seen:  # the same jti twice in one batch: the second is a replay
                    _settle(item[3], False)
                else:
                    seen.add(item[0])
                    fresh.append(item)
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
        with self.engine.begin() as connection:
            result = connection.execute(delete(table).where(table.c.expires_at < (now or utcnow())))
            return int(result.rowcount)

    def close(self) -> None:
        """Stop the writer thread (pending claims already handed to it still complete)."""
        self._executor.shutdown(wait=False)


def _settle(future: asyncio.Future[bool], value: bool) -> None:
    if future.done():  # the waiting request was cancelled (client went away)
        return
    with contextlib.suppress(RuntimeError):  # its event loop is closed: nobody is waiting any more
        future.set_result(value)
