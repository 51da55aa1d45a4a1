"""Fee caps across England (every role): the comparison table, a bar chart, and protocols' notification duties.

``registry.publications.compare`` does the comparing, as for ``GET /v1/compare/fee-caps`` and
``/v1/compare/placement-protocols``: documents whose signatures do not verify are left out and named. The
comparison covers what this node holds; "Fetch every region's latest" first runs the gather that
``GET /v1/publications?scope=national`` runs (every peer an agreement lets this node ask, signatures checked).
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse

from registry.core.audit.context import audit_context
from registry.core.db import SessionDep
from registry.core.node import NodeDep
from registry.publications import compare, copies, service, signatures
from registry.publications.kinds import Kind
from registry.publications.models import PeerReport
from registry.ui.capacity import OUTCOME_LABELS
from registry.ui.chart import bar_chart, compared
from registry.ui.render import region_name, render
from registry.ui.session import AnyUser
from schemas.vocabulary import NeedLevel, Purpose, SettingType

router = APIRouter(prefix="/ui", tags=["pages"], include_in_schema=False)


@router.get("/fee-caps", name="ui.fee_caps", response_class=HTMLResponse)
def fee_caps(
    request: Request,
    session: SessionDep,
    node: NodeDep,
    _principal: AnyUser,
    setting_type: Annotated[SettingType, Query()] = SettingType.childrens_home,
    need_level: Annotated[NeedLevel, Query()] = NeedLevel.standard,
    gather: Annotated[bool, Query()] = False,
) -> HTMLResponse:
    """Each region's fee cap for a setting type and need level against the national median; protocols' duties."""
    peers: list[PeerReport] = []
    if gather:
        peers = copies.gather_for(
            node,
            kinds=[Kind.fee_cap, Kind.placement_protocol],
            purpose=Purpose.market_transparency,
            request_id=getattr(request.state, "request_id", None),
            context=audit_context(request),
        )
    keys = signatures.keys_for(node)
    today = service.today()
    caps = compare.compare_fee_caps(session, setting_type=setting_type, need_level=need_level, on=today, keys=keys)
    protocols = compare.compare_placement_protocols(session, on=today, keys=keys)
    audit_context(request).result_count = len(caps.rows) + len(protocols.protocols)
    chart = bar_chart(
        [
            (
                row.region_name or region_name(row.region_code) or row.node_id,
                row.max_weekly_fee,
                row.percent_from_median,
            )
            for row in caps.rows
        ],
        median=caps.median,
    )
    return render(
        request,
        "fee_caps.html",
        title="Fee caps across England",
        caps=caps,
        protocols=protocols,
        chart=chart,
        compared=compared,
        setting_types=list(SettingType),
        need_levels=list(NeedLevel),
        setting_type=setting_type.value,
        need_level=need_level.value,
        peers=peers,
        outcome_labels=OUTCOME_LABELS,
        gathered=gather,
    )
