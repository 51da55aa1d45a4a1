"""Capacity between nodes: cross-border placement search and the national secure-bed board.

Inbound, two routes for authenticated peers, each after the policy decision
(:func:`agreements.runtime.enforce_request`) under the agreement the caller claims:

* ``POST /federation/v1/capacity/search`` (dataset ``capacity.vacancies``) answers the same request body a
  commissioner sends, from this node's own register only — never by asking further peers — and stores
  nothing of it (the audit entry keeps the body's digest, not the criteria);
* ``GET /federation/v1/capacity/secure-beds`` (dataset ``capacity.secure-beds``) lists this node's current
  secure-home reports.

Outbound, :func:`install_capacity` puts three functions in ``node.extensions`` for ``registry.capacity.api``:

* :func:`peer_search` — the peers *within reach* (``region``: none; ``neighbours``: regional nodes whose region
  shares a border with this node's, per ``registry.core.domain.neighbours()``; ``national``: every regional
  node), each judged by this node's own copy of the agreements. A peer no active agreement lets this node ask
  is reported ``refused`` with the policy's reason (``no-agreement``, ``revoked``, ``expired``…) and is **not
  called**: asking would only send the criteria somewhere they are not allowed to go. The rest are asked in
  parallel under the search's ``deadline_ms``; a peer that refuses anyway (its copy of an agreement says
  otherwise, e.g. it revoked first) is ``refused`` with the reason from its 403.
* :func:`fee_caps` — marks results against the fee caps this node holds (its own and peers' copies).
* :func:`national_board` — this node's secure homes plus every home a peer under agreement reports.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable
from datetime import date, datetime
from decimal import Decimal
from functools import partial
from typing import Any

from fastapi import APIRouter, FastAPI, Request, Response
from pydantic import BaseModel, ValidationError
from sqlalchemy import select
from sqlmodel import Session, col
from starlette.concurrency import run_in_threadpool
from starlette.types import Receive, Scope, Send

from agreements.policy import Decision, DenyReason, Snapshot, snapshot_of
from agreements.runtime import enforce_request, get_runtime
from federation.direct import DirectRoute, in_session, install_direct, json_body
from federation.directory import Directory, DirectoryNode
from federation.fanout import PeerCall, fanout
from federation.guard import PeerDep, authenticate_peer
from federation.models import PeerResult
from federation.runtime import Federation
from registry.capacity import board
from registry.capacity.api import FEE_CAPS_EXTENSION, NATIONAL_BOARD_EXTENSION, PEER_SEARCH_EXTENSION
from registry.capacity.models import (
    PeerReport,
    SearchRequest,
    SearchResponse,
    SearchResult,
    VacancyDocument,
    is_stale,
    region_of_la,
)
from registry.capacity.search import search_local_json
from registry.capacity.secure_models import (
    SECURE_HOME_STALE_AFTER,
    BoardHome,
    SecureBedBoard,
    SecureHomeList,
    SecureHomePublic,
)
from registry.capacity.service import FeeCheck, list_secure_homes
from registry.core import domain
from registry.core.audit.context import audit_context
from registry.core.db import SessionDep, utcnow
from registry.core.node import Node, NodeDep
from registry.publications.feecaps import FeeCaps, exact, load_fee_caps
from registry.publications.kinds import Kind
from registry.publications.models import Publication, PublicationVersion
from schemas.vocabulary import Dataset, NeedLevel, PeerOutcome, Purpose, Reach

router = APIRouter(prefix="/federation/v1/capacity", tags=["federation"])

SEARCH_PATH = "/federation/v1/capacity/search"
SECURE_BEDS_PATH = "/federation/v1/capacity/secure-beds"
# Time kept back from a search's deadline to merge, rank and answer, so the commissioner has the answer
# within the deadline (the fan-out itself cuts every call off at the remainder).
FINISH_RESERVE_SECONDS = 0.05
BOARD_DEADLINE_SECONDS = 10.0


# ------------------------------------------------------------------------------------------------ inbound


def search(body: SearchRequest, peer: PeerDep, request: Request, node: NodeDep, session: SessionDep) -> Response:
    """This node's own matches for a peer's search (never forwarded; nothing of the request is stored).

    The answer is a :class:`SearchResponse` without peers, written straight from the register's rows
    (:func:`search_local_json`). Served by :func:`serve_search`; FastAPI documents it from this signature and
    the response model :func:`search_route` names.
    """
    enforce_request(
        request,
        requester=peer.node_id,
        dataset=Dataset.capacity_vacancies.value,
        purpose=peer.purpose.value,
        agreement_id=peer.agreement,
        session=session,
    )
    content, count = search_local_json(
        session, body, now=utcnow(), node_id=node.node_id, region_code=node.settings.region_code
    )
    audit_context(request).result_count = count
    return Response(content, media_type="application/json")


async def serve_search(scope: Scope, receive: Receive, send: Send) -> None:
    """:func:`search` as a plain ASGI app: every region a national search reaches answers through here.

    The guard, the body read into a :class:`SearchRequest` (refused as FastAPI would), then one thread-pool
    hop for the policy decision, the search and the JSON, in one session. A refusal raises to the node's
    problem+json handler, as from the dependency.
    """
    request = Request(scope, receive)
    peer = await authenticate_peer(request)
    body = json_body(SearchRequest, await request.body())
    node: Node = request.app.state.node
    answer = await run_in_threadpool(in_session, node.engine, partial(search, body, peer, request, node))
    await answer(scope, receive, send)


def search_route() -> DirectRoute:
    """``POST /federation/v1/capacity/search``, served by :func:`serve_search`."""
    return DirectRoute(
        SEARCH_PATH,
        search,
        serve=serve_search,
        methods=["POST"],
        name="federation.capacity_search",
        response_model=SearchResponse,
        tags=["federation"],
    )


@router.get("/secure-beds", name="federation.capacity_secure_beds")
def secure_beds(peer: PeerDep, request: Request, session: SessionDep) -> SecureHomeList:
    """This node's current secure-home reports, for a peer an agreement grants ``capacity.secure-beds``."""
    enforce_request(
        request,
        requester=peer.node_id,
        dataset=Dataset.capacity_secure_beds.value,
        purpose=peer.purpose.value,
        agreement_id=peer.agreement,
        session=session,
    )
    homes = list_secure_homes(session, now=utcnow())
    audit_context(request).result_count = len(homes.items)
    return homes


def install_capacity(app: FastAPI, node: Node) -> None:
    """Serve capacity to peers and give the local capacity routes their federation (called by ``create_app``)."""
    app.include_router(router)
    install_direct(app, search_route())
    node.extensions[PEER_SEARCH_EXTENSION] = peer_search
    node.extensions[FEE_CAPS_EXTENSION] = fee_caps
    node.extensions[NATIONAL_BOARD_EXTENSION] = national_board


# ------------------------------------------------------------------------------------------------ search


def within_reach(directory: Directory, *, node_id: str, region_code: str | None, reach: Reach) -> list[DirectoryNode]:
    """The regional nodes a search with ``reach`` goes to from this node (this node excluded), by node id."""
    if reach is Reach.region:
        return []
    if reach is Reach.neighbours:
        if region_code is None:
            return []
        regions: frozenset[str] | None = domain.neighbours().get(region_code, frozenset())
    else:
        regions = None
    at = time.time()
    return sorted(
        (
            entry
            for entry in directory.nodes.values()
            if entry.node_id != node_id
            and entry.kind == "regional"
            and entry.region_code is not None
            and (regions is None or entry.region_code in regions)
            and directory.node(entry.node_id, at=at) is not None
        ),
        key=lambda entry: entry.node_id,
    )


_NOT_GRANTED = frozenset({DenyReason.dataset_not_granted, DenyReason.purpose_not_granted})


def decide(snapshot: Snapshot, *, provider: str, requester: str, dataset: str, purpose: str, at: datetime) -> Decision:
    """The policy decision, with the refusal a commissioner can act on.

    The policy reports the denial "closest to a permit" over every agreement the two share, so once the
    agreement that granted vacancies is revoked, another (say, for secure beds) answers "dataset not
    granted". Here an agreement that does grant this dataset between the two is asked first: its reason
    (``revoked``, ``expired``, ``suspended-review``…) says what actually changed.
    """
    decision = snapshot.decide(provider=provider, requester=requester, dataset=dataset, purpose=purpose, at=at)
    if decision.permit or decision.reason not in _NOT_GRANTED:
        return decision
    for facts in snapshot.by_pair.get((provider, requester), ()):
        grants = facts.document.grants
        if any(g.provider == provider and requester in g.recipients and dataset in g.datasets for g in grants):
            specific = snapshot.decide(
                provider=provider,
                requester=requester,
                dataset=dataset,
                purpose=purpose,
                at=at,
                agreement_id=facts.document.id,
            )
            if not specific.permit and specific.reason not in _NOT_GRANTED:
                return specific
    return decision


def _decisions(request: Request, peers: Iterable[str], *, dataset: str, purpose: str) -> dict[str, Decision]:
    node: Node = request.app.state.node
    runtime = get_runtime(request)
    snapshot = snapshot_of(runtime.policy)
    at = runtime.now()
    return {
        peer: decide(snapshot, provider=peer, requester=node.node_id, dataset=dataset, purpose=purpose, at=at)
        for peer in peers
    }


def _report(result: PeerResult, region: str | None, count: int = 0) -> PeerReport:
    reason = result.detail
    if result.outcome is PeerOutcome.refused and isinstance(result.body, dict) and result.body.get("reason"):
        reason = str(result.body["reason"])  # the peer's policy reason, e.g. "revoked"
    return PeerReport(
        node_id=result.peer,
        region_code=region,
        outcome=PeerOutcome.ok if result.ok else result.outcome,
        reason=None if result.ok else reason,
        latency_ms=round(result.latency_ms, 1),
        count=count,
    )


def _refusal(entry: DirectoryNode, decision: Decision) -> PeerReport:
    return PeerReport(
        node_id=entry.node_id,
        region_code=entry.region_code,
        outcome=PeerOutcome.refused,
        reason=str(decision.reason),
        latency_ms=0.0,
        count=0,
    )


class _PeerAnswer(BaseModel):
    """The part of a peer's :class:`SearchResponse` a searching node reads (its own ``peers`` are empty)."""

    results: list[SearchResult]


def peer_results(content: bytes, entry: DirectoryNode, *, now: datetime) -> list[SearchResult] | None:
    """A peer's answer (the exact bytes it signed) as results credited to that peer, expired ones dropped;
    None if it is not an answer.

    The node id and region come from the directory, not the answer: a peer cannot pass off places as another
    node's. The bytes are validated as they are: pydantic reads JSON 3x faster than the parsed dicts, and a
    national search reads every region's answer. The results are fresh objects of this call's own, so they are
    relabelled in place (copying each cost two-thirds as much as validating it).
    """
    try:
        parsed = _PeerAnswer.model_validate_json(content).results
    except ValidationError:
        return None
    node_id, region = entry.node_id, entry.region_code
    kept = []
    for result in parsed:
        if result.vacancy.valid_until > now:
            values = result.__dict__
            values["node_id"] = node_id
            values["region_code"] = region or values["region_code"]
            kept.append(result)
    return kept


async def peer_search(request: Request, search_request: SearchRequest) -> tuple[list[SearchResult], list[PeerReport]]:
    """Ask every peer within reach that an agreement lets this node ask; see the module docstring."""
    started = time.monotonic()
    node: Node = request.app.state.node
    federation: Federation = node.extensions["federation"]
    directory = federation.store.require()  # 503 (DirectoryUnavailable) when no valid directory is held
    reachable = within_reach(
        directory, node_id=node.node_id, region_code=node.settings.region_code, reach=search_request.reach
    )
    if not reachable:
        return [], []
    dataset, purpose = Dataset.capacity_vacancies.value, search_request.purpose.value
    decisions = await run_in_threadpool(
        _decisions, request, [e.node_id for e in reachable], dataset=dataset, purpose=purpose
    )
    entries = {e.node_id: e for e in reachable}
    refused = [_refusal(entries[p], d) for p, d in decisions.items() if not d.permit]
    document = search_request.model_dump(mode="json", exclude_none=True)
    calls = [
        PeerCall(
            p,
            SEARCH_PATH,
            purpose,
            method="POST",
            json_body=document,
            agreement=d.agreement_id,
            dataset=dataset,
            parse=False,  # the answer's bytes are validated straight into results (peer_results), as each comes in
        )
        for p, d in decisions.items()
        if d.permit
    ]
    answered: list[PeerReport] = []
    remote: list[SearchResult] = []
    if calls:
        read: dict[str, list[SearchResult] | None] = {}

        def read_answer(outcome: PeerResult) -> None:
            if outcome.ok:
                read[outcome.peer] = peer_results(outcome.content, entries[outcome.peer], now=utcnow())

        budget = search_request.deadline_ms / 1000 - (time.monotonic() - started) - FINISH_RESERVE_SECONDS
        result = await fanout(
            federation.client,
            calls,
            deadline_seconds=max(budget, 0.0),
            retries=0,
            request_id=getattr(request.state, "request_id", None),
            context=audit_context(request),
            on_result=read_answer,
        )
        for outcome in result.results:
            entry = entries[outcome.peer]
            if not outcome.ok:
                answered.append(_report(outcome, entry.region_code))
                continue
            found = read.get(outcome.peer)
            if found is None:
                outcome.outcome, outcome.detail = PeerOutcome.error, "answer is not a capacity search response"
                answered.append(_report(outcome, entry.region_code))
                continue
            remote.extend(found)
            answered.append(_report(outcome, entry.region_code, len(found)))
    reports = sorted([*answered, *refused], key=lambda r: r.node_id)
    return remote, reports


# ------------------------------------------------------------------------------------------------ fee caps


def fee_caps(session: Session, now: datetime) -> FeeCheck:
    """The fee check for one search, from the caps this node holds in force today (own and peers' copies).

    A vacancy names no need level, and the child's band is not part of the search, so a fee is within the cap
    when it is within the cap of *some* need level priced for its setting type where it is, over it when it
    exceeds every one, and null when no cap covers it: a fee above even the highest band is certainly over.
    That is: within when it is at most the highest of those caps. The highest is looked up once per setting
    type and LA in a search, not once per result and need level.
    """
    caps = _fee_caps_held(session, now.date())
    if not caps.in_force:
        return _no_cap
    levels = [level.value for level in NeedLevel]
    highest: dict[tuple[str, str], Decimal | None] = {}

    def ceiling(setting_type: str, la_code: str) -> Decimal | None:
        key = (setting_type, la_code)
        if key not in highest:
            found = [
                held.caps[(setting_type, level)]
                for level in levels
                if (held := caps.find(setting_type, level, la_code)) is not None
            ]
            highest[key] = max(found) if found else None
        return highest[key]

    def check(vacancy: VacancyDocument) -> bool | None:
        cap = ceiling(vacancy.setting_type.value, vacancy.la_code)
        return None if cap is None else exact(vacancy.weekly_fee) <= cap

    return check


# What the fee caps in force depend on, read by a statement built once: each fee-cap publication's latest
# version, its digest, state and dates. Building the full query (ORM entities, documents) for every search
# cost more than a search's own SQL; it is run again only when this changes.
_pv, _pub = PublicationVersion, Publication
_FEE_CAP_VERSIONS = (
    select(
        col(_pv.node_id),
        col(_pv.publication_id),
        col(_pv.version),
        col(_pv.sha256),
        col(_pv.state),
        col(_pv.effective_from),
        col(_pv.effective_to),
        col(_pub.region_code),
    )
    .join(
        _pub,
        (col(_pub.node_id) == col(_pv.node_id))
        & (col(_pub.id) == col(_pv.publication_id))
        & (col(_pub.latest_version) == col(_pv.version)),
    )
    .where(col(_pv.kind) == Kind.fee_cap.value)
    .order_by(col(_pv.node_id), col(_pv.publication_id))
)
_FEE_CAPS_KEPT = 32
_fee_caps_cache: dict[tuple[date, tuple[tuple[Any, ...], ...]], FeeCaps] = {}
_fee_caps_lock = threading.Lock()


def _fee_caps_held(session: Session, on: date) -> FeeCaps:
    """:func:`load_fee_caps` for ``on``, reused while the fee-cap versions held are the same (by digest)."""
    key = (on, tuple(tuple(row) for row in session.connection().execute(_FEE_CAP_VERSIONS)))
    with _fee_caps_lock:
        found = _fee_caps_cache.get(key)
    if found is None:
        # Loaded in a session of its own on the same connection, then detached whole: the rows it keeps must
        # outlive this request's session (whose commit would expire them), to serve the searches after it.
        with Session(bind=session.connection()) as own:
            found = load_fee_caps(own, on=on, upcoming=False)
            own.expunge_all()
        with _fee_caps_lock:
            if len(_fee_caps_cache) >= _FEE_CAPS_KEPT:
                _fee_caps_cache.clear()
            _fee_caps_cache[key] = found
    return found


def _no_cap(_vacancy: VacancyDocument) -> None:
    """The fee check where no cap is in force: nothing is known to be within or over one."""
    return None


# ------------------------------------------------------------------------------------------------ national board


def _board_homes(body: Any, entry: DirectoryNode, *, now: datetime) -> list[BoardHome] | None:
    if not isinstance(body, dict) or not isinstance(body.get("items"), list):
        return None
    try:
        homes = [SecureHomePublic.model_validate(item) for item in body["items"]]
    except ValidationError:
        return None
    return [
        BoardHome.model_construct(
            **{
                **dict(home),
                "region_code": region_of_la(home.la_code) or entry.region_code or home.region_code,
                "stale": is_stale(home.as_of, now, SECURE_HOME_STALE_AFTER),
            },
            node_id=entry.node_id,
        )
        for home in homes
        if home.valid_until > now
    ]


async def national_board(request: Request) -> SecureBedBoard:
    """England's secure-bed board: this node's homes and those of every peer an agreement lets it ask.

    Every English region gets a row; ``missing_regions`` names those with no home on the board because no
    node of theirs answered (down, refused, or no agreement), and ``peers`` says what became of each peer.
    A home reported by two nodes is counted once (the first by node id).
    """
    node: Node = request.app.state.node
    federation: Federation = node.extensions["federation"]
    dataset, purpose = Dataset.capacity_secure_beds.value, Purpose.secure_placement.value
    directory = federation.store.require()  # 503 (DirectoryUnavailable) when no valid directory is held
    reachable = {
        e.node_id: e
        for e in within_reach(
            directory, node_id=node.node_id, region_code=node.settings.region_code, reach=Reach.national
        )
    }

    def local_part() -> tuple[list[BoardHome], dict[str, Decision]]:
        with Session(node.engine) as session:
            homes = [
                BoardHome.model_construct(**dict(h), node_id=node.node_id)
                for h in list_secure_homes(session, now=utcnow()).items
            ]
        return homes, _decisions(request, reachable, dataset=dataset, purpose=purpose)

    homes, decisions = await run_in_threadpool(local_part)
    calls = [
        PeerCall(p, SECURE_BEDS_PATH, purpose, agreement=d.agreement_id, dataset=dataset)
        for p, d in decisions.items()
        if d.permit
    ]
    result = await fanout(
        federation.client,
        calls,
        deadline_seconds=BOARD_DEADLINE_SECONDS,
        request_id=getattr(request.state, "request_id", None),
        context=audit_context(request),
    )
    now = utcnow()
    reports = [_refusal(reachable[p], d) for p, d in decisions.items() if not d.permit]
    answered = {node.settings.region_code} if node.settings.region_code else set()
    seen = {h.urn for h in homes}
    for outcome in result.results:
        entry = reachable.get(outcome.peer)
        region = entry.region_code if entry is not None else None
        found = _board_homes(outcome.body, entry, now=now) if outcome.ok and entry is not None else None
        if outcome.ok and found is None:
            outcome.outcome, outcome.detail = PeerOutcome.error, "answer is not a secure-home list"
        if found is None:
            reports.append(_report(outcome, region))
            continue
        fresh = [h for h in found if h.urn not in seen]
        seen.update(h.urn for h in fresh)
        homes.extend(fresh)
        if region is not None:
            answered.add(region)
        reports.append(_report(outcome, region, len(fresh)))
    regions = sorted(domain.english_regions())
    reports.sort(key=lambda r: r.node_id)
    answer = board.summarise(homes, now=now, node_id=node.node_id, scope="national", regions=regions, peers=reports)
    answer.missing_regions = [r for r in regions if r not in answered]
    return answer
