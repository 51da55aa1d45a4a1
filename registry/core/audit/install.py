"""Wiring the audit log into a node's app: routes, the middleware, the sequencer and a readiness check.

``create_app`` calls :func:`install_audit` right after adding the request-context middleware, so the audit
middleware wraps it (and records what it refuses by itself) while the federation's response signing wraps
the audit middleware (and signs its 503s). The sequencer starts here, not in the lifespan, which
``httpx.ASGITransport`` never runs; it stops when the app shuts down or is garbage-collected.
"""

from __future__ import annotations

import weakref
from typing import Any

from fastapi import FastAPI
from sqlalchemy import func, select

from registry.core.audit import api
from registry.core.audit.log import ENTRY, AuditLog, read_head
from registry.core.audit.middleware import AuditMiddleware
from registry.core.audit.recording import audit_log
from registry.core.db import utcnow
from registry.core.node import Node

STALE_PENDING_SECONDS = 60


def install_audit(app: FastAPI, node: Node, *, start: bool = True) -> AuditLog:
    """Plug the audit log into ``app``; returns the node's :class:`AuditLog` (also on ``node.extensions``)."""
    log = audit_log(node)
    app.include_router(api.router)
    app.add_middleware(AuditMiddleware, log=log, max_body_bytes=node.settings.max_body_bytes)
    node.readiness_checks.append(lambda: readiness(log))
    if start:
        log.start()
    weakref.finalize(app, log.stop, 0.0)
    return log


def readiness(log: AuditLog) -> tuple[str, bool, dict[str, Any] | str]:
    """Ready while entries are being sequenced: none has waited longer than a minute for its index."""
    try:
        with log.engine.connect() as conn:
            head = read_head(conn)
            oldest = conn.execute(select(func.min(ENTRY.c.ts)).where(ENTRY.c.seq.is_(None))).scalar()
    except Exception as exc:  # any driver or schema problem means the log cannot be written
        return "audit_log", False, f"unavailable: {type(exc).__name__}"
    detail: dict[str, Any] = {"tree_size": int(head.tree_size), "signed": head.signature is not None}
    if oldest is not None and (utcnow() - oldest).total_seconds() > STALE_PENDING_SECONDS:
        detail["oldest_pending"] = oldest.isoformat()
        return "audit_log", False, detail
    return "audit_log", True, detail
