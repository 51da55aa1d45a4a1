"""What the agreements part needs from the running node, gathered in one object built with the app.

:class:`AgreementsRuntime` holds this node's id and key ring (it signs as a party), the key resolver for
other parties, the clock (injectable: tests move it), the verified-content cache and the policy store.
``create_app`` builds one per node through :func:`install`; nothing is made at import time, so several nodes
live side by side in one process. Federation code (phase 2) reaches it with :func:`runtime_of`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Annotated

from fastapi import Depends, Request
from sqlalchemy import Engine
from sqlmodel import Session

from agreements.keys import KEY_RESOLVER_EXTENSION, ChainedKeys, KeyResolver, LocalKeys, PartyKey
from agreements.ledger import VerifiedCache
from agreements.policy import Decision, PolicyStore, enforce
from registry.core.audit.context import audit_context
from registry.core.db import utcnow
from registry.core.keys import KeyRing
from registry.core.node import Node

EXTENSION = "agreements"
Clock = Callable[[], datetime]


class NodeKeys:
    """This node's own keys, then whatever the federation layer has put in ``node.extensions`` (its directory).

    Looked up on every call, so a directory installed or replaced after start-up is used at once.
    """

    def __init__(self, node: Node) -> None:
        self.node = node
        self.own = LocalKeys(node.node_id, node.keys)

    def __call__(self, node_id: str, kid: str) -> PartyKey | None:
        """Own key ring for this node's id, the directory for everyone else."""
        if node_id == self.node.node_id:
            return self.own(node_id, kid)
        directory: KeyResolver | None = self.node.extensions.get(KEY_RESOLVER_EXTENSION)
        return directory(node_id, kid) if directory is not None else None


@dataclass
class AgreementsRuntime:
    """One node's agreements machinery."""

    node_id: str
    keys: KeyRing
    engine: Engine
    resolver: KeyResolver
    clock: Clock = utcnow
    cache: VerifiedCache = field(default_factory=VerifiedCache)
    policy: PolicyStore = field(init=False)

    def __post_init__(self) -> None:
        self.policy = PolicyStore(self.engine, self.cache)

    def now(self) -> datetime:
        """The runtime's clock (aware UTC)."""
        return self.clock()

    @classmethod
    def standalone(
        cls,
        *,
        node_id: str,
        keys: KeyRing,
        engine: Engine,
        peers: KeyResolver | None = None,
        clock: Clock = utcnow,
    ) -> AgreementsRuntime:
        """A runtime without an app (CLI, tests, benchmarks): own keys first, then ``peers``."""
        own = LocalKeys(node_id, keys)
        resolver: KeyResolver = ChainedKeys([own, peers]) if peers is not None else own
        return cls(node_id=node_id, keys=keys, engine=engine, resolver=resolver, clock=clock)


def install(node: Node) -> AgreementsRuntime:
    """Build the node's runtime and keep it in ``node.extensions`` (called by ``create_app``)."""
    runtime = AgreementsRuntime(node_id=node.node_id, keys=node.keys, engine=node.engine, resolver=NodeKeys(node))
    node.extensions[EXTENSION] = runtime
    return runtime


def runtime_of(node: Node) -> AgreementsRuntime:
    """The node's runtime, installed on first use if ``create_app`` did not (a test building a bare Node)."""
    runtime = node.extensions.get(EXTENSION)
    if not isinstance(runtime, AgreementsRuntime):
        runtime = install(node)
    return runtime


def get_runtime(request: Request) -> AgreementsRuntime:
    """Route dependency: the serving node's runtime."""
    node: Node = request.app.state.node
    return runtime_of(node)


RuntimeDep = Annotated[AgreementsRuntime, Depends(get_runtime)]


def enforce_request(
    request: Request,
    *,
    requester: str,
    dataset: str,
    purpose: str,
    agreement_id: str | None = None,
    session: Session | None = None,
) -> Decision:
    """The one call a data-serving federation route makes: this node provides, ``requester`` asks.

    Decides with the node's cached policy store at the runtime's clock, records dataset, purpose, agreement,
    decision and reason in the request's audit context, and raises ``PolicyDenied`` (403 problem+json carrying
    the reason) unless permitted. Pass the route's ``session`` when it has one: the cache's freshness read
    then uses it instead of a pooled connection of its own.
    """
    runtime = get_runtime(request)
    return enforce(
        audit_context(request),
        runtime.policy,
        provider=runtime.node_id,
        requester=requester,
        dataset=dataset,
        purpose=purpose,
        at=runtime.now(),
        agreement_id=agreement_id,
        session=session,
    )
