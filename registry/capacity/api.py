"""Routes of the capacity register: ``/v1/capacity/…`` for vacancies, secure homes, search and the bed board.

Providers and publishers write; commissioners read and search; analysts see secure beds. Each route parses,
declares its roles, calls one service function and reports what the audit entry needs (dataset, purpose,
result count) — never the search criteria themselves.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Path, Query, Request, Response, status
from sqlmodel import Session
from starlette.concurrency import run_in_threadpool

from registry.capacity import board, service
from registry.capacity.models import (
    IDENTIFIER_PATTERN,
    LA_CODE_PATTERN,
    URN_PATTERN,
    PeerReport,
    SearchRequest,
    SearchResponse,
    SearchResult,
    VacancyBatch,
    VacancyBatchResult,
    VacancyCreate,
    VacancyPage,
    VacancyPublic,
)
from registry.capacity.secure_models import (
    SecureBedBoard,
    SecureHomeCreate,
    SecureHomeList,
    SecureHomePublic,
)
from registry.core.audit.context import audit_context
from registry.core.auth.deps import Commissioner, require
from registry.core.auth.principal import Principal
from registry.core.db import SessionDep, utcnow
from registry.core.errors import ServiceUnavailable
from registry.core.node import NodeDep
from schemas.vocabulary import Dataset, Reach, Role, SettingType

router = APIRouter(prefix="/v1/capacity", tags=["capacity"])

# The federation installs these in node.extensions (this package may not import it); without them a search
# asks no peer, marks no fee cap, and the national board is not served.
PEER_SEARCH_EXTENSION = "capacity.peer_search"
FEE_CAPS_EXTENSION = "capacity.fee_caps"
NATIONAL_BOARD_EXTENSION = "capacity.national_board"

PeerSearch = Callable[[Request, SearchRequest], Awaitable[tuple[list[SearchResult], list[PeerReport]]]]
"""``(request, search) -> (peers' results, each peer's outcome)``: every peer within reach that an agreement
lets this node ask, in parallel under ``search.deadline_ms``."""
FeeCaps = Callable[[Session, datetime], service.FeeCheck]
"""``(session, now) -> fee check``: the fee caps this node holds, in force now."""
NationalBoard = Callable[[Request], Awaitable[SecureBedBoard]]
"""``(request) -> board``: this node's homes and every home a peer under agreement reports."""

CapacityWriter = Annotated[Principal, Depends(require(Role.provider, Role.publisher))]
VacancyReader = Annotated[Principal, Depends(require(Role.commissioner, Role.provider, Role.publisher))]
SecureHomeReader = Annotated[
    Principal, Depends(require(Role.commissioner, Role.analyst, Role.provider, Role.publisher))
]
SecureBedViewer = Annotated[Principal, Depends(require(Role.commissioner, Role.analyst))]

VacancyId = Annotated[str, Path(pattern=IDENTIFIER_PATTERN, description="The provider's reference.")]
HomeUrn = Annotated[str, Path(pattern=URN_PATTERN, description="The home's Ofsted URN.")]


def _audit(request: Request, dataset: Dataset, count: int) -> None:
    context = audit_context(request)
    context.dataset = dataset.value
    context.result_count = count


@router.put(
    "/vacancies/{vacancy_id}",
    responses={status.HTTP_201_CREATED: {"model": VacancyPublic, "description": "Created"}},
    name="capacity.put_vacancy",
)
def put_vacancy(
    vacancy_id: VacancyId,
    body: VacancyCreate,
    session: SessionDep,
    request: Request,
    response: Response,
    _: CapacityWriter,
) -> VacancyPublic:
    """Create (201) or replace (200) a vacancy; a report older than the stored one is refused (409)."""
    vacancy, created = service.put_vacancy(session, vacancy_id, body, now=utcnow())
    response.status_code = status.HTTP_201_CREATED if created else status.HTTP_200_OK
    _audit(request, Dataset.capacity_vacancies, 1)
    return vacancy


@router.delete("/vacancies/{vacancy_id}", status_code=status.HTTP_204_NO_CONTENT, name="capacity.delete_vacancy")
def delete_vacancy(vacancy_id: VacancyId, session: SessionDep, request: Request, _: CapacityWriter) -> None:
    """Withdraw a vacancy."""
    service.delete_vacancy(session, vacancy_id)
    _audit(request, Dataset.capacity_vacancies, 1)


@router.post("/vacancies:batch", name="capacity.put_vacancies")
def put_vacancies(body: VacancyBatch, session: SessionDep, request: Request, _: CapacityWriter) -> VacancyBatchResult:
    """Create or replace up to 1,000 vacancies at once: all stored, or none (422 names each bad item's path)."""
    result = service.put_vacancies(session, body, now=utcnow())
    _audit(request, Dataset.capacity_vacancies, len(result.created) + len(result.updated))
    return result


@router.get("/vacancies", name="capacity.list_vacancies")
def list_vacancies(
    session: SessionDep,
    request: Request,
    _: VacancyReader,
    la_code: Annotated[str | None, Query(pattern=LA_CODE_PATTERN)] = None,
    setting_type: SettingType | None = None,
    urn: Annotated[str | None, Query(pattern=URN_PATTERN)] = None,
    after: Annotated[str | None, Query(pattern=IDENTIFIER_PATTERN, description="Last id of the previous page.")] = None,
    limit: Annotated[int, Query(ge=1, le=service.MAX_PAGE)] = service.DEFAULT_PAGE,
) -> VacancyPage:
    """This node's current vacancies, by id; expired ones are never listed, stale ones are flagged."""
    page = service.list_vacancies(
        session, now=utcnow(), la_code=la_code, setting_type=setting_type, urn=urn, after=after, limit=limit
    )
    _audit(request, Dataset.capacity_vacancies, len(page.items))
    return page


@router.get("/vacancies/{vacancy_id}", name="capacity.get_vacancy")
def get_vacancy(vacancy_id: VacancyId, session: SessionDep, request: Request, _: VacancyReader) -> VacancyPublic:
    """One current vacancy."""
    vacancy = service.get_vacancy_or_raise(session, vacancy_id, now=utcnow())
    _audit(request, Dataset.capacity_vacancies, 1)
    return vacancy


@router.put(
    "/secure-homes/{urn}",
    responses={status.HTTP_201_CREATED: {"model": SecureHomePublic, "description": "Created"}},
    name="capacity.put_secure_home",
)
def put_secure_home(
    urn: HomeUrn,
    body: SecureHomeCreate,
    session: SessionDep,
    request: Request,
    response: Response,
    _: CapacityWriter,
) -> SecureHomePublic:
    """Create (201) or replace (200) a secure children's home's report of places and free beds."""
    home, created = service.put_secure_home(session, urn, body, now=utcnow())
    response.status_code = status.HTTP_201_CREATED if created else status.HTTP_200_OK
    _audit(request, Dataset.capacity_secure_beds, 1)
    return home


@router.get("/secure-homes", name="capacity.list_secure_homes")
def list_secure_homes(session: SessionDep, request: Request, _: SecureHomeReader) -> SecureHomeList:
    """Secure children's homes with a current report; stale reports (over 24 hours old) are flagged."""
    homes = service.list_secure_homes(session, now=utcnow())
    _audit(request, Dataset.capacity_secure_beds, len(homes.items))
    return homes


@router.get("/secure-beds", name="capacity.secure_beds")
async def secure_beds(
    session: SessionDep,
    request: Request,
    node: NodeDep,
    _: SecureBedViewer,
    scope: Literal["region", "national"] = "region",
) -> SecureBedBoard:
    """Free secure beds by sex and age, totals by region and for England, and staleness.

    ``scope=region``: this node's register. ``scope=national``: every home reachable under agreements, with
    each region's outcome and the regions missing from the board.
    """
    if scope == "national":
        gather: NationalBoard | None = node.extensions.get(NATIONAL_BOARD_EXTENSION)
        if gather is None:
            raise ServiceUnavailable("the national board needs the federation, which this node does not run")
        result = await gather(request)
    else:
        result = await run_in_threadpool(
            board.secure_bed_board, session, now=utcnow(), node_id=node.node_id, region_code=node.settings.region_code
        )
    _audit(request, Dataset.capacity_secure_beds, len(result.homes))
    return result


@router.post("/search", name="capacity.search")
async def search(
    body: SearchRequest, session: SessionDep, request: Request, node: NodeDep, _: Commissioner
) -> SearchResponse:
    """Find placements for a child described by needs, never identity: ranked results and every peer's outcome.

    The peers within reach are asked while this node searches its own register (one thread-pool hop), so a
    cross-border search costs about the slowest peer, not the sum.
    """
    now = utcnow()
    peer_search: PeerSearch | None = node.extensions.get(PEER_SEARCH_EXTENSION)
    local_job = run_in_threadpool(
        service.search_register,
        session,
        body,
        now=now,
        node_id=node.node_id,
        region_code=node.settings.region_code,
        fee_caps=node.extensions.get(FEE_CAPS_EXTENSION),
    )
    remote: list[SearchResult] = []
    peers: list[PeerReport] = []
    if peer_search is None or body.reach is Reach.region:
        local, fee_check = await local_job
    else:
        # Both finish before either's failure is raised: the session must not be closed under the local search.
        mine, theirs = await asyncio.gather(local_job, peer_search(request, body), return_exceptions=True)
        for outcome in (mine, theirs):
            if isinstance(outcome, BaseException):
                raise outcome
        (local, fee_check), (remote, peers) = mine, theirs  # type: ignore[misc]
    response = service.combine(local, remote, peers, body, now=now, fee_check=fee_check)
    context = audit_context(request)
    context.purpose = body.purpose.value
    _audit(request, Dataset.capacity_vacancies, len(response.results))
    return response
