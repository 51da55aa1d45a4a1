"""The node's ASGI application, composed from every part of the product.

``create_app`` builds everything itself — settings, engine, key ring — so nothing lives at import time:
a test can build several nodes in one process, and ``uvicorn --factory registry.app:create_app`` builds
one on demand from ``RCC_*`` settings (or ``RCC_CONFIG`` / ``<RCC_DATA_DIR>/node.toml``).
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI
from sqlalchemy import Engine

from registry import __version__
from registry.core import well_known
from registry.core.db import head_revisions, make_engine
from registry.core.errors import install_error_handlers
from registry.core.http import RequestContextMiddleware
from registry.core.keys import KeyRing
from registry.core.node import Node
from registry.core.settings import Settings, load_settings

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
    )
    app.state.node = node
    install_error_handlers(app)
    app.include_router(well_known.router)
    app.add_middleware(RequestContextMiddleware, max_body_bytes=settings.max_body_bytes)
    logging.getLogger("rcc").setLevel(logging.INFO)
    return app
