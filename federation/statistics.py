"""Statistics between nodes: serving a region's signed tables, and combining every region's into England's.

Inbound, ``GET /federation/v1/statistics/{table}`` serves dataset ``statistics.looked-after`` for purpose
``national-statistics`` or ``sufficiency-planning`` only, after the policy decision
(:func:`agreements.runtime.enforce_request`). It answers the newest release's table exactly as signed at build
time, unless the permit's grant sets a minimum cell size above the release's threshold: then the table is
re-protected from the stored episodes at that threshold and signed afresh (thresholds nest, so the stricter
copy reveals nothing the stored one did not).

Outbound, :func:`national_table` (installed as the ``?scope=national`` handler of ``GET /v1/statistics/{table}``)
asks every peer an agreement lets this node ask, checks each table's signature against that peer's key in the
signed directory (and that it is the table, year and region asked for), and :func:`combine` builds the England
table: regional rows exactly as published, England figures summed from the regional figures. England shows
``x`` where a region is missing (no answer, bad signature, other year) and ``c`` where any region's figure is
suppressed or ``low`` — a sum over a hidden figure would un-hide it, so nothing suppressed is ever recovered.
Each peer's outcome is listed in the answer.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from itertools import product
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from fastapi import APIRouter, FastAPI, Request
from starlette.concurrency import run_in_threadpool

from agreements.policy import providers_for
from agreements.runtime import enforce_request, get_runtime
from federation.fanout import PeerCall, fanout
from federation.guard import PeerDep
from federation.runtime import Federation
from registry.core.audit.context import audit_context
from registry.core.db import SessionDep
from registry.core.domain import english_regions
from registry.core.errors import Forbidden
from registry.core.keys import public_key_from_jwk
from registry.core.node import Node, NodeDep
from registry.core.signing import TYP_STATISTICS, SignatureInvalid, verify_detached
from registry.statistics import service
from registry.statistics.api import NATIONAL_EXTENSION
from registry.statistics.catalogue import ENGLAND, TOTAL, TableSpec
from registry.statistics.disclosure import Published, Symbol, percentage, render, round_half_up
from registry.statistics.models import PeerStatus, SignedTable, StatisticsTable
from schemas.vocabulary import Dataset, PeerOutcome, Purpose

router = APIRouter(prefix="/federation/v1/statistics", tags=["federation"])

PURPOSES = frozenset({Purpose.national_statistics.value, Purpose.sufficiency_planning.value})
FANOUT_DEADLINE_SECONDS = 15.0
_UNAVAILABLE = Symbol.unavailable.value


class PurposeNotServed(Forbidden):
    """Statistics are served between nodes only for national statistics or sufficiency planning."""

    code = "statistics-purpose-not-served"
    title = "Statistics are not served for this purpose"

    def __init__(self, purpose: str) -> None:
        self.purpose = purpose
        super().__init__(f"purpose {purpose!r} is not one statistics are served for", purpose=purpose)


@router.get("/{table}", name="federation.statistics_table")
def statistics_table(
    table: str, peer: PeerDep, request: Request, node: NodeDep, session: SessionDep, year: int | None = None
) -> SignedTable:
    """The newest release's table as signed, for a peer an agreement grants statistics.looked-after."""
    service.spec_or_raise(table)
    purpose = peer.purpose.value
    if purpose not in PURPOSES:
        context = audit_context(request)
        context.dataset, context.purpose, context.decision, context.reason = (
            Dataset.statistics_looked_after.value,
            purpose,
            "deny",
            "purpose-not-served",
        )
        raise PurposeNotServed(purpose)
    decision = enforce_request(
        request,
        requester=peer.node_id,
        dataset=Dataset.statistics_looked_after.value,
        purpose=purpose,
        agreement_id=peer.agreement,
        session=session,
    )
    release, signed = service.get_signed_table(session, table, year=year)
    if decision.min_cell_size is not None and decision.min_cell_size > release.threshold:
        signed = service.reprotect(
            session, release, table, node_id=node.node_id, key=node.keys.active, min_cell_size=decision.min_cell_size
        )
    audit_context(request).result_count = len(signed.document["rows"])
    return signed


def install_statistics(app: FastAPI, node: Node) -> None:
    """Serve statistics to peers and answer ``?scope=national`` on this node (called by ``create_app``)."""
    app.include_router(router)
    node.extensions[NATIONAL_EXTENSION] = national_table


async def national_table(request: Request, table: str, year: int | None) -> StatisticsTable:
    """England's table from every region an agreement lets this node ask, each release's signature checked."""
    spec = service.spec_or_raise(table)
    node: Node = request.app.state.node
    federation: Federation = node.extensions["federation"]
    runtime = get_runtime(request)
    dataset, purpose = Dataset.statistics_looked_after.value, Purpose.national_statistics.value
    permits = await run_in_threadpool(
        providers_for, runtime.policy, requester=node.node_id, dataset=dataset, purpose=purpose, at=runtime.now()
    )
    path = f"/federation/v1/statistics/{table}" + (f"?year={year}" if year is not None else "")
    calls = [
        PeerCall(peer, path, purpose, agreement=decision.agreement_id, dataset=dataset)
        for peer, decision in permits.items()
    ]
    result = await fanout(
        federation.client,
        calls,
        deadline_seconds=FANOUT_DEADLINE_SECONDS,
        request_id=getattr(request.state, "request_id", None),
        context=audit_context(request),
    )
    # Without a valid directory no signature can be checked: 503 (DirectoryUnavailable), unless no peer was asked.
    directory = federation.store.require() if calls else None
    statuses: list[PeerStatus] = []
    documents: dict[str, dict[str, Any]] = {}
    for answer in result.results:
        entry = directory.node(answer.peer) if directory is not None else None
        region = entry.region_code if entry is not None else None
        status = PeerStatus(
            peer=answer.peer,
            region_code=region,
            outcome=answer.outcome.value,
            status=answer.status,
            detail=answer.detail,
        )
        if answer.outcome is PeerOutcome.ok and entry is not None and region is not None:
            problem = _check(answer.body, entry.keys, table=table, year=year, region=region, peer=answer.peer)
            if problem is None:
                document = answer.body["document"]
                status.verified, status.release_version = True, document.get("release_version")
                documents.setdefault(region, document)
            else:
                status.outcome, status.detail = "rejected", problem
        statuses.append(status)
    chosen = year if year is not None else max((int(d["year"]) for d in documents.values()), default=0)
    usable = {r: d for r, d in documents.items() if int(d["year"]) == chosen}
    rows, missing, suppressed = combine(spec, chosen, {r: d["rows"] for r, d in usable.items()})
    audit_context(request).result_count = len(rows)
    return StatisticsTable(
        table=table,
        title=spec.title,
        scope="national",
        year=chosen,
        rows=service.ees_rows(rows, spec),
        missing_regions=missing,
        suppressed_regions=suppressed,
        peers=statuses,
    )


def _check(body: Any, keys: Mapping[str, Any], *, table: str, year: int | None, region: str, peer: str) -> str | None:
    """Why a peer's answer cannot be used, or None: signature by the peer's directory key, and the right table."""
    if not isinstance(body, dict) or not isinstance(body.get("document"), dict) or "signature" not in body:
        return "answer is not a signed statistics table"
    document = body["document"]

    def resolve(kid: str) -> Ed25519PublicKey | None:
        key = keys.get(kid)
        return public_key_from_jwk(key.jwk) if key is not None else None

    try:
        verify_detached(document, body["signature"], typ=TYP_STATISTICS, resolve=resolve)
    except SignatureInvalid as exc:
        return f"signature: {exc.reason}"
    if document.get("node_id") != peer or document.get("table") != table or document.get("area_code") != region:
        return "signed table is not the one asked for (node, table or region differs)"
    if year is not None and document.get("year") != year:
        return f"signed table is for {document.get('year')}, not {year}"
    if not isinstance(document.get("rows"), list) or not isinstance(document.get("year"), int):
        return "signed table has no rows"
    return None


def combine(
    spec: TableSpec, year: int, regional: Mapping[str, Sequence[Mapping[str, Any]]]
) -> tuple[list[dict[str, str | int]], list[str], list[str]]:
    """England's table from each region's published rows: ``(rows, missing regions, suppressed regions)``.

    Regional rows are kept exactly as published; regions with no usable release get ``x`` rows. Each England
    figure is the sum of the regional figures for the same breakdown (regional figures are already rounded
    to 10, and the sum is rounded again for safety); ``x`` if any region is missing, else ``c`` if any region's
    figure is not a number. Percentages are computed from the England figures as published.
    """
    names = [b.name for b in spec.breakdowns]
    labels = list(product(*([*b.categories_in(year), TOTAL] for b in spec.breakdowns)))
    all_regions = english_regions()
    figures: dict[str, dict[tuple[str, ...], str]] = {}
    out: list[dict[str, str | int]] = []
    suppressed: list[str] = []
    for region in sorted(all_regions):
        rows = [r for r in regional.get(region, ()) if r.get("area_code") == region]
        if not rows:
            continue
        by_label = {tuple(str(r[n]) for n in names): str(r["number"]) for r in rows}
        if set(by_label) != set(labels):
            continue  # not the cube this node knows: treat the region as missing rather than guess
        figures[region] = by_label
        out.extend(dict(r) for r in rows)
        if any(not v.isdigit() for v in by_label.values()):
            suppressed.append(region)
    missing = [r for r in sorted(all_regions) if r not in figures]
    for region in missing:
        name = all_regions[region]
        out.extend(_row(year, region, name, "Regional", names, lab, _UNAVAILABLE, _UNAVAILABLE) for lab in labels)
    england: dict[tuple[str, ...], Published] = {}
    for lab in labels:
        england[lab] = _england_figure([f[lab] for f in figures.values()], complete=not missing)
    for lab in labels:
        share = percentage(england[lab], england[(TOTAL,) * len(names)])
        out.append(_row(year, ENGLAND, "England", "National", names, lab, render(england[lab]), render(share)))
    return out, missing, suppressed


def _england_figure(values: Sequence[str], *, complete: bool) -> Published:
    if not complete or not values:
        return Symbol.unavailable
    if any(not v.isdigit() for v in values):
        return Symbol.confidential
    return round_half_up(sum(int(v) for v in values))


def _row(
    year: int, area: str, name: str, level: str, names: list[str], labels: tuple[str, ...], number: str, percent: str
) -> dict[str, str | int]:
    return {
        "year": year,
        "geographic_level": level,
        "area_code": area,
        "area_name": name,
        **dict(zip(names, labels, strict=True)),
        "number": number,
        "percent": percent,
    }
