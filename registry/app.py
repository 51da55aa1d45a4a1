"""The node's ASGI application, composed from every part of the product.

``create_app`` builds everything itself — settings, engine, key ring — so nothing lives at import time:
a test can build several nodes in one process, and ``uvicorn --factory registry.app:create_app`` builds
one on demand from ``RCC_*`` settings (or ``RCC_CONFIG`` / ``<RCC_DATA_DIR>/node.toml``).
"""

from __future__ import annotations

import functools
import gc
import logging
from typing import Any

from fastapi import FastAPI
from fastapi.telemetry import TelemetryConfig
from sqlalchemy import Engine

from agreements import api as agreements_api
from agreements.runtime import install as install_agreements
from federation import witness
from federation.agreements import install_agreement_exchange
from federation.capacity import install_capacity
from federation.install import install_federation
from federation.publications import install_publications
from federation.statistics import install_statistics
from registry import __version__
from registry.capacity import api as capacity_api
from registry.core import well_known
from registry.core.audit.install import install_audit
from registry.core.auth import api as auth_api
from registry.core.db import head_revisions, make_engine
from registry.core.errors import install_error_handlers
from registry.core.http import RequestContextMiddleware
from registry.core.keys import KeyRing
from registry.core.node import Node
from registry.core.settings import Settings, load_settings
from registry.publications import api as publications_api
from registry.statistics import api as statistics_api
from registry.ui.install import install_ui

DATASETS_REGIONAL = [
    "audit.tree-heads",
    "capacity.secure-beds",
    "capacity.vacancies",
    "publications.fee-caps",
    "publications.frameworks",
    "publications.placement-protocols",
    "statistics.looked-after",
]
DATASETS_NATIONAL = ["audit.tree-heads", "statistics.looked-after"]


# FastAPI's own OpenTelemetry layer stays off. It would export whatever a globally configured provider picks
# up (``FASTAPI_OTEL_AUTO_CONFIGURE``), validation failures with their input among it: a child's details sent
# by mistake must not leave the node that way (what leaves is audited and disclosure-controlled). Off, it also
# stops looking for a provider on every request.
NO_TELEMETRY: TelemetryConfig = {"tracing": False, "metrics": False, "logs": False, "operation_spans": False}


def create_app(
    settings: Settings | None = None,
    *,
    keys: KeyRing | None = None,
    engine: Engine | None = None,
    transport: Any = None,
) -> FastAPI:
    """Build one node's application. Arguments left out are built from settings."""
    settings = settings or load_settings()
    keys = keys or KeyRing.load(settings.effective_key_dir)
    engine = engine or make_engine(settings.effective_database_url)
    node = Node(
        settings=settings,
        engine=engine,
        keys=keys,
        head_revisions=head_revisions(),
        datasets=DATASETS_NATIONAL if settings.kind == "national" else DATASETS_REGIONAL,
    )
    node.extensions["transport"] = transport

    app = FastAPI(
        title=f"rcc-registry node {settings.node_id}",
        version=__version__,
        description="A Regional Care Cooperative's node: signed agreements, capacity, publications, statistics.",
        telemetry=NO_TELEMETRY,
    )
    app.state.node = node
    install_error_handlers(app)
    app.include_router(well_known.router)
    auth_api.install(app)
    app.include_router(publications_api.router)
    app.include_router(capacity_api.router)
    app.include_router(statistics_api.router)
    install_agreements(node)
    app.include_router(agreements_api.router)
    # Web pages at /ui/ over the same services; their session middleware sits inside the audit middleware.
    install_ui(app, node)
    app.add_middleware(RequestContextMiddleware, max_body_bytes=settings.max_body_bytes)
    # Audit wraps the request-context middleware (so its 413/415/500 are recorded) and sits inside federation signing.
    install_audit(app, node)
    # After the request-context middleware: federation responses are signed even when it answers (413, 415, 500).
    install_federation(app, node, transport=transport)
    # Agreements between nodes: the directory as the parties' keys, the courier, the inbox; then a data route.
    install_agreement_exchange(app, node)
    # Publications across regions: served to peers under agreements, gathered and verified from peers.
    install_publications(app, node)
    app.include_router(witness.router)
    app.include_router(witness.local_router)
    install_statistics(app, node)
    # Capacity across regions: search and secure beds served to peers; fan-out, fee caps, national board.
    install_capacity(app, node)
    logging.getLogger("rcc").setLevel(logging.INFO)
    freeze_start_up_heap()
    return app


@functools.cache  # once per process, whichever app comes first
def freeze_start_up_heap() -> None:
    """Take what exists once the first app is built out of the garbage collector's full passes (once per process).

    Routes, models, schemas, SQLAlchemy metadata and the imported modules live as long as the process; a full
    collection still walks all of them, and the objects requests leave alive across a young collection trigger
    one every few thousand requests: measured at 12-23 µs per federated ping on a one-worker node. Frozen
    objects are still freed when their last reference goes; only a cycle among them would outlive its use,
    which is why this happens once per process (a test process building many apps freezes only the first).
    """
    gc.collect()
    gc.freeze()
