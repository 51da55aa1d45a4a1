"""Witnessing: nodes keep each other's signed audit tree heads, so none can quietly rewrite its history.

A node's own log proves what it holds only to someone who trusts the node. Witnesses remove that trust: each
round, this node asks every peer an agreement lets it witness (dataset ``audit.tree-heads``, purpose
``audit-witnessing``) for its latest signed tree head, checks the signature against the peer's key in the
signed directory, and keeps the head. A head larger than the last one kept must come with an RFC 9162
consistency proof from the peer (``GET /federation/v1/audit/proof/consistency``) showing it extends that one;
a head of the same size must have the same root; a smaller one is a rollback. Anything else is stored as
``inconsistent`` — evidence that the peer's log was rewritten — and reported to governance officers.

Served here:

* to peers: ``GET /federation/v1/audit/tree-head`` and ``GET /federation/v1/audit/proof/consistency``, each
  under the policy decision like every data-serving federation route;
* to governance officers: ``POST /v1/audit/witness`` (a round now, each peer's verdict) and
  ``GET /v1/audit/witness`` (the last head kept of every peer witnessed, any inconsistency found, and when the
  last round ran and the next is due).

Rounds also run by themselves every ``witness_interval_seconds`` (:mod:`federation.witness_task`), one worker
of the node at a time (:mod:`federation.witness_schedule`), so a peer cannot rewrite its history between two
rounds a person remembered to ask for. Either kind of round is recorded as the node's last round; its outbound
calls are audited with the round's number, under the officer's identity or, for a scheduled round, the node's.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from datetime import datetime
from typing import Any, Literal

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from fastapi import APIRouter, Query, Request
from pydantic import BaseModel
from sqlalchemy import Engine
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, select

from agreements.policy import providers_for
from agreements.runtime import enforce_request, runtime_of
from federation.fanout import PeerCall, fanout
from federation.guard import PeerDep
from federation.models import WitnessedHead
from federation.runtime import Federation
from federation.witness_schedule import begin, finish, next_due, read, reports_of, worker_id
from registry.core.audit.context import AuditContext, audit_context
from registry.core.audit.models import ConsistencyProofPublic, SignedTreeHead
from registry.core.audit.recording import audit_log
from registry.core.audit.service import consistency, signed_tree_head
from registry.core.auth.deps import Governance
from registry.core.db import utcnow
from registry.core.keys import public_key_from_jwk
from registry.core.merkle import verify_consistency
from registry.core.node import Node, NodeDep
from registry.core.signing import TYP_TREE_HEAD, SignatureInvalid, verify_detached
from registry.core.threads import run_to_completion
from schemas.vocabulary import Dataset, PeerOutcome, Purpose

router = APIRouter(prefix="/federation/v1/audit", tags=["federation"])
local_router = APIRouter(prefix="/v1/audit/witness", tags=["audit"])

TREE_HEAD_PATH = "/federation/v1/audit/tree-head"
CONSISTENCY_PATH = "/federation/v1/audit/proof/consistency"
DEADLINE_SECONDS = 5.0
# Verdicts of a head that later heads must extend; the others are reports (and, for a fork, evidence).
KEPT = ("first", "consistent")
Verdict = Literal["first", "consistent", "unchanged", "inconsistent", "unverified", "unreachable"]


@router.get("/tree-head", name="federation.audit_tree_head")
def tree_head(peer: PeerDep, request: Request, node: NodeDep) -> SignedTreeHead:
    """This node's latest signed audit tree head, for a peer an agreement lets witness it."""
    _permit(peer, request)
    return signed_tree_head(audit_log(node))


@router.get("/proof/consistency", name="federation.audit_consistency_proof")
def consistency_proof(
    peer: PeerDep,
    request: Request,
    node: NodeDep,
    first: int = Query(ge=1, le=2**62),
    second: int = Query(ge=1, le=2**62),
) -> ConsistencyProofPublic:
    """RFC 9162 consistency proof between two of this node's tree sizes, for a peer witnessing its log."""
    _permit(peer, request)
    return consistency(audit_log(node), first=first, second=second)


def _permit(peer: Any, request: Request) -> None:
    enforce_request(
        request,
        requester=peer.node_id,
        dataset=Dataset.audit_tree_heads.value,
        purpose=peer.purpose.value,
        agreement_id=peer.agreement,
    )


class WitnessReport(BaseModel):
    """One peer's outcome in a witnessing round."""

    peer: str
    verdict: Verdict
    tree_size: int | None = None
    root_hash: str | None = None
    previous_size: int | None = None
    detail: str | None = None


class WitnessedPublic(BaseModel):
    """A peer's head as kept here."""

    peer: str
    tree_size: int
    root_hash: str
    timestamp: datetime
    witnessed_at: datetime
    verdict: str
    detail: str | None = None


class WitnessRoundPublic(BaseModel):
    """The node's last witnessing round, scheduled or manual (``finished_at`` and ``reports`` once it is over)."""

    round: int
    trigger: Literal["schedule", "manual"]
    started_at: datetime
    finished_at: datetime | None = None
    reports: list[WitnessReport] = []
    error: str | None = None


class WitnessState(BaseModel):
    """What this node holds of every peer it witnesses: the last head kept, and every inconsistency found.

    And the schedule: rounds every ``interval_seconds`` (0: off, only manual rounds), the last round of either
    kind, and the earliest time the next scheduled one may start (it starts within a tenth of the interval after).
    """

    latest: list[WitnessedPublic]
    inconsistencies: list[WitnessedPublic]
    interval_seconds: float = 0.0
    last_round: WitnessRoundPublic | None = None
    next_due_at: datetime | None = None


class WitnessRound(BaseModel):
    """The answer of a round: each peer's verdict (peers no agreement lets this node witness are not asked)."""

    reports: list[WitnessReport]


def _resolver(keys: Mapping[str, Any]) -> Any:
    def resolve(kid: str) -> Ed25519PublicKey | None:
        key = keys.get(kid)
        return public_key_from_jwk(key.jwk) if key is not None else None

    return resolve


def _last_kept(engine: Engine, peer: str) -> WitnessedHead | None:
    with Session(engine) as session:
        query = (
            select(WitnessedHead)
            .where(WitnessedHead.peer == peer, col(WitnessedHead.verdict).in_(KEPT))
            .order_by(col(WitnessedHead.tree_size).desc())
            .limit(1)
        )
        return session.exec(query).first()


def _keep(engine: Engine, head: WitnessedHead) -> None:
    """Store a head unless it is held already; idempotent even when two rounds keep the same head at once.

    The schedule lets one worker at a time run the scheduled round, but a manual round may overlap it (on
    another worker): then both may insert the same (peer, size, root). The second insert meets the primary key
    and is dropped: the row already held is the same evidence.
    """
    with Session(engine) as session:
        if session.get(WitnessedHead, (head.peer, head.tree_size, head.root_hash)) is not None:
            return
        session.add(head)
        try:
            session.commit()
        except IntegrityError:
            session.rollback()


def schedule_interval(node: Node) -> float:
    """Seconds between scheduled rounds on this node; 0 when off (setting 0, or no federation configured)."""
    federation: Federation = node.extensions["federation"]
    return node.settings.witness_interval_seconds if federation.store.configured else 0.0


async def recorded_round(
    node: Node, number: int, *, context: AuditContext, request_id: str | None = None
) -> list[WitnessReport]:
    """Run round ``number`` (already started in the schedule) and record how it ended, a failure included.

    The round's number goes into ``context.extra``, so its outbound calls' audit entries name the round. A
    round cut short by the node stopping is recorded as such, so it does not look as if it were still running.
    """
    context.extra["witness_round"] = number
    try:
        reports = await witness_round(node, request_id=request_id, context=context)
    except (Exception, asyncio.CancelledError) as exc:
        stopped = isinstance(exc, asyncio.CancelledError)
        error = "cancelled: the node stopped" if stopped else f"{type(exc).__name__}: {exc}"[:1000]
        await run_to_completion(lambda: finish(node.engine, number=number, now=utcnow(), reports=[], error=error))
        raise
    done = [report.model_dump(mode="json") for report in reports]
    await run_to_completion(lambda: finish(node.engine, number=number, now=utcnow(), reports=done))
    return reports


async def witness_round(node: Node, *, request_id: str | None = None, context: Any = None) -> list[WitnessReport]:
    """Ask every peer this node may witness for its signed tree head; check, keep and judge each one."""
    federation: Federation = node.extensions["federation"]
    runtime = runtime_of(node)
    dataset, purpose = Dataset.audit_tree_heads.value, Purpose.audit_witnessing.value
    permits = await run_to_completion(
        providers_for, runtime.policy, requester=node.node_id, dataset=dataset, purpose=purpose, at=runtime.now()
    )
    calls = [
        PeerCall(peer, TREE_HEAD_PATH, purpose, agreement=decision.agreement_id, dataset=dataset)
        for peer, decision in permits.items()
    ]
    if not calls:
        return []
    result = await fanout(
        federation.client, calls, deadline_seconds=DEADLINE_SECONDS, request_id=request_id, context=context
    )
    directory = federation.store.require()
    reports = []
    for answer in result.results:
        if answer.outcome is not PeerOutcome.ok:
            reports.append(
                WitnessReport(peer=answer.peer, verdict="unreachable", detail=answer.detail or answer.outcome.value)
            )
            continue
        entry = directory.node(answer.peer)
        call = next(c for c in calls if c.peer == answer.peer)
        reports.append(
            await _judge(node, federation, call, answer.body, entry.keys if entry else {}, request_id, context)
        )
    return reports


async def _judge(
    node: Node,
    federation: Federation,
    call: PeerCall,
    body: Any,
    keys: Mapping[str, Any],
    request_id: str | None,
    context: Any,
) -> WitnessReport:
    """The verdict on one peer's answer, the head kept where it says something."""
    peer = call.peer
    try:
        head = SignedTreeHead.model_validate(body)
        verify_detached(head.tree_head.model_dump(), head.signature, typ=TYP_TREE_HEAD, resolve=_resolver(keys))
        stamp = datetime.fromisoformat(head.tree_head.timestamp)
    except (ValueError, SignatureInvalid) as exc:
        return WitnessReport(peer=peer, verdict="unverified", detail=f"tree head refused: {exc}")
    if head.tree_head.node_id != peer:
        return WitnessReport(peer=peer, verdict="unverified", detail="the tree head is another node's")
    size, root = head.tree_head.tree_size, head.tree_head.root_hash
    last = await run_to_completion(_last_kept, node.engine, peer)
    report = WitnessReport(peer=peer, verdict="first", tree_size=size, root_hash=root)
    if last is not None:
        report.previous_size = last.tree_size
        if size == last.tree_size:
            same = root == last.root_hash
            report.verdict = "unchanged" if same else "inconsistent"
            report.detail = None if same else "same tree size, different root: the log forked"
        elif size < last.tree_size and stamp < last.timestamp:
            # Signed before the head kept: an earlier view, fetched by a round that overlapped the one that kept the
            # newer head (a manual round beside a scheduled one), if the kept head provably extends it.
            kept_head = (last.tree_size, last.root_hash)
            verdict, detail = await _extends(federation, call, (size, root), kept_head, request_id, context)
            if verdict == "consistent":
                verdict, detail = "unchanged", f"an older head than the {last.tree_size}-entry one kept"
            report.verdict, report.detail = verdict, detail
        elif size < last.tree_size:
            report.verdict, report.detail = "inconsistent", f"the log shrank from {last.tree_size} entries"
        else:
            kept_head = (last.tree_size, last.root_hash)
            verdict, detail = await _extends(federation, call, kept_head, (size, root), request_id, context)
            report.verdict, report.detail = verdict, detail
    if report.verdict in ("unchanged", "unreachable"):
        return report
    kept = WitnessedHead(
        peer=peer,
        tree_size=size,
        root_hash=root,
        timestamp=stamp,
        signature=head.signature,
        witnessed_at=utcnow(),
        verdict=report.verdict,
        detail=report.detail,
    )
    await run_to_completion(_keep, node.engine, kept)
    return report


async def _extends(
    federation: Federation,
    call: PeerCall,
    first: tuple[int, str],
    second: tuple[int, str],
    request_id: str | None,
    context: Any,
) -> tuple[Verdict, str | None]:
    """Whether the peer proves that its tree ``second`` (size, root) extends its tree ``first`` (RFC 9162 §2.1.4)."""
    (first_size, first_root), (size, root) = first, second
    path = f"{CONSISTENCY_PATH}?first={first_size}&second={size}"
    answer = await federation.client.call(
        call.peer,
        "GET",
        path,
        purpose=call.purpose,
        agreement=call.agreement,
        dataset=call.dataset,
        timeout=DEADLINE_SECONDS,
        request_id=request_id,
        context=context,
    )
    if answer.outcome is not PeerOutcome.ok:
        # No proof, no verdict either way: the head is not kept, the next round asks again.
        return "unreachable", f"consistency proof: {answer.detail or answer.outcome.value}"
    try:
        proof = ConsistencyProofPublic.model_validate(answer.body)
        hashes = [bytes.fromhex(h) for h in proof.proof]
        good = (proof.first, proof.second) == (first_size, size) and verify_consistency(
            first_size, size, bytes.fromhex(first_root), bytes.fromhex(root), hashes
        )
    except ValueError:
        good = False
    if good:
        return "consistent", None
    return "inconsistent", f"no valid consistency proof from the {first_size}-entry head to the {size}-entry one"


@local_router.post("", name="audit.witness_round")
async def run_round(request: Request, node: NodeDep, _: Governance) -> WitnessRound:
    """Witness every peer an agreement allows, now; each peer's verdict."""
    context = audit_context(request)
    number = await run_to_completion(lambda: begin(node.engine, worker=worker_id(), now=utcnow()))
    reports = await recorded_round(node, number, context=context, request_id=getattr(request.state, "request_id", None))
    context.result_count = len(reports)
    return WitnessRound(reports=reports)


@local_router.get("", name="audit.witnessed")
def witnessed(node: NodeDep, _: Governance) -> WitnessState:
    """The last head kept of every peer witnessed, every inconsistency ever found, the last and next round."""
    with Session(node.engine) as session:
        rows = session.exec(select(WitnessedHead).order_by(WitnessedHead.peer, col(WitnessedHead.tree_size))).all()
    last = read(node.engine)
    interval = schedule_interval(node)
    latest: dict[str, WitnessedHead] = {}
    for row in rows:
        if row.verdict in KEPT:
            latest[row.peer] = row
    public = [WitnessedPublic.model_validate(row, from_attributes=True) for row in latest.values()]
    broken = [WitnessedPublic.model_validate(r, from_attributes=True) for r in rows if r.verdict == "inconsistent"]
    last_round = None
    if last is not None:
        last_round = WitnessRoundPublic.model_validate(
            {**last.model_dump(exclude={"id", "worker", "reports"}), "reports": reports_of(last)}
        )
    return WitnessState(
        latest=public,
        inconsistencies=broken,
        interval_seconds=interval,
        last_round=last_round,
        next_due_at=next_due(last, interval=interval, since=node.started_at),
    )
