"""The running node as one object: settings, engine, key ring and readiness checks.

Built by ``registry.app.create_app`` (never at import time), kept on ``app.state.node``, and reached from
routes through :data:`NodeDep`. Several nodes can live in one process, which the tests rely on.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Annotated, Any

from fastapi import Depends, Request
from sqlalchemy import Engine

from registry import __version__
from registry.core.db import current_revisions, database_owner, ping, utcnow
from registry.core.keys import KeyRing
from registry.core.settings import Settings

# A readiness check returns (name, ok, detail); registered by whichever part owns the dependency.
ReadinessCheck = Callable[[], tuple[str, bool, dict[str, Any] | str]]


@dataclass
class Node:
    """One node's runtime state."""

    settings: Settings
    engine: Engine
    keys: KeyRing
    head_revisions: set[str]
    datasets: list[str] = field(default_factory=list)
    readiness_checks: list[ReadinessCheck] = field(default_factory=list)
    started_at: datetime = field(default_factory=utcnow)
    software_version: str = __version__
    extensions: dict[str, Any] = field(default_factory=dict)

    @property
    def node_id(self) -> str:
        """This node's id in the federation."""
        return self.settings.node_id

    def readiness(self) -> tuple[bool, dict[str, Any]]:
        """Run every readiness check; ready only if all pass."""
        checks: dict[str, Any] = {}
        ok = True
        for check in [self._database_check, self._key_check, *self.readiness_checks]:
            name, passed, detail = check()
            checks[name] = {"ok": passed, "detail": detail}
            ok = ok and passed
        return ok, checks

    def _database_check(self) -> tuple[str, bool, dict[str, Any] | str]:
        try:
            ping(self.engine)
            current = current_revisions(self.engine)
            owner = database_owner(self.engine) if current else None
        except Exception as exc:  # any driver error means "not reachable"
            return "database", False, f"unreachable: {type(exc).__name__}"
        if current != self.head_revisions:
            return (
                "database",
                False,
                f"schema at {sorted(current) or 'nothing'}, needs {sorted(self.head_revisions)}",
            )
        if owner not in (None, self.node_id):
            return "database", False, f"database belongs to node {owner}"
        return "database", True, {"engine": self.engine.dialect.name, "revision": sorted(current)}

    def _key_check(self) -> tuple[str, bool, dict[str, Any] | str]:
        active = self.keys.active
        return "signing_key", active.private is not None, {"kid": active.kid}


def get_node(request: Request) -> Node:
    """The node serving this request."""
    node: Node = request.app.state.node
    return node


NodeDep = Annotated[Node, Depends(get_node)]
