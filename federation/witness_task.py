"""Scheduled witnessing: the background task every worker runs, so the node witnesses its peers by itself.

DESIGN.md: nodes witness each other, so none can quietly rewrite its history. A round only a governance
officer starts leaves that to memory; this task runs one every ``witness_interval_seconds`` (started by the
app's lifespan in :mod:`federation.install`, cancelled at shutdown). Every worker runs it and
:mod:`federation.witness_schedule` lets exactly one of them run each round.

A scheduled round is audited as a manual one is, with the node as the actor instead of a person: each call to
a peer is an outbound entry (as in a manual round), its actor ``node``/this node's id and the round's number in
``extra``; and the round itself, which no HTTP request carried, is one ``audit.witness_round`` entry (the
manual round's action) by the node, with the number of peers asked, the count of each verdict, when the round
started and the worker that ran it. No request id is made up: there was no request. A round that asked no
peer sent nothing and adds no entry (the schedule row still records it). A round that fails is logged and
recorded in the schedule; the loop carries on, and each peer's outcome is in that round's verdicts either way.

The loop reads the schedule at once when the app starts, so a node stopped right after starting cancels it in
the middle of that read. Cancelling a task that awaits a worker thread does not stop the thread (not with
``run_in_threadpool``, ``anyio.to_thread`` or ``asyncio.to_thread``): shutdown would go on while the thread
still held a pooled connection (see :mod:`registry.core.threads`). So the loop's database calls go through
:func:`~registry.core.threads.run_to_completion`.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections import Counter
from collections.abc import Sequence
from datetime import datetime

from federation.witness import WitnessReport, recorded_round
from federation.witness_schedule import claim, read, seconds_until_next, worker_id
from registry.core.audit.context import AuditContext
from registry.core.audit.entry import PreparedEntry, build_entry, format_time
from registry.core.audit.recording import audit_log
from registry.core.db import utcnow
from registry.core.node import Node
from registry.core.threads import run_to_completion

log = logging.getLogger("rcc.federation.witness")

ROUND_ACTION = "audit.witness_round"
"""The action of a round's own audit entry: the route name of the manual round."""


class WitnessScheduler:
    """One worker's witnessing loop: sleep until a round is due, claim it, run it; until cancelled."""

    def __init__(
        self, node: Node, *, interval: float, worker: str | None = None, rng: random.Random | None = None
    ) -> None:
        self.node = node
        self.interval = interval
        self.worker = worker or worker_id()
        self.rng = rng or random.Random()  # noqa: S311 - jitter spreads load; it guards nothing
        self.started_at = utcnow()

    async def run(self) -> None:
        """Claim and run each round that falls due, until cancelled; a failed round is logged, never fatal."""
        log.info("witnessing peers every %s s (worker %s)", self.interval, self.worker)
        while True:
            await asyncio.sleep(await self.delay())
            try:
                await self.tick()
            except Exception as exc:
                log.warning("scheduled witnessing round failed: %s: %s", type(exc).__name__, exc)

    async def delay(self) -> float:
        """Seconds until this worker should try to claim the next round (see :func:`seconds_until_next`)."""
        try:
            last = await run_to_completion(read, self.node.engine)
        except Exception as exc:  # the database may be down: try again after an interval
            log.warning("witnessing schedule unreadable: %s: %s", type(exc).__name__, exc)
            return self.interval
        since = last.started_at if last is not None else self.started_at
        return seconds_until_next(since, now=utcnow(), interval=self.interval, jitter=self.rng.random())

    async def tick(self) -> list[WitnessReport] | None:
        """Run the scheduled round if this worker wins it: each peer's verdict, or ``None`` if another won."""
        engine, now = self.node.engine, utcnow()
        number = await run_to_completion(lambda: claim(engine, worker=self.worker, now=now, interval=self.interval))
        if number is None:
            return None
        context = AuditContext(actor_type="node", actor_id=self.node.node_id)
        reports = await recorded_round(self.node, number, context=context)
        if reports:
            entry = round_entry(self.node, number, reports, worker=self.worker, started_at=now)
            await audit_log(self.node).aappend(entry)
        return reports


def round_entry(
    node: Node, number: int, reports: Sequence[WitnessReport], *, worker: str, started_at: datetime
) -> PreparedEntry:
    """The audit entry of a scheduled round: by the node, when it started, how many peers it asked, what came of it."""
    verdicts = Counter(report.verdict for report in reports)
    context = AuditContext(
        actor_type="node",
        actor_id=node.node_id,
        result_count=len(reports),
        extra={
            "witness_round": number,
            "trigger": "schedule",
            "worker": worker,
            "started_at": format_time(started_at),
            "verdicts": dict(sorted(verdicts.items())),
        },
    )
    return build_entry(node_id=node.node_id, direction="outbound", action=ROUND_ACTION, context=context, outcome="ok")
