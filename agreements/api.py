"""The node's agreements register over HTTP: ``/v1/agreements`` — node admins write, governance officers read.

Routes are thin: parse, declare roles, call one service function, return its model. Each route naming an
agreement records its id in the request's audit context, so the audit log can report per agreement.

The routes whose change the other parties must hear of (propose, sign, revoke, withdraw, renew) commit the
change first and then have the node's courier deliver it (:func:`agreements.outbox.change_and_deliver`); their
answer's ``deliveries`` gives each other party's outcome, and what was not delivered is retried later. The
federation inbox that receives them is ``federation.agreements``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Body, Depends, Path, Query, Request, Response
from fastapi.responses import JSONResponse
from pydantic import Field
from sqlmodel import Session

from agreements import bundle, flows, outbox, service
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
from agreements.outbox import Courier, CourierDep
from agreements.runtime import AgreementsRuntime, RuntimeDep
from registry.core.audit.context import audit_context
from registry.core.audit.recording import audit_log
from registry.core.auth.deps import Governance, NodeAdmin, require
from registry.core.auth.principal import Principal
from registry.core.db import SessionDep
from registry.core.node import NodeDep
from schemas.vocabulary import Dataset, Purpose, Role

router = APIRouter(prefix="/v1/agreements", tags=["agreements"])

Reader = Annotated[Principal, Depends(require(Role.governance, Role.node_admin))]
ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$"


def _agreement_id(request: Request, agreement_id: Annotated[str, Path(pattern=ID_PATTERN)]) -> str:
    audit_context(request).agreement = agreement_id
    return agreement_id


AgreementId = Annotated[str, Depends(_agreement_id)]
VersionQuery = Annotated[int | None, Query(ge=1, description="A version; default the newest.")]


@router.post(
    "",
    status_code=201,
    responses={200: {"description": "the identical document was already stored"}},
    name="agreements.create",
)
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


@router.get("", name="agreements.list")
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


@router.get("/{agreement_id}", name="agreements.get")
def get_agreement(
    agreement_id: AgreementId, session: SessionDep, runtime: RuntimeDep, _: Reader, version: VersionQuery = None
) -> AgreementPublic:
    """One agreement version: document, signatures, state, event history, other versions."""
    return service.get(session, runtime=runtime, agreement_id=agreement_id, version=version)


def _request_id(request: Request) -> str | None:
    value = getattr(request.state, "request_id", None)
    return value if isinstance(value, str) else None


async def _change_and_deliver(
    request: Request, runtime: AgreementsRuntime, courier: Courier, change: Callable[[Session], AgreementPublic]
) -> AgreementPublic:
    """Commit ``change`` and deliver it to the other parties, audited under this request."""
    return await outbox.change_and_deliver(
        runtime, courier, change, context=audit_context(request), request_id=_request_id(request)
    )


@router.post("/{agreement_id}/propose", name="agreements.propose")
async def propose_agreement(
    agreement_id: AgreementId,
    runtime: RuntimeDep,
    courier: CourierDep,
    _: NodeAdmin,
    request: Request,
    body: SignRequest | None = None,
) -> AgreementPublic:
    """Sign and propose a version, and send it with every signature and event to every other party's node
    (``deliveries``: each party's outcome; what was not delivered is retried)."""
    pin = body or SignRequest()
    return await _change_and_deliver(
        request,
        runtime,
        courier,
        lambda session: service.propose(
            session, runtime=runtime, agreement_id=agreement_id, version=pin.version, sha256=pin.sha256
        ),
    )


@router.post("/{agreement_id}/sign", name="agreements.sign")
async def sign_agreement(
    agreement_id: AgreementId,
    runtime: RuntimeDep,
    courier: CourierDep,
    _: NodeAdmin,
    request: Request,
    body: SignRequest | None = None,
) -> AgreementPublic:
    """Sign a version with this node's key (pin the digest you have read with ``sha256``); once the agreement
    has been proposed, the signature is sent to every other party."""
    pin = body or SignRequest()
    return await _change_and_deliver(
        request,
        runtime,
        courier,
        lambda session: service.sign(
            session, runtime=runtime, agreement_id=agreement_id, version=pin.version, sha256=pin.sha256
        ),
    )


@router.post("/{agreement_id}/revoke", name="agreements.revoke")
async def revoke_agreement(
    agreement_id: AgreementId,
    body: ReasonRequest,
    runtime: RuntimeDep,
    courier: CourierDep,
    _: NodeAdmin,
    request: Request,
) -> AgreementPublic:
    """Revoke the agreement (a signed event; takes effect here at once and is sent to every other party)."""
    return await _change_and_deliver(
        request,
        runtime,
        courier,
        lambda session: service.revoke(session, runtime=runtime, agreement_id=agreement_id, reason=body.reason),
    )


@router.post("/{agreement_id}/withdraw", name="agreements.withdraw")
async def withdraw_from_agreement(
    agreement_id: AgreementId,
    body: ReasonRequest,
    runtime: RuntimeDep,
    courier: CourierDep,
    _: NodeAdmin,
    request: Request,
) -> AgreementPublic:
    """Withdraw this node from the agreement: its grants end, the other parties' stand (sent to every party)."""
    return await _change_and_deliver(
        request,
        runtime,
        courier,
        lambda session: service.withdraw(session, runtime=runtime, agreement_id=agreement_id, reason=body.reason),
    )


@router.post("/{agreement_id}/renew", name="agreements.renew")
async def renew_agreement(
    agreement_id: AgreementId,
    body: RenewRequest,
    runtime: RuntimeDep,
    courier: CourierDep,
    _: NodeAdmin,
    request: Request,
) -> AgreementPublic:
    """Sign this node's renewal to a new review date (counts once every party has renewed; sent to every party)."""
    return await _change_and_deliver(
        request,
        runtime,
        courier,
        lambda session: service.renew(
            session, runtime=runtime, agreement_id=agreement_id, review_by=body.review_by, version=body.version
        ),
    )


@router.get("/{agreement_id}/verify", name="agreements.verify")
def verify_agreement(agreement_id: AgreementId, session: SessionDep, runtime: RuntimeDep, _: Reader) -> VerifyReport:
    """Check every signature and event: who, with which key, valid or why not."""
    return bundle.verify(session, runtime=runtime, agreement_id=agreement_id)


@router.get("/{agreement_id}/bundle", response_model=Bundle, name="agreements.bundle")
def agreement_bundle(agreement_id: AgreementId, session: SessionDep, runtime: RuntimeDep, _: Reader) -> JSONResponse:
    """Document, signatures and events of every version as one JSON file, for offline verification."""
    built = bundle.build(session, runtime=runtime, agreement_id=agreement_id)
    return JSONResponse(
        built.model_dump(mode="json"),
        headers={"Content-Disposition": f'attachment; filename="{agreement_id}.bundle.json"'},
    )


class FlowQuery(flows.FlowWindow):
    """The report's window plus its format (``csv`` also when the client accepts only ``text/csv``)."""

    format: Literal["json", "csv"] | None = Field(default=None, description="json (default) or csv.")


@router.get(
    "/{agreement_id}/flows",
    name="agreements.flows",
    response_model=flows.AgreementFlows,
    responses={200: {"content": {"text/csv": {}}}},
)
def agreement_flows(
    request: Request,
    agreement_id: AgreementId,
    session: SessionDep,
    runtime: RuntimeDep,
    node: NodeDep,
    _: Governance,
    query: Annotated[FlowQuery, Query()],
) -> flows.AgreementFlows | Response:
    """What flowed to whom under the agreement, from this node's audit log, over the signed tree head returned."""
    window = flows.FlowWindow(since=query.since, until=query.until)
    report = flows.report(
        session,
        runtime=runtime,
        log=audit_log(node),
        agreement_id=agreement_id,
        window=window,
        context=audit_context(request),
    )
    wants_csv = query.format == "csv" or (
        query.format is None
        and "text/csv" in request.headers.get("accept", "")
        and "json" not in request.headers.get("accept", "")
    )
    if not wants_csv:
        return report
    return Response(
        flows.to_csv(report),
        media_type=flows.CSV_MEDIA_TYPE,
        headers={"Content-Disposition": f'attachment; filename="{agreement_id}.flows.csv"'},
    )
