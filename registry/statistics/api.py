"""Routes of the statistics register (role ``analyst``). Record-level episodes are never served by any route.

* ``GET /v1/statistics`` — the fixed table catalogue (with each table's row JSON Schema) and the releases built.
* ``GET /v1/statistics/{table}`` — the newest release's table (``?year=`` for another year), JSON or
  ``?format=csv``, in the EES tidy-data layout. ``?scope=national`` builds the England table from every
  region's signed release; that needs the federation, which installs the combiner in
  ``node.extensions[NATIONAL_EXTENSION]`` (this package may not import ``federation``).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Annotated, Literal

from fastapi import APIRouter, Query, Request, Response
from starlette.concurrency import run_in_threadpool

from registry.core.audit.context import audit_context
from registry.core.auth.deps import Analyst
from registry.core.db import SessionDep
from registry.core.errors import ServiceUnavailable
from registry.core.node import NodeDep
from registry.statistics import service
from registry.statistics.models import StatisticsCatalogue, StatisticsTable
from schemas.vocabulary import Dataset

router = APIRouter(tags=["statistics"])

NATIONAL_EXTENSION = "statistics.national"
NationalCombiner = Callable[[Request, str, int | None], Awaitable[StatisticsTable]]
"""``(request, table, year) -> England table``: installed by ``federation.statistics``."""

Year = Annotated[int | None, Query(ge=2000, le=2100, description="Collection year (ending 31 March).")]
Format = Annotated[Literal["json", "csv"], Query(description="json, or csv (an EES tidy-data file).")]
Scope = Annotated[Literal["local", "national"], Query(description="local, or national (England from all regions).")]


@router.get("/v1/statistics", name="statistics.catalogue")
def list_statistics(principal: Analyst, request: Request, session: SessionDep) -> StatisticsCatalogue:  # noqa: ARG001
    """The table catalogue and the releases built so far, newest first."""
    audit_context(request).dataset = Dataset.statistics_looked_after.value
    return service.list_catalogue(session)


@router.get("/v1/statistics/{table}", name="statistics.table", response_model=StatisticsTable)
async def get_table(
    table: str,
    principal: Analyst,  # noqa: ARG001
    request: Request,
    node: NodeDep,
    session: SessionDep,
    year: Year = None,
    format: Format = "json",
    scope: Scope = "local",
) -> Response | StatisticsTable:
    """One table of the newest release (or, with scope=national, the England table), JSON or CSV."""
    service.spec_or_raise(table)
    context = audit_context(request)
    context.dataset = Dataset.statistics_looked_after.value
    if scope == "national":
        combine: NationalCombiner | None = node.extensions.get(NATIONAL_EXTENSION)
        if combine is None:
            raise ServiceUnavailable("national statistics need the federation, which this node does not run")
        result = await combine(request, table, year)
    else:
        result = await run_in_threadpool(service.local_table, session, table, year=year)
    context.result_count = len(result.rows)
    if format == "csv":
        return Response(
            service.to_csv(result.rows),
            media_type="text/csv; charset=utf-8",
            headers={"Content-Disposition": f'attachment; filename="{table}-{result.year}-{scope}.csv"'},
        )
    return result
