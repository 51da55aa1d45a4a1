"""The witnessing schedule: one round per interval for the whole node, however many workers serve it.

Every worker of a node runs the same background loop (:class:`federation.witness_task.WitnessScheduler`), so
left alone each would run its own round every interval: N times the calls to every peer, N times the audit
entries, and N writers racing to keep the same heads. Instead the node's one
:class:`~federation.models.WitnessSchedule` row is the claim. A worker starts a scheduled round only through

    UPDATE federation_witness_schedule SET round = round + 1, started_at = :now, …
     WHERE id = 1 AND started_at <= :now - interval

and runs it only if that moved the row. The database serialises two such updates of one row: SQLite holds
its write lock for the whole transaction; on PostgreSQL the second updater waits for the first one's row lock
and then re-checks its ``WHERE`` against the committed row, which no longer matches. So exactly one worker
wins each interval, on both engines, and the others go back to sleep until that round's interval has passed.
The very first round inserts the row instead; a concurrent insert fails on the primary key, and that worker
has lost. An advisory lock was not chosen (PostgreSQL only; SQLite has none), nor only making the writes
idempotent (there would still be N rounds); the row is also what ``GET /v1/audit/witness`` reads to say when
the last round ran and when the next is due. Rounds may still overlap — a manual round beside a scheduled one,
or a round that outlasts a short interval beside the next — and that is safe: keeping a head is idempotent
(``federation.witness._keep``) and a head signed before the one kept is not taken for a rollback.

A worker wakes once the interval since the last round *started* has passed, plus a random jitter of up to
:data:`JITTER_FRACTION` of the interval, so the nodes of a federation started together (``federation up``, or
after a shared outage) drift apart instead of all asking each other at the same instant. A worker that has
never seen a round counts from its own start, so a fresh node waits one interval before its first round. A
manual round (``POST /v1/audit/witness``) is recorded here too, unconditionally, and counts as the last round.
"""

from __future__ import annotations

import json
import os
import socket
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any, Literal

from sqlalchemy import Engine, Table, select, update
from sqlalchemy.engine import Connection
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session

from federation.models import WitnessSchedule

SCHEDULE_ID = 1
JITTER_FRACTION = 0.1
"""The jitter added to each wait, as a fraction of the interval (so 30 s at most at the default 300 s)."""
Trigger = Literal["schedule", "manual"]

_TABLE: Table = WitnessSchedule.__table__  # type: ignore[attr-defined]
_COLUMNS = _TABLE.c


def worker_id() -> str:
    """This process, as the schedule and the audit log name it: ``host:pid`` (workers of one node differ)."""
    return f"{socket.gethostname()}:{os.getpid()}"[:128]


def seconds_until_next(since: datetime, *, now: datetime, interval: float, jitter: float) -> float:
    """How long a worker sleeps before it tries to claim the next round.

    ``since`` is when the last round started (or when the worker started, if it has seen none); ``jitter`` is a
    draw from ``[0, 1)``. The wait is what is left of the interval (nothing if the round is overdue) plus up to
    :data:`JITTER_FRACTION` of the interval.
    """
    left = (since + timedelta(seconds=interval) - now).total_seconds()
    return max(0.0, left) + min(max(jitter, 0.0), 1.0) * JITTER_FRACTION * interval


def next_due(last: WitnessSchedule | None, *, interval: float, since: datetime) -> datetime | None:
    """The earliest time the next scheduled round may start (a worker starts it within the jitter after).

    ``None`` when the schedule is off (``interval`` 0); ``since`` stands in for a last round never run.
    """
    if interval <= 0:
        return None
    return (last.started_at if last is not None else since) + timedelta(seconds=interval)


def claim(engine: Engine, *, worker: str, now: datetime, interval: float) -> int | None:
    """Start the scheduled round if no round started within ``interval``: its number, or ``None`` if lost."""
    return _start(engine, worker=worker, now=now, trigger="schedule", cutoff=now - timedelta(seconds=interval))


def begin(engine: Engine, *, worker: str, now: datetime) -> int:
    """Record a manual round starting now (a governance officer's request is never refused here): its number."""
    while True:  # only a lost race to insert the very first row goes round again, and then the row exists
        number = _start(engine, worker=worker, now=now, trigger="manual", cutoff=None)
        if number is not None:
            return number


def _start(engine: Engine, *, worker: str, now: datetime, trigger: Trigger, cutoff: datetime | None) -> int | None:
    statement = (
        update(_TABLE)
        .where(_COLUMNS.id == SCHEDULE_ID)
        .values(
            round=_COLUMNS.round + 1,
            trigger=trigger,
            worker=worker,
            started_at=now,
            finished_at=None,
            reports=None,
            error=None,
        )
    )
    if cutoff is not None:
        statement = statement.where(_COLUMNS.started_at <= cutoff)
    with engine.connect() as connection:
        if connection.execute(statement).rowcount == 1:
            number = _number(connection)
            connection.commit()
            return number
        if _number(connection) is not None:
            return None  # a round started within the interval: another worker's, or a manual one
        first = {"id": SCHEDULE_ID, "round": 1, "trigger": trigger, "worker": worker, "started_at": now}
        try:
            connection.execute(_TABLE.insert().values(**first))
            connection.commit()
        except IntegrityError:
            return None  # another worker inserted the first round a moment ago
        return 1


def _number(connection: Connection) -> int | None:
    value = connection.execute(select(_COLUMNS.round).where(_COLUMNS.id == SCHEDULE_ID)).scalar()
    return int(value) if value is not None else None


def finish(
    engine: Engine, *, number: int, now: datetime, reports: Sequence[dict[str, Any]], error: str | None = None
) -> bool:
    """Record how round ``number`` ended; ``False`` if a later round started meanwhile (its record stands)."""
    statement = (
        update(_TABLE)
        .where(_COLUMNS.id == SCHEDULE_ID, _COLUMNS.round == number)
        .values(finished_at=now, reports=json.dumps(list(reports), separators=(",", ":")), error=error)
    )
    with engine.begin() as connection:
        return bool(connection.execute(statement).rowcount == 1)


def read(engine: Engine) -> WitnessSchedule | None:
    """The node's last round, as every worker sees it (``None`` before the first one)."""
    with Session(engine) as session:
        return session.get(WitnessSchedule, SCHEDULE_ID)


def reports_of(last: WitnessSchedule) -> list[dict[str, Any]]:
    """The per-peer reports a finished round left (none while it runs)."""
    if not last.reports:
        return []
    value = json.loads(last.reports)
    return [item for item in value if isinstance(item, dict)] if isinstance(value, list) else []
