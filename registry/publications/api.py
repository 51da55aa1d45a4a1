"""Routes of the publications register, the fee-cap check, the comparisons and the schema catalogue.

Who may call what (the default is deny; every route names its roles):

* ``publisher`` writes: ``POST /v1/publications``, ``PUT /v1/publications/{id}`` (``If-Match``),
  ``POST /v1/publications/{id}/withdraw`` (``If-Match``).
* any authenticated role reads: the register and its history, the schemas, the fee-cap check and the
  comparisons. Publications are published to be relied on across the region, so every local role may read them;
  what a *peer* node may read is decided by agreements, on the federation routes (phase 2).
"""

from __future__ import annotations

from datetime import date
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Header, Path, Query, Request, Response
from fastapi.responses import JSONResponse
from sqlmodel import Session

import schemas
from registry.core.audit.context import audit_context
from registry.core.audit.log import append_in
from registry.core.audit.middleware import request_entry
from registry.core.auth.deps import AnyRole, Publisher
from registry.core.db import SessionDep
from registry.core.node import NodeDep
from registry.publications import compare, copies, feecaps, service, signatures
from registry.publications.errors import SchemaNotFound
from registry.publications.kinds import Kind
from registry.publications.models import (
    FeeCapCheckRequest,
    FeeCapCheckResult,
    FeeCapComparison,
    ProtocolComparison,
    PublicationCreate,
    PublicationPage,
    PublicationPublic,
    PublicationUpdate,
    SchemaSummary,
    VersionSummary,
    WithdrawRequest,
)
from schemas import NeedLevel, Purpose, SettingType

router = APIRouter(tags=["publications"])

PublicationId = Annotated[str, Path(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$", description="The publication's id.")]
VersionNumber = Annotated[int, Path(ge=1, le=1_000_000)]
IfMatch = Annotated[
    str | None, Header(description="The ETag of the version being changed (412 if stale, 428 if missing).")
]
JSON_PATCH = "application/json-patch+json"


def _recorded(
    request: Request, session: Session, response: Response, held: service.Held, *, status: int = 200
) -> PublicationPublic:
    """The new version as served, its change audited in the same transaction (both commit, or neither)."""
    context = audit_context(request)
    context.dataset = Kind(held.version.kind).dataset.value
    context.result_count = 1
    append_in(session, request_entry(request, status=status))
    item = service.to_public(held)
    response.headers["ETag"] = item.etag
    response.headers["Location"] = f"/v1/publications/{item.id}/versions/{item.version}"
    return item


@router.post("/v1/publications", status_code=201, name="publications.publish")
def publish(
    request: Request,
    body: PublicationCreate,
    principal: Publisher,
    node: NodeDep,
    session: SessionDep,
    response: Response,
) -> PublicationPublic:
    """Publish a new framework, placement protocol or fee cap: validated, stored as signed version 1."""
    held = service.publish(
        session,
        signer=signatures.signer_for(node),
        kind=body.kind,
        document=body.document,
        publication_id=body.id,
        actor=principal.subject,
    )
    return _recorded(request, session, response, held, status=201)


@router.get("/v1/publications", name="publications.list")
def list_publications(
    request: Request,
    _principal: AnyRole,
    node: NodeDep,
    session: SessionDep,
    kind: Kind | None = None,
    effective_on: Annotated[date | None, Query(description="Only documents in force on this date.")] = None,
    state: Literal["published", "withdrawn"] | None = None,
    verify: Annotated[bool, Query(description="Check every signature and report it per item.")] = False,
    limit: Annotated[int, Query(ge=1, le=service.MAX_PAGE)] = 100,
    cursor: Annotated[str | None, Query(max_length=200)] = None,
    scope: Annotated[
        Literal["local", "national"],
        Query(description="``national``: first gather every peer's current documents (verified), report each peer."),
    ] = "local",
    purpose: Annotated[
        Literal["market-transparency", "placement-search"], Query(description="Why peers are asked (national).")
    ] = "market-transparency",
) -> PublicationPage:
    """This node's publications (latest version of each), or with ``scope=national`` every region's it holds."""
    peers = None
    if scope == "national":
        # The gather commits verified peer copies in its own transactions before this request's session reads.
        peers = copies.gather_for(
            node,
            kinds=[kind] if kind is not None else list(Kind),
            purpose=Purpose(purpose),
            request_id=_request_id(request),
            context=audit_context(request),
        )
        verify = True
    rows, next_cursor = service.list_latest(
        session,
        node_ids=None if scope == "national" else [node.node_id],
        kind=kind,
        effective_on=effective_on,
        state=state,
        limit=limit,
        cursor=cursor,
    )
    keys = signatures.keys_for(node)
    items = [
        service.to_public(held, verification=signatures.verify_version(held.version, keys=keys) if verify else None)
        for held in rows
    ]
    audit_context(request).result_count = len(items)
    return PublicationPage(items=items, count=len(items), next_cursor=next_cursor, peers=peers)


def _request_id(request: Request) -> str | None:
    value = getattr(request.state, "request_id", None)
    return value if isinstance(value, str) else None


@router.get("/v1/publications/{publication_id}", name="publications.get")
def get_publication(
    publication_id: PublicationId, _principal: AnyRole, node: NodeDep, session: SessionDep, response: Response
) -> PublicationPublic:
    """The latest version of a publication, its signature checked (``verification``)."""
    held = service.get_latest(session, publication_id, node_id=node.node_id)
    verification = signatures.verify_version(held.version, keys=signatures.keys_for(node))
    item = service.to_public(held, verification=verification)
    response.headers["ETag"] = item.etag
    return item


@router.get("/v1/publications/{publication_id}/versions", name="publications.versions")
def list_versions(
    request: Request, publication_id: PublicationId, _principal: AnyRole, node: NodeDep, session: SessionDep
) -> list[VersionSummary]:
    """A publication's history, oldest first."""
    versions = service.list_versions(session, publication_id, node_id=node.node_id)
    audit_context(request).result_count = len(versions)
    return [
        VersionSummary(
            version=v.version,
            state="withdrawn" if v.state == service.WITHDRAWN else "published",
            sha256=v.sha256,
            etag=service.etag(v),
            published_at=v.published_at,
            effective_from=v.effective_from,
            effective_to=v.effective_to,
            reason=v.reason,
        )
        for v in versions
    ]


@router.get("/v1/publications/{publication_id}/versions/{version}", name="publications.version")
def get_version(
    publication_id: PublicationId,
    version: VersionNumber,
    _principal: AnyRole,
    node: NodeDep,
    session: SessionDep,
    response: Response,
) -> PublicationPublic:
    """One version of a publication, its signature checked (``verification``)."""
    held = service.get_version(session, publication_id, version, node_id=node.node_id)
    item = service.to_public(held, verification=signatures.verify_version(held.version, keys=signatures.keys_for(node)))
    response.headers["ETag"] = item.etag
    return item


@router.get(
    "/v1/publications/{publication_id}/versions/{version}/diff/{other}",
    name="publications.diff",
    response_class=JSONResponse,
    responses={200: {"content": {JSON_PATCH: {}}, "description": "RFC 6902 JSON Patch from one version to the other"}},
)
def diff_versions(
    publication_id: PublicationId,
    version: VersionNumber,
    other: VersionNumber,
    _principal: AnyRole,
    node: NodeDep,
    session: SessionDep,
) -> JSONResponse:
    """What changed between two versions' documents: an RFC 6902 JSON Patch that turns the first into the second."""
    operations = service.diff_versions(session, publication_id, version, other, node_id=node.node_id)
    return JSONResponse(operations, media_type=JSON_PATCH)


@router.put("/v1/publications/{publication_id}", name="publications.update")
def update_publication(
    request: Request,
    publication_id: PublicationId,
    body: PublicationUpdate,
    principal: Publisher,
    node: NodeDep,
    session: SessionDep,
    response: Response,
    if_match: IfMatch = None,
) -> PublicationPublic:
    """Publish the next version of a publication; ``If-Match`` must carry the latest version's ETag."""
    held = service.update(
        session,
        signer=signatures.signer_for(node),
        publication_id=publication_id,
        document=body.document,
        kind=body.kind,
        if_match=if_match,
        actor=principal.subject,
    )
    return _recorded(request, session, response, held)


@router.post("/v1/publications/{publication_id}/withdraw", name="publications.withdraw")
def withdraw_publication(
    request: Request,
    publication_id: PublicationId,
    principal: Publisher,
    node: NodeDep,
    session: SessionDep,
    response: Response,
    body: WithdrawRequest | None = None,
    if_match: IfMatch = None,
) -> PublicationPublic:
    """Withdraw a publication: a signed final version in state ``withdrawn`` (nothing is deleted)."""
    held = service.withdraw(
        session,
        signer=signatures.signer_for(node),
        publication_id=publication_id,
        if_match=if_match,
        reason=body.reason if body else None,
        actor=principal.subject,
    )
    return _recorded(request, session, response, held)


@router.get("/v1/schemas", name="schemas.list")
def list_schemas(request: Request, _principal: AnyRole) -> list[SchemaSummary]:
    """Every JSON Schema this node validates against (draft 2020-12)."""
    found = []
    for name in schemas.names():
        schema = schemas.load(name)
        found.append(SchemaSummary(name=name, id=schema["$id"], version=schema["x-version"], title=schema.get("title")))
    audit_context(request).result_count = len(found)
    return found


@router.get(
    "/v1/schemas/{name}",
    name="schemas.get",
    response_class=JSONResponse,
    responses={200: {"content": {"application/schema+json": {}}, "description": "The JSON Schema"}},
)
def get_schema(name: Annotated[str, Path(max_length=100)], _principal: AnyRole) -> JSONResponse:
    """One shipped JSON Schema, exactly as the node validates with it."""
    try:
        schema: dict[str, Any] = schemas.load(name)
    except schemas.UnknownSchemaError:
        raise SchemaNotFound(name) from None
    return JSONResponse(schema, media_type="application/schema+json")


@router.post("/v1/fee-caps/check", name="fee_caps.check")
def check_fee_cap(
    body: FeeCapCheckRequest, _principal: AnyRole, node: NodeDep, session: SessionDep
) -> FeeCapCheckResult:
    """Is a weekly fee within the cap for its setting type and need level in an LA on a date (default today)?"""
    return feecaps.check_fee(session, body, on=body.on or service.today(), keys=signatures.keys_for(node))


@router.get("/v1/compare/fee-caps", name="compare.fee_caps")
def compare_fee_caps(
    request: Request,
    setting_type: SettingType,
    need_level: NeedLevel,
    _principal: AnyRole,
    node: NodeDep,
    session: SessionDep,
    on: Annotated[date | None, Query(description="Caps in force on this date (default today).")] = None,
) -> FeeCapComparison:
    """Every region's cap in force for a setting type and need level, with its difference from the median."""
    result = compare.compare_fee_caps(
        session,
        setting_type=setting_type,
        need_level=need_level,
        on=on or service.today(),
        keys=signatures.keys_for(node),
    )
    audit_context(request).result_count = len(result.rows)
    return result


@router.get("/v1/compare/placement-protocols", name="compare.placement_protocols")
def compare_placement_protocols(
    request: Request,
    _principal: AnyRole,
    node: NodeDep,
    session: SessionDep,
    on: Annotated[date | None, Query(description="Protocols in force on this date (default today).")] = None,
) -> ProtocolComparison:
    """Placement protocols in force side by side: notification duties and their working days, distance rules."""
    result = compare.compare_placement_protocols(session, on=on or service.today(), keys=signatures.keys_for(node))
    audit_context(request).result_count = len(result.protocols)
    return result
