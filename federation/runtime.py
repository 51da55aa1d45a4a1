"""One node's federation runtime: directory store, replay cache, outbound client and signer, built together.

Built by :func:`federation.install.install_federation` from ``create_app`` (never at import time) and kept on
``node.extensions["federation"]``; the command line builds one the same way to call peers.
"""

from __future__ import annotations

import json
from typing import Any

from federation.client import FederationClient, OutboundAuditor, OutboundCall
from federation.directory import load_pinned_keys
from federation.models import PeerResult
from federation.replay import ReplayCache
from federation.store import DirectoryStore
from federation.tokens import Signer
from federation.wire import make_wire
from registry.core.audit.recording import aappend_outbound
from registry.core.node import Node
from registry.core.settings import SettingsError

FETCH_TIMEOUT_SECONDS = 10.0


class OperatorFetchError(Exception):
    """The operator did not hand over a directory (down, error status, not JSON)."""


class Federation:
    """Everything a node needs to take part in the federation."""

    def __init__(self, node: Node, *, transport: Any = None, auditor: OutboundAuditor | None = None) -> None:
        settings = node.settings
        self.node = node
        self.node_id = settings.node_id
        self.base_url = settings.base_url
        self.is_operator = settings.directory_operator
        try:
            pinned = load_pinned_keys(settings.operator_jwks)
        except ValueError as exc:
            raise SettingsError({"operator_jwks": str(exc)}) from None
        self.signer = Signer(node.keys.active)
        self.wire = make_wire(transport)
        self.store = DirectoryStore(
            node.engine,
            pinned=pinned,
            directory_file=settings.directory_file,
            operator_url=settings.operator_url,
            refresh_seconds=settings.directory_refresh_seconds,
            fetch=self._fetch_json,
            configured=bool(pinned or settings.directory_file or settings.operator_url),
        )
        self.replay = ReplayCache(node.engine)
        self.client = FederationClient(
            node_id=self.node_id,
            signer=self.signer,
            directory=self.store.require,
            wire=self.wire,
            auditor=auditor or self._audit_outbound,
        )

    def start(self) -> None:
        """Load the directory held (database, then ``directory_file``); never raises."""
        self.store.start()

    async def _audit_outbound(self, call: OutboundCall, result: PeerResult) -> None:
        """Every outbound call lands in the node's audit log with the peer's response signature."""
        await aappend_outbound(
            self.node,
            peer=call.peer,
            action=f"{call.method} {call.path}",
            dataset=call.dataset,
            purpose=call.purpose,
            agreement=call.agreement,
            status=result.status,
            outcome=result.outcome.value,
            request_sha256=result.request_sha256,
            response_sha256=result.response_sha256,
            peer_signature=result.response_signature,
            result_count=None,
            request_id=call.request_id,
            method=call.method,
            context=call.context,
            extra={"latency_us": int(result.latency_ms * 1000), "attempts": result.attempts},
        )

    async def _fetch_json(self, url: str) -> Any:
        response = await self.wire.send(
            "GET", url, headers={"accept": "application/json"}, body=b"", timeout=FETCH_TIMEOUT_SECONDS
        )
        if response.status != 200:
            raise OperatorFetchError(f"GET {url} answered {response.status}")
        try:
            return json.loads(response.body)
        except ValueError:
            raise OperatorFetchError(f"GET {url} did not answer JSON") from None

    async def aclose(self) -> None:
        """Close the connection pool and the replay writer."""
        await self.client.aclose()
        self.replay.close()
