"""Publications across regions: serving this node's signed documents to peers, and gathering every peer's.

* ``GET /federation/v1/publications?kind=…&effective_on=…`` and ``GET /federation/v1/publications/{id}`` serve
  this node's own latest versions — document, signature and every signed statement field — to an authenticated
  peer that an active agreement lets have the kind's dataset (``publications.frameworks``,
  ``publications.placement-protocols``, ``publications.fee-caps``) for ``market-transparency`` or
  ``placement-search``. ``kind`` is required on the list: grants are per dataset and a dataset is one kind.
  Versions are served as held; the receiver checks each signature against the directory, so a version
  altered at rest here is caught by every peer that reads it.
* :class:`Gatherer` (installed as the register's ``publications.gather`` hook) asks every regional peer in the
  directory, in parallel under one deadline, for its current documents of each kind, verifies every signature
  against the peer's directory key, stores the verified copies under the peer's ``node_id`` (so fee-cap checks
  and comparisons include them) and reports each peer's outcome. A peer that no agreement lets this node ask
  is not called: it is reported ``refused`` with this node's own policy reason.
* :class:`PublicationKeys` gives the register peers' keys from the directory held now (the register may not
  import the federation, so it is handed in through ``node.extensions``).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import date
from typing import Annotated, Any

import anyio.to_thread
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from fastapi import APIRouter, FastAPI, Path, Query, Request
from sqlalchemy.exc import SQLAlchemyError
from sqlmodel import Session

from agreements.errors import PolicyDenied
from agreements.policy import DenyReason, Snapshot, snapshot_of
from agreements.runtime import enforce_request, runtime_of
from federation.agreements import DirectoryKeys
from federation.fanout import PeerCall, fanout
from federation.guard import PeerDep
from federation.models import Peer, PeerResult
from federation.runtime import Federation
from federation.store import DirectoryStore
from registry.core.audit.context import AuditContext, audit_context
from registry.core.db import SessionDep
from registry.core.node import Node, NodeDep
from registry.publications import copies, service
from registry.publications.errors import PublicationNotFound
from registry.publications.kinds import Kind
from registry.publications.models import PeerReport, PublicationPage, PublicationPublic
from registry.publications.signatures import PEER_KEYS_EXTENSION, keys_for
from schemas import Purpose
from schemas.vocabulary import PeerOutcome

log = logging.getLogger("rcc.federation.publications")

PATH = "/federation/v1/publications"
PURPOSES = frozenset({Purpose.market_transparency, Purpose.placement_search})
"""Why a peer may read publications: to compare markets, or to search for a placement against them."""
DEADLINE_SECONDS = 8.0
"""Overall deadline of one gather (every peer and kind in parallel)."""
MAX_ITEMS = 2000
"""More documents of one kind than any region publishes: an answer past this is refused, not stored."""

router = APIRouter(prefix="/federation/v1", tags=["federation", "publications"])


# --- serving -------------------------------------------------------------------------------------------------


def _authorise(request: Request, peer: Peer, kind: Kind, session: Session) -> None:
    """403 unless an active agreement grants the kind's dataset to ``peer`` for its (publications) purpose."""
    dataset = kind.dataset.value
    if peer.purpose not in PURPOSES:
        audit = audit_context(request)
        audit.dataset, audit.purpose = dataset, peer.purpose.value
        audit.deny(DenyReason.purpose_not_granted.value)
        raise PolicyDenied(
            DenyReason.purpose_not_granted.value,
            provider=request.app.state.node.node_id,
            requester=peer.node_id,
            dataset=dataset,
            purpose=peer.purpose.value,
            agreement_id=peer.agreement,
        )
    enforce_request(
        request,
        requester=peer.node_id,
        dataset=dataset,
        purpose=peer.purpose.value,
        agreement_id=peer.agreement,
        session=session,
    )


@router.get("/publications", name="federation.publications.list")
def serve_publications(
    request: Request,
    peer: PeerDep,
    node: NodeDep,
    session: SessionDep,
    kind: Kind,
    effective_on: Annotated[date | None, Query(description="Only documents in force on this date.")] = None,
) -> PublicationPage:
    """This node's own latest signed versions of one kind, to a peer an agreement lets have that dataset."""
    _authorise(request, peer, kind, session)
    rows, _ = service.list_latest(session, node_ids=[node.node_id], kind=kind, effective_on=effective_on, limit=None)
    items = [service.to_public(held) for held in rows]
    audit_context(request).result_count = len(items)
    return PublicationPage(items=items, count=len(items))


@router.get("/publications/{publication_id}", name="federation.publications.get")
def serve_publication(
    request: Request,
    publication_id: Annotated[str, Path(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")],
    peer: PeerDep,
    node: NodeDep,
    session: SessionDep,
) -> PublicationPublic:
    """One of this node's publications (latest signed version), if an agreement grants its kind's dataset."""
    try:
        held = service.get_latest(session, publication_id, node_id=node.node_id)
    except PublicationNotFound:
        # Say "not found" only to a peer allowed to read some kind: to anyone else, what exists is not its business.
        if not _may_read_any(request, peer, session):
            _authorise(request, peer, Kind.framework, session)
        raise
    _authorise(request, peer, Kind(held.version.kind), session)
    audit_context(request).result_count = 1
    return service.to_public(held)


def _may_read_any(request: Request, peer: Peer, session: Session) -> bool:
    runtime = runtime_of(request.app.state.node)
    snapshot = snapshot_of(runtime.policy, session)
    return peer.purpose in PURPOSES and any(
        snapshot.decide(
            provider=runtime.node_id,
            requester=peer.node_id,
            dataset=kind.dataset.value,
            purpose=peer.purpose.value,
            at=runtime.now(),
            agreement_id=peer.agreement,
        ).permit
        for kind in Kind
    )


# --- gathering -----------------------------------------------------------------------------------------------


class PublicationKeys:
    """The register's :data:`~registry.publications.signatures.Keys` for peers: the directory held now.

    A retired key still verifies what it signed (a stored copy stays valid after its node rotates); a node no
    longer in the directory, or an expired directory, verifies nothing — its copies are then set aside.
    """

    def __init__(self, store: DirectoryStore) -> None:
        self.directory = DirectoryKeys(store)

    def __call__(self, node_id: str, kid: str) -> Ed25519PublicKey | None:
        """The public key ``kid`` of member ``node_id``, active or retired."""
        found = self.directory(node_id, kid)
        return found.public if found is not None else None


class Gatherer:
    """Gathers every regional peer's current publications (see the module docstring)."""

    def __init__(self, node: Node, federation: Federation, *, deadline_seconds: float = DEADLINE_SECONDS) -> None:
        self.node = node
        self.federation = federation
        self.deadline_seconds = deadline_seconds

    async def __call__(
        self,
        *,
        kinds: Sequence[Kind],
        purpose: Purpose,
        request_id: str | None,
        context: AuditContext | None,
    ) -> list[PeerReport]:
        """Ask, verify, store and report: one :class:`PeerReport` per (regional peer, kind), peers in id order."""
        directory = self.federation.store.require()
        peers = sorted(
            (n for n in directory.nodes.values() if n.node_id != self.node.node_id and n.kind == "regional"),
            key=lambda n: n.node_id,
        )
        regions = {n.node_id: n.region_code for n in peers}
        runtime = runtime_of(self.node)
        snapshot: Snapshot = await anyio.to_thread.run_sync(lambda: snapshot_of(runtime.policy))
        at = runtime.now()
        reports: dict[tuple[str, str], PeerReport] = {}
        calls: list[tuple[PeerCall, Kind]] = []
        for peer in peers:
            for kind in kinds:
                dataset = kind.dataset.value
                decision = snapshot.decide(
                    provider=peer.node_id, requester=self.node.node_id, dataset=dataset, purpose=purpose.value, at=at
                )
                report = PeerReport(
                    node_id=peer.node_id, kind=kind.value, dataset=dataset, outcome="", agreement=decision.agreement_id
                )
                reports[(peer.node_id, kind.value)] = report
                if not decision.permit:
                    report.outcome, report.reason = PeerOutcome.refused.value, str(decision.reason)
                    report.detail = "not asked: no active agreement lets this node ask for it"
                    continue
                call = PeerCall(
                    peer=peer.node_id,
                    path=f"{PATH}?kind={kind.value}",
                    purpose=purpose.value,
                    agreement=decision.agreement_id,
                    dataset=dataset,
                )
                calls.append((call, kind))
        if calls:
            result = await fanout(
                self.federation.client,
                [call for call, _ in calls],
                deadline_seconds=self.deadline_seconds,
                request_id=request_id,
                context=context,
            )
            answers = [
                (reports[(call.peer, kind.value)], peer_result)
                for (call, kind), peer_result in zip(calls, result.results, strict=True)
            ]
            await anyio.to_thread.run_sync(lambda: self._settle(answers, regions))
        return list(reports.values())

    def _settle(self, answers: list[tuple[PeerReport, PeerResult]], regions: dict[str, str | None]) -> None:
        """Fill each report from its peer's answer; store every copy that verifies (one transaction per answer)."""
        keys = keys_for(self.node)
        for report, result in answers:
            report.outcome, report.detail = result.outcome.value, result.detail
            if not result.ok:
                report.reason = _reason(result.body)
                continue
            items = result.body.get("items") if isinstance(result.body, dict) else None
            if not isinstance(items, list) or len(items) > MAX_ITEMS:
                report.outcome, report.detail = PeerOutcome.error.value, "answer is not a list of publications"
                continue
            report.received = len(items)
            try:
                with Session(self.node.engine) as session:
                    for item in items:
                        try:
                            copies.store_copy(
                                session,
                                item,
                                node_id=report.node_id,
                                region_code=regions.get(report.node_id),
                                keys=keys,
                            )
                        except copies.CopyRejected as exc:
                            report.rejected.append({**_identity(item), "reason": exc.reason})
                        else:
                            report.stored += 1
                    session.commit()
            except SQLAlchemyError as exc:
                log.warning("storing %s's publications failed: %s", report.node_id, type(exc).__name__)
                report.outcome, report.detail, report.stored = PeerOutcome.error.value, "could not store copies", 0
                continue
            if report.rejected:
                report.outcome = PeerOutcome.bad_signature.value
                report.detail = (
                    f"{len(report.rejected)} of {len(items)} documents failed verification and were not kept"
                )


def _reason(body: Any) -> str | None:
    if isinstance(body, dict):
        reason = body.get("reason") or body.get("code")
        return str(reason) if reason is not None else None
    return None


def _identity(item: Any) -> dict[str, Any]:
    """Which document was rejected, as far as the peer's answer says (its own words, for the report only)."""
    if not isinstance(item, dict):
        return {}
    return {name: item[name] for name in ("id", "kind", "version", "sha256") if name in item}


# --- wiring --------------------------------------------------------------------------------------------------


def install_publications(app: FastAPI, node: Node, federation: Federation | None = None) -> Gatherer:
    """Serve publications to peers, give the register peers' keys, and install the national gather.

    Called by ``create_app`` after :func:`federation.install.install_federation`.
    """
    federation = federation or node.extensions["federation"]
    node.extensions[PEER_KEYS_EXTENSION] = PublicationKeys(federation.store)
    gatherer = Gatherer(node, federation)
    node.extensions[copies.GATHER_EXTENSION] = gatherer
    app.include_router(router)
    return gatherer
