"""The audit explorer (governance officers): filter entries, open one with its inclusion proof, export CSV.

The entry page does not ask to be believed: it carries the entry, its audit path and the signed tree head,
and ``proof.js`` recomputes the leaf hash (SHA-256 over the entry's RFC 8785 form), folds the audit path up to
the root (RFC 9162) and checks the tree head's Ed25519 signature with the node's published key — all with the
browser's WebCrypto — then says "verified" or "FAILED". Lists and exports use ``registry.core.audit.service``
exactly as ``/v1/audit/…`` does.
"""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, time, timedelta
from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import APIRouter, Depends, Path, Query, Request
from fastapi.responses import HTMLResponse, StreamingResponse
from pydantic import ValidationError

from registry.core.audit import service
from registry.core.audit.context import audit_context
from registry.core.audit.recording import audit_log
from registry.core.audit.service import EntryFilters
from registry.core.errors import ValidationFailed
from registry.core.node import NodeDep
from registry.ui.render import render
from registry.ui.session import GovernanceUser

router = APIRouter(prefix="/ui", tags=["pages"], include_in_schema=False)

PAGE_SIZE = 50
_TEXT_FILTERS = ("actor", "peer", "agreement", "dataset", "purpose", "action")
Text = Annotated[str, Query(max_length=200)]


class FilterForm:
    """The filter fields of the explorer and its CSV export, as typed (checked by ``_filters``)."""

    def __init__(
        self,
        since: Text = "",
        until: Text = "",
        actor: Text = "",
        peer: Text = "",
        agreement: Text = "",
        dataset: Text = "",
        purpose: Text = "",
        decision: Text = "",
        action: Text = "",
    ) -> None:
        self.fields = {
            "since": since,
            "until": until,
            "actor": actor,
            "peer": peer,
            "agreement": agreement,
            "dataset": dataset,
            "purpose": purpose,
            "decision": decision,
            "action": action,
        }

    def values(self) -> dict[str, str]:
        return dict(self.fields)


def _filters(
    values: dict[str, str],
) -> tuple[EntryFilters | None, dict[str, str]]:
    """The service's filters from the form's values (dates are whole days, UTC); an error per bad field."""
    document: dict[str, Any] = {name: values[name] for name in _TEXT_FILTERS if values.get(name)}
    errors: dict[str, str] = {}
    if values.get("decision"):
        document["decision"] = values["decision"]
    for name, offset in (("since", 0), ("until", 1)):
        if values.get(name):
            try:
                day = date.fromisoformat(values[name]) + timedelta(days=offset)
            except ValueError:
                errors[name] = "Enter a real date, for example 2026-04-01"
                continue
            document[name] = datetime.combine(day, time(), tzinfo=UTC)
    try:
        filters = EntryFilters.model_validate(document)
    except ValidationError as exc:
        for error in exc.errors():
            field = str(error["loc"][0]) if error["loc"] else "filters"
            errors.setdefault(field, str(error["msg"]))
        return None, errors
    return (filters if not errors else None), errors


@router.get("/audit", name="ui.audit", response_class=HTMLResponse)
def explorer(
    request: Request,
    node: NodeDep,
    _principal: GovernanceUser,
    form: Annotated[FilterForm, Depends()],
    cursor: Annotated[str | None, Query(max_length=200, pattern=r"^[A-Za-z0-9_-]+$")] = None,
) -> HTMLResponse:
    """Audit entries matching the filters, oldest first, a page at a time; export them as CSV."""
    values = form.values()
    filters, errors = _filters(values)
    page = None
    if filters is not None:
        page = service.list_entries(
            audit_log(node), filters=filters, cursor=cursor, limit=PAGE_SIZE, context=audit_context(request)
        )
    query = {k: v for k, v in values.items() if v}
    return render(
        request,
        "audit.html",
        status=422 if errors else 200,
        title="Audit",
        values=values,
        errors=errors,
        page=page,
        next_query=urlencode({**query, "cursor": page.next_cursor}) if page and page.next_cursor else None,
        export_query=urlencode(query),
    )


@router.get("/audit/entries/{index}", name="ui.audit_entry", response_class=HTMLResponse)
def entry_page(
    request: Request,
    node: NodeDep,
    _principal: GovernanceUser,
    index: Annotated[int, Path(ge=0, le=2**53)],
) -> HTMLResponse:
    """One entry, with its inclusion proof checked in the browser against the signed tree head."""
    found = service.get_entry(audit_log(node), index=index)
    audit_context(request).result_count = 1
    proof = {
        "index": found.index,
        "entry": found.entry,
        "leaf_hash": found.leaf_hash,
        "audit_path": found.audit_path,
        "signed_tree_head": found.signed_tree_head.model_dump(mode="json"),
        "jwks_url": "/.well-known/jwks.json",
    }
    # Embedded as data (not script): "</" is escaped so no value can close the element.
    proof_json = json.dumps(proof, separators=(",", ":")).replace("</", "<\\/")
    return render(
        request,
        "audit_entry.html",
        title=f"Audit entry {found.index}",
        found=found,
        head=found.signed_tree_head.tree_head,
        proof_json=proof_json,
    )


@router.get("/audit/export.csv", name="ui.audit_export")
def export(
    request: Request,
    node: NodeDep,
    _principal: GovernanceUser,
    form: Annotated[FilterForm, Depends()],
) -> StreamingResponse:
    """The entries matching the filters as CSV (streamed; bounded by the tree size when it began)."""
    values = form.values()
    filters, errors = _filters(values)
    if filters is None:
        raise ValidationFailed(
            "the filters are not valid", errors=[{"path": f"query:{k}", "message": v} for k, v in errors.items()]
        )
    lines = service.export_lines(audit_log(node), filters=filters, fmt="csv", context=audit_context(request))
    return StreamingResponse(
        lines,
        media_type=service.EXPORT_MEDIA_TYPES["csv"],
        headers={"Content-Disposition": f'attachment; filename="audit-{node.node_id}.csv"'},
    )
