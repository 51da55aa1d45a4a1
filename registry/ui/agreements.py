"""The agreements register and an agreement's page (node admins and governance officers).

The register is ``agreements.service.list_agreements`` (state computed now, review and expiry warnings at 90
and 30 days); an agreement's page is ``agreements.service.get`` with every signature and event checked by
``agreements.bundle.verify`` — the same calls as ``GET /v1/agreements…``. Node admins may revoke from the page,
through the API's own revoke route function (signed event, delivered to the other parties). Governance officers
(only they) also see what flowed under the agreement, to whom: ``agreements.flows.report``, as
``GET /v1/agreements/{id}/flows``.
"""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Form, Query, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response

from agreements import api as agreements_api
from agreements import bundle, flows, service
from agreements.lifecycle import State
from agreements.models import AgreementSummary, ReasonRequest, VerifyReport
from agreements.outbox import CourierDep
from agreements.runtime import RuntimeDep
from registry.core.audit.context import audit_context
from registry.core.audit.recording import audit_log
from registry.core.db import SessionDep
from registry.core.node import NodeDep
from registry.ui.render import render
from registry.ui.session import AdminUser, AgreementsUser, CsrfChecked

router = APIRouter(prefix="/ui", tags=["pages"], include_in_schema=False)

AgreementId = agreements_api.AgreementId  # validates the id and records it in the audit context, as the API does


@router.get("/agreements", name="ui.agreements", response_class=HTMLResponse)
def register(
    request: Request,
    session: SessionDep,
    runtime: RuntimeDep,
    _principal: AgreementsUser,
    state: Annotated[State | None, Query()] = None,
    attention: Annotated[bool | None, Query()] = None,
) -> HTMLResponse:
    """The agreements register: state, parties, datasets and purposes; reviews due soon highlighted."""
    rows: list[AgreementSummary] = service.list_agreements(
        session, runtime=runtime, state=state.value if state else None, attention=attention
    )
    grants: dict[tuple[str, int], tuple[list[str], list[str]]] = {}
    for agreement_id in sorted({row.agreement for row in rows}):
        for version in service.versions_of(session, runtime=runtime, agreement_id=agreement_id):
            doc = version.document
            grants[(doc.id, doc.version)] = (sorted(doc.datasets), sorted(doc.purposes))
    audit_context(request).result_count = len(rows)
    return render(
        request,
        "agreements.html",
        title="Agreements",
        rows=rows,
        grants=grants,
        states=list(State),
        state=state.value if state else "",
        attention=attention,
    )


def _checks(report: VerifyReport, version: int) -> tuple[dict[str, object], dict[str, object], bool]:
    for checked in report.versions:
        if checked.version == version:
            return (
                {s.node_id: s for s in checked.signatures},
                {e.sha256: e for e in checked.events},
                checked.valid,
            )
    return {}, {}, False


@router.get("/agreements/{agreement_id}", name="ui.agreement", response_class=HTMLResponse)
def agreement_page(
    request: Request,
    agreement_id: AgreementId,
    session: SessionDep,
    runtime: RuntimeDep,
    node: NodeDep,
    principal: AgreementsUser,
    version: Annotated[int | None, Query(ge=1)] = None,
    error: Annotated[Literal["reason"] | None, Query()] = None,
) -> HTMLResponse:
    """One agreement: its text, grants, each party's signature and whether it verifies, and its history; for
    governance officers, what flowed under it to whom."""
    agreement = service.get(session, runtime=runtime, agreement_id=agreement_id, version=version)
    report = bundle.verify(session, runtime=runtime, agreement_id=agreement_id)
    signatures, events, version_valid = _checks(report, agreement.version)
    flowed = None
    if "governance" in principal.roles:
        flowed = flows.report(session, runtime=runtime, log=audit_log(node), agreement_id=agreement_id)
    audit_context(request).result_count = 1
    return render(
        request,
        "agreement.html",
        title=agreement.title,
        agreement=agreement,
        document=agreement.document,
        signature_checks=signatures,
        event_checks=events,
        version_valid=version_valid,
        flows=flowed,
        may_revoke="node-admin" in principal.roles and agreement.state in ("active", "proposed", "suspended"),
        error="Enter the reason for revoking the agreement" if error == "reason" else None,
    )


@router.get("/agreements/{agreement_id}/bundle", name="ui.agreement_bundle")
def agreement_bundle(
    agreement_id: AgreementId, session: SessionDep, runtime: RuntimeDep, _principal: AgreementsUser
) -> JSONResponse:
    """Download the agreement's bundle (every version, signature and event) to verify it offline."""
    built = bundle.build(session, runtime=runtime, agreement_id=agreement_id)
    return JSONResponse(
        built.model_dump(mode="json"),
        headers={"Content-Disposition": f'attachment; filename="{agreement_id}.bundle.json"'},
    )


@router.post("/agreements/{agreement_id}/revoke", name="ui.agreement_revoke")
async def revoke(
    request: Request,
    agreement_id: AgreementId,
    runtime: RuntimeDep,
    courier: CourierDep,
    principal: AdminUser,
    _csrf: CsrfChecked,
    reason: Annotated[str, Form(max_length=500)] = "",
) -> Response:
    """Revoke the agreement (node admins): a signed event, effective here at once and sent to the other parties."""
    if not reason.strip():
        audit_context(request).deny("no-reason")
        return RedirectResponse(
            request.app.url_path_for("ui.agreement", agreement_id=agreement_id) + "?error=reason", status_code=303
        )
    await agreements_api.revoke_agreement(
        agreement_id=agreement_id,
        body=ReasonRequest(reason=reason.strip()),
        runtime=runtime,
        courier=courier,
        _=principal,
        request=request,
    )
    return RedirectResponse(request.app.url_path_for("ui.agreement", agreement_id=agreement_id), status_code=303)
