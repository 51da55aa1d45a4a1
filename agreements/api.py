"""The node's agreements register over HTTP: ``/v1/agreements`` — node admins write, governance officers read.

Routes are thin: parse, declare roles, call one service function, return its model. Each route naming an
agreement records its id in the request's audit context, so the audit log can report per agreement.
Proposing to other parties and the federation inbox are phase 2 (they need the federation client and guard).
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Body, Depends, Path, Query, Request, Response
from fastapi.responses import JSONResponse

from agreements import bundle, service
from agreements.lifecycle import State
from agreements.models import (
    AgreementPublic,
    AgreementSummary,
    Bundle,
    ReasonRequest,
    RenewRequest,
    SignRequest,
    VerifyReport,
)
from agreements.runtime import RuntimeDep
from registry.core.audit.context import audit_context
from registry.core.auth.deps import NodeAdmin, require
from registry.core.auth.principal import Principal
from registry.core.db import SessionDep
from schemas.vocabulary import Dataset, Purpose, Role

router = APIRouter(prefix="/v1/agreements", tags=["agreements"])

Reader = Annotated[Principal, Depends(require(Role.governance, Role.node_admin))]
ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$"


def _agreement_id(request: Request, agreement_id: Annotated[str, Path(pattern=ID_PATTERN)]) -> str:
    audit_context(request).agreement = agreement_id
    return agreement_id


AgreementId = Annotated[str, Depends(_agreement_id)]
VersionQuery = Annotated[int | None, Query(ge=1, description="A version; default the newest.")]


@router.post("", status_code=201, responses={200: {"description": "the identical document was already stored"}})
def create_agreement(
    document: Annotated[dict[str, Any], Body(description="An agreement document (agreement.schema.json).")],
    session: SessionDep,
    runtime: RuntimeDep,
    _: NodeAdmin,
    request: Request,
    response: Response,
) -> AgreementPublic:
    """Register a draft agreement this node is a party to (validated; errors name JSON paths)."""
    agreement, created = service.create(session, runtime=runtime, document=document)
    audit_context(request).agreement = agreement.agreement
    if not created:
        response.status_code = 200
    return agreement


@router.get("")
def list_agreements(
    session: SessionDep,
    runtime: RuntimeDep,
    _: Reader,
    state: State | None = None,
    party: Annotated[str | None, Query(pattern=r"^[a-z0-9][a-z0-9-]{1,62}$")] = None,
    dataset: Dataset | None = None,
    purpose: Purpose | None = None,
    attention: Annotated[bool | None, Query(description="true: only agreements with a warning")] = None,
) -> list[AgreementSummary]:
    """The agreements register: every version and its state now; filters: state, party, dataset, purpose, attention."""
    return service.list_agreements(
        session,
        runtime=runtime,
        state=state.value if state else None,
        party=party,
        dataset=dataset.value if dataset else None,
        purpose=purpose.value if purpose else None,
        attention=attention,
    )


@router.get("/{agreement_id}")
def get_agreement(
    agreement_id: AgreementId, session: SessionDep, runtime: RuntimeDep, _: Reader, version: VersionQuery = None
) -> AgreementPublic:
    """One agreement version: document, signatures, state, event history, other versions."""
    return service.get(session, runtime=runtime, agreement_id=agreement_id, version=version)


@router.post("/{agreement_id}/sign")
def sign_agreement(
    agreement_id: AgreementId,
    session: SessionDep,
    runtime: RuntimeDep,
    _: NodeAdmin,
    body: SignRequest | None = None,
) -> AgreementPublic:
    """Sign a version with this node's key (pin the digest you have read with ``sha256``)."""
    body = body or SignRequest()
    return service.sign(session, runtime=runtime, agreement_id=agreement_id, version=body.version, sha256=body.sha256)


@router.post("/{agreement_id}/revoke")
def revoke_agreement(
    agreement_id: AgreementId, body: ReasonRequest, session: SessionDep, runtime: RuntimeDep, _: NodeAdmin
) -> AgreementPublic:
    """Revoke the agreement (a signed event; takes effect at once)."""
    return service.revoke(session, runtime=runtime, agreement_id=agreement_id, reason=body.reason)


@router.post("/{agreement_id}/withdraw")
def withdraw_from_agreement(
    agreement_id: AgreementId, body: ReasonRequest, session: SessionDep, runtime: RuntimeDep, _: NodeAdmin
) -> AgreementPublic:
    """Withdraw this node from the agreement: its grants end, the other parties' stand."""
    return service.withdraw(session, runtime=runtime, agreement_id=agreement_id, reason=body.reason)


@router.post("/{agreement_id}/renew")
def renew_agreement(
    agreement_id: AgreementId, body: RenewRequest, session: SessionDep, runtime: RuntimeDep, _: NodeAdmin
) -> AgreementPublic:
    """Sign this node's renewal to a new review date (counts once every party has renewed)."""
    return service.renew(
        session, runtime=runtime, agreement_id=agreement_id, review_by=body.review_by, version=body.version
    )


@router.get("/{agreement_id}/verify")
def verify_agreement(agreement_id: AgreementId, session: SessionDep, runtime: RuntimeDep, _: Reader) -> VerifyReport:
    """Check every signature and event: who, with which key, valid or why not."""
    return bundle.verify(session, runtime=runtime, agreement_id=agreement_id)


@router.get("/{agreement_id}/bundle", response_model=Bundle)
def agreement_bundle(agreement_id: AgreementId, session: SessionDep, runtime: RuntimeDep, _: Reader) -> JSONResponse:
    """Document, signatures and events of every version as one JSON file, for offline verification."""
    built = bundle.build(session, runtime=runtime, agreement_id=agreement_id)
    return JSONResponse(
        built.model_dump(mode="json"),
        headers={"Content-Disposition": f'attachment; filename="{agreement_id}.bundle.json"'},
    )
