"""Find a placement (commissioners) and Secure beds in England (commissioners, analysts).

Both pages call the capacity API's own route functions — the search with its fan-out to the regions within
reach, the bed board with its national gathering — so a page shows exactly what the API answers, and the
audit entry records the same dataset, purpose and result count (never the search criteria: the form is
posted, so they stay out of URLs and logs, and the audit keeps only the body's digest).
"""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse
from pydantic import ValidationError

from registry.capacity import api as capacity_api
from registry.capacity.models import SearchRequest, SearchResponse
from registry.core import domain
from registry.core.db import SessionDep, utcnow
from registry.core.node import NodeDep
from registry.ui.render import render
from registry.ui.session import CommissionerUser, CsrfChecked, SecureBedUser
from schemas.vocabulary import Need, PeerOutcome, Purpose, Reach, SettingType, Sex

router = APIRouter(prefix="/ui", tags=["pages"], include_in_schema=False)

BOARD_REFRESH_SECONDS = 60
# GOV.UK error messages, per form field: say what to do, not what went wrong.
_FIELD_MESSAGES = {
    "age": "Enter the child's age, from 0 to 17",
    "sex": "Select the child's sex",
    "needs": "Select needs from the list",
    "setting_types": "Select setting types from the list",
    "home_la": "Enter the child's home local authority, as it appears in the list",
    "needed_by": "Enter the date the placement is needed by",
    "max_weekly_fee": "Enter the highest weekly fee in pounds and pence, for example 4500 or 4500.50",
    "reach": "Select how far to search",
    "purpose": "Select why you are searching",
}
OUTCOME_LABELS = {
    PeerOutcome.ok.value: "Answered",
    PeerOutcome.refused.value: "Refused",
    PeerOutcome.timeout.value: "Timed out",
    PeerOutcome.unreachable.value: "Unreachable",
    PeerOutcome.bad_signature.value: "Answer not trusted (bad signature)",
    PeerOutcome.error.value: "Error",
    PeerOutcome.unauthorized.value: "Did not accept this node",
}


def la_choices() -> list[tuple[str, str]]:
    """Every current English local authority as ``(name, code)``, by name: the searchable list of the form."""
    return sorted((la.name, la.ons_code) for la in domain.local_authorities().values() if la.live)


def resolve_la(text: str) -> str | None:
    """The ONS code for what was typed: a code, a name, or ``Name (code)`` as the list offers it."""
    text = text.strip()
    if not text:
        return None
    if text.endswith(")") and "(" in text:
        text = text.rsplit("(", 1)[1].rstrip(")").strip()
    las = domain.local_authorities()
    if text.upper() in las:
        return text.upper()
    by_name = {la.name.casefold(): code for code, la in las.items() if la.live}
    return by_name.get(text.casefold())


def _defaults() -> dict[str, Any]:
    return {
        "age": "",
        "sex": "",
        "needs": [],
        "setting_types": [],
        "home_la": "",
        "needed_by": (utcnow().date() + timedelta(days=14)).isoformat(),
        "max_weekly_fee": "",
        "within_fee_cap_only": False,
        "reach": Reach.national.value,
        "purpose": Purpose.placement_search.value,
    }


def _form_page(
    request: Request,
    *,
    values: dict[str, Any],
    errors: dict[str, str] | None = None,
    answer: SearchResponse | None = None,
    status: int = 200,
) -> HTMLResponse:
    node = request.app.state.node
    strip: list[dict[str, Any]] = []
    if answer is not None:
        own = sum(1 for r in answer.results if r.node_id == node.node_id)
        strip.append(
            {
                "node_id": node.node_id,
                "region_code": node.settings.region_code,
                "label": "Answered",
                "ok": True,
                "reason": None,
                "count": own,
                "latency_ms": None,
                "own": True,
            }
        )
        for peer in answer.peers:
            strip.append(
                {
                    "node_id": peer.node_id,
                    "region_code": peer.region_code,
                    "label": OUTCOME_LABELS.get(peer.outcome.value, peer.outcome.value),
                    "ok": peer.outcome is PeerOutcome.ok,
                    "reason": peer.reason,
                    "count": peer.count,
                    "latency_ms": peer.latency_ms,
                    "own": False,
                }
            )
    return render(
        request,
        "search.html",
        status=status,
        title="Find a placement" if answer is None else "Placements found",
        values=values,
        errors=errors or {},
        answer=answer,
        strip=strip,
        las=la_choices(),
        needs=list(Need),
        setting_types=list(SettingType),
        sexes=list(Sex),
        reaches=list(Reach),
        purposes=[Purpose.placement_search, Purpose.secure_placement],
    )


@router.get("/search", name="ui.search", response_class=HTMLResponse)
def search_form(request: Request, _principal: CommissionerUser) -> HTMLResponse:
    """Find a placement: describe the child's needs (never who the child is)."""
    return _form_page(request, values=_defaults())


def parse_search(form: Any) -> tuple[dict[str, Any], SearchRequest | None, dict[str, str]]:
    """The form's values (to show again), the search they make, and an error message per bad field."""
    values = {
        "age": str(form.get("age", "")).strip(),
        "sex": str(form.get("sex", "")),
        "needs": [str(v) for v in form.getlist("needs")],
        "setting_types": [str(v) for v in form.getlist("setting_types")],
        "home_la": str(form.get("home_la", "")).strip(),
        "needed_by": str(form.get("needed_by", "")).strip(),
        "max_weekly_fee": str(form.get("max_weekly_fee", "")).strip().lstrip("£").replace(",", ""),
        "within_fee_cap_only": form.get("within_fee_cap_only") == "yes",
        "reach": str(form.get("reach", "")),
        "purpose": str(form.get("purpose", "")),
    }
    errors: dict[str, str] = {}
    document: dict[str, Any] = {
        "sex": values["sex"],
        "needs": values["needs"],
        "setting_types": values["setting_types"] or None,
        "needed_by": values["needed_by"],
        "within_fee_cap_only": values["within_fee_cap_only"],
        "reach": values["reach"],
        "purpose": values["purpose"],
    }
    try:
        document["age"] = int(values["age"])
    except ValueError:
        errors["age"] = _FIELD_MESSAGES["age"]
    code = resolve_la(values["home_la"])
    if code is None:
        errors["home_la"] = _FIELD_MESSAGES["home_la"]
    document["home_la"] = code or ""
    if values["max_weekly_fee"]:
        try:
            document["max_weekly_fee"] = float(values["max_weekly_fee"])
        except ValueError:
            errors["max_weekly_fee"] = _FIELD_MESSAGES["max_weekly_fee"]
    try:
        parsed = SearchRequest.model_validate(document)
    except ValidationError as exc:
        for error in exc.errors():
            field = str(error["loc"][0]) if error["loc"] else "age"
            errors.setdefault(field, _FIELD_MESSAGES.get(field, str(error["msg"])))
        return values, None, errors
    return values, (parsed if not errors else None), errors


@router.post("/search", name="ui.search_results", response_class=HTMLResponse)
async def search_results(
    request: Request, session: SessionDep, node: NodeDep, principal: CommissionerUser, _csrf: CsrfChecked
) -> HTMLResponse:
    """Run the search across every region within reach; results, and what became of each region."""
    values, search, errors = parse_search(await request.form())
    if search is None:
        return _form_page(request, values=values, errors=errors, status=422)
    answer = await capacity_api.search(body=search, session=session, request=request, node=node, _=principal)
    return _form_page(request, values=values, answer=answer)


@router.get("/secure-beds", name="ui.secure_beds", response_class=HTMLResponse)
async def secure_beds(
    request: Request,
    session: SessionDep,
    node: NodeDep,
    principal: SecureBedUser,
    scope: Annotated[Literal["region", "national"], Query()] = "national",
    refresh: Annotated[Literal["on", "off"], Query()] = "on",
) -> HTMLResponse:
    """Free beds in secure children's homes by region, sex and age; refreshes itself every minute.

    The refresh can be stopped from the page (``refresh=off``): a page that changes under a person reading it
    must let them turn that off (WCAG 2.2.1).
    """
    board = await capacity_api.secure_beds(session=session, request=request, node=node, _=principal, scope=scope)
    names = domain.regions()
    return render(
        request,
        "secure_beds.html",
        title="Secure beds in England" if scope == "national" else "Secure beds in this region",
        board=board,
        scope=scope,
        refresh=BOARD_REFRESH_SECONDS if refresh == "on" else None,
        missing=[names.get(code, code) for code in board.missing_regions],
        outcome_labels=OUTCOME_LABELS,
    )
