"""Wiring the federation into a node's app: routes, response signatures, readiness, background tasks.

``create_app`` calls :func:`install_federation` once per app. Nothing essential depends on the lifespan
(``httpx.ASGITransport`` never runs it): the directory is loaded synchronously here, and the guard schedules a
refresh when one is due; the lifespan only readies the outbound wire, and adds the periodic refresh of an idle
node, the scheduled witnessing rounds (:mod:`federation.witness_task`; a governance officer can still run one
by hand) and a clean shutdown.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

from fastapi import FastAPI

from federation import api
from federation.client import OutboundAuditor
from federation.direct import install_direct
from federation.guard import ResponseSignatureMiddleware
from federation.runtime import Federation
from federation.witness import schedule_interval
from federation.witness_task import WitnessScheduler
from registry.core.audit.recording import audit_log
from registry.core.node import Node


def install_federation(
    app: FastAPI, node: Node, *, transport: Any = None, auditor: OutboundAuditor | None = None
) -> Federation:
    """Build the node's federation runtime and plug it into ``app``; returns it (also on ``node.extensions``)."""
    federation = Federation(node, transport=transport, auditor=auditor)
    node.extensions["federation"] = federation
    federation.start()
    # SQLite: jti claims share the audit log's writer lock, and so are written inline on the event loop.
    lock = audit_log(node).sqlite_write_lock
    if lock is not None:
        federation.replay.share_write_lock(lock)
    node.readiness_checks.append(federation.store.readiness)
    app.include_router(api.router)
    # Federation calls are the node's hottest authenticated path and share no path with any other route:
    # match them first instead of after every other router (FastAPI tries routers in order), the ping first.
    app.router.routes.insert(0, app.router.routes.pop())
    install_direct(app, api.ping_route())
    app.add_middleware(ResponseSignatureMiddleware, federation=federation)
    inner = app.router.lifespan_context

    @contextlib.asynccontextmanager
    async def lifespan(application: Any) -> AsyncIterator[Any]:
        loop = asyncio.get_running_loop()
        await federation.wire.prepare()  # before anything is served (uvicorn listens after startup)
        refresher = loop.create_task(federation.store.run())
        try:
            async with inner(application) as state:
                # Inside the inner lifespan: a round stops before the audit log and the connections close.
                interval = schedule_interval(node)
                witnessing = loop.create_task(WitnessScheduler(node, interval=interval).run()) if interval else None
                try:
                    yield state
                finally:
                    await _cancel(witnessing)
        finally:
            await _cancel(refresher)
            await federation.aclose()

    app.router.lifespan_context = lifespan
    return federation


async def _cancel(task: asyncio.Task[None] | None) -> None:
    """Cancel a background task and wait until it has stopped."""
    if task is None:
        return
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
