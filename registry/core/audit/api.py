"""Routes of the audit log: signed tree heads, proofs, governance queries and exports (role ``governance``).

Peers witness tree heads through the federation API, which calls the same service functions. Every route is
itself audited like any other: reading the log leaves a trace in it.
"""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Path, Query, Request
from fastapi.responses import StreamingResponse
from pydantic import Field

from registry.core.audit import service
from registry.core.audit.context import audit_context
from registry.core.audit.models import (
    AuditEntryPage,
    AuditEntryWithProof,
    ConsistencyProofPublic,
    InclusionProofPublic,
    SignedTreeHead,
)
from registry.core.audit.recording import audit_log
from registry.core.audit.service import EntryFilters
from registry.core.auth.deps import Governance
from registry.core.node import NodeDep

router = APIRouter(prefix="/v1/audit", tags=["audit"])
_MEDIA_CSV = "text/csv"


class EntryQuery(EntryFilters):
    """Filters plus cursor pagination."""

    cursor: str | None = Field(default=None, max_length=200, description="next_cursor of the previous page.")
    limit: int = Field(default=100, ge=1, le=service.MAX_PAGE, description="Entries per page (1-1000).")


class ExportQuery(EntryFilters):
    """Filters plus the export format."""

    format: Literal["csv", "jsonl"] = Field(default="jsonl", description="csv or jsonl (JSON lines).")


@router.get("/tree-head", name="audit.tree_head")
def tree_head(_principal: Governance, node: NodeDep) -> SignedTreeHead:
    """The latest signed tree head: size, root hash and time, with a detached JWS over its JCS form."""
    return service.signed_tree_head(audit_log(node))


@router.get("/proof/inclusion", name="audit.inclusion_proof")
def inclusion_proof(
    _principal: Governance,
    node: NodeDep,
    index: Annotated[int, Query(description="The entry's index (from 0).")],
    tree_size: Annotated[int | None, Query(description="Tree size to prove against (default: current).")] = None,
) -> InclusionProofPublic:
    """RFC 9162 inclusion proof (audit path) of one entry in the tree of ``tree_size`` entries."""
    return service.inclusion(audit_log(node), index=index, tree_size=tree_size)


@router.get("/proof/consistency", name="audit.consistency_proof")
def consistency_proof(
    _principal: Governance,
    node: NodeDep,
    first: Annotated[int, Query(description="The older tree size (at least 1).")],
    second: Annotated[int | None, Query(description="The newer tree size (default: current).")] = None,
) -> ConsistencyProofPublic:
    """RFC 9162 consistency proof that the tree of ``second`` entries extends the tree of ``first``."""
    return service.consistency(audit_log(node), first=first, second=second)


@router.get("/entries", name="audit.entries")
def entries(
    request: Request, _principal: Governance, node: NodeDep, query: Annotated[EntryQuery, Query()]
) -> AuditEntryPage:
    """Entries matching the filters, oldest first, one page at a time (pass ``next_cursor`` as ``cursor``)."""
    filters = EntryFilters.model_validate(query.model_dump(include=set(EntryFilters.model_fields)))
    return service.list_entries(
        audit_log(node), filters=filters, cursor=query.cursor, limit=query.limit, context=audit_context(request)
    )


@router.get("/entries/{index}", name="audit.entry")
def entry(
    request: Request,
    _principal: Governance,
    node: NodeDep,
    index: Annotated[int, Path(description="The entry's index (from 0).")],
) -> AuditEntryWithProof:
    """One entry with its inclusion proof against the current signed tree head (returned with it)."""
    result = service.get_entry(audit_log(node), index=index)
    audit_context(request).result_count = 1
    return result


@router.get(
    "/export",
    name="audit.export",
    response_class=StreamingResponse,
    responses={200: {"content": {_MEDIA_CSV: {}, "application/x-ndjson": {}}}},
)
def export(
    request: Request, _principal: Governance, node: NodeDep, query: Annotated[ExportQuery, Query()]
) -> StreamingResponse:
    """Every entry matching the filters, streamed as CSV or JSON lines, up to the tree size when it began."""
    filters = EntryFilters.model_validate(query.model_dump(include=set(EntryFilters.model_fields)))
    lines = service.export_lines(audit_log(node), filters=filters, fmt=query.format, context=audit_context(request))
    filename = f"audit-{node.node_id}.{query.format}"
    return StreamingResponse(
        lines,
        media_type=service.EXPORT_MEDIA_TYPES[query.format],
        headers={"Content-Disposition": f'attachment; filename="{filename}"'},
    )
