"""Reading the audit log: signed tree heads, proofs, governance queries and exports.

Everything here reads committed, sequenced entries and the stored perfect-subtree hashes; nothing is
recomputed per request. A tree head needs O(1) reads, a proof one batched read of O(log n) nodes. Sizes
and indices that do not describe the current tree are refused with :class:`ValidationFailed` (422) naming
the query parameter. Reads use plain Core connections (the log is append-only; no ORM session needed).
"""

from __future__ import annotations

import base64
import binascii
import csv
import io
import json
from collections.abc import Iterator
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator
from sqlalchemy import Connection, Select, select

from registry.core.audit.context import AuditContext
from registry.core.audit.entry import FIELDS
from registry.core.audit.log import ENTRY, AuditLog, fetch_nodes, read_head, signed_head_of
from registry.core.audit.models import (
    AuditEntryPage,
    AuditEntryPublic,
    AuditEntryWithProof,
    ConsistencyProofPublic,
    InclusionProofPublic,
    SignedTreeHead,
)
from registry.core.errors import NotFound, ValidationFailed
from registry.core.merkle import (
    TreeRangeError,
    consistency_node_ids,
    consistency_proof,
    inclusion_node_ids,
    inclusion_proof,
)

ExportFormat = Literal["csv", "jsonl"]
EXPORT_MEDIA_TYPES: dict[str, str] = {"csv": "text/csv; charset=utf-8", "jsonl": "application/x-ndjson"}
EXPORT_CHUNK = 1000
MAX_PAGE = 1000


class TimeWindow(BaseModel):
    """A window of entry times, both ends optional: ``since`` inclusive, ``until`` exclusive, each with an offset."""

    model_config = ConfigDict(extra="forbid")

    since: datetime | None = Field(default=None, description="Entries at or after this time (RFC 3339, with offset).")
    until: datetime | None = Field(default=None, description="Entries before this time (RFC 3339, with offset).")

    @field_validator("since", "until")
    @classmethod
    def _aware(cls, value: datetime | None) -> datetime | None:
        if value is not None and value.tzinfo is None:
            raise ValueError("must be an RFC 3339 date-time with an offset, e.g. 2026-04-01T09:30:00Z")
        return value


class EntryFilters(TimeWindow):
    """Governance query filters (all optional, combined with AND)."""

    actor: str | None = Field(default=None, max_length=512, description="Actor id: client id, user or node id.")
    peer: str | None = Field(default=None, max_length=512, description="Peer node id.")
    agreement: str | None = Field(default=None, max_length=512, description="Agreement id.")
    dataset: str | None = Field(default=None, max_length=512, description="Dataset, e.g. capacity.vacancies.")
    purpose: str | None = Field(default=None, max_length=512, description="Purpose, e.g. placement-search.")
    decision: Literal["permit", "deny"] | None = Field(default=None, description="permit or deny.")
    action: str | None = Field(default=None, max_length=512, description="Route name, e.g. audit.entries.")

    def apply(self, statement: Select[Any]) -> Select[Any]:
        """Add these filters to a select over ``audit_entry``."""
        columns = {
            "actor": ENTRY.c.actor_id,
            "peer": ENTRY.c.peer,
            "agreement": ENTRY.c.agreement,
            "dataset": ENTRY.c.dataset,
            "purpose": ENTRY.c.purpose,
            "decision": ENTRY.c.decision,
            "action": ENTRY.c.action,
        }
        for name, column in columns.items():
            value = getattr(self, name)
            if value is not None:
                statement = statement.where(column == value)
        if self.since is not None:
            statement = statement.where(ENTRY.c.ts >= self.since)
        if self.until is not None:
            statement = statement.where(ENTRY.c.ts < self.until)
        return statement


def _invalid(parameter: str, message: str) -> ValidationFailed:
    return ValidationFailed(message, errors=[{"path": f"query:{parameter}", "message": message}])


def _current(conn: Connection) -> tuple[int, SignedTreeHead | None]:
    row = read_head(conn)
    return int(row.tree_size), signed_head_of(row)


def signed_tree_head(log: AuditLog) -> SignedTreeHead:
    """The latest signed tree head (signing one first if the log has never been signed)."""
    with log.engine.connect() as conn:
        _, head = _current(conn)
    return head if head is not None else log.sign_now()


def inclusion(log: AuditLog, *, index: int, tree_size: int | None = None) -> InclusionProofPublic:
    """The inclusion proof of entry ``index`` in the tree of ``tree_size`` (default: the current tree)."""
    with log.engine.connect() as conn:
        current, _ = _current(conn)
        size = current if tree_size is None else tree_size
        if size > current:
            raise _invalid("tree_size", f"tree_size {size} is beyond the current tree of {current} entries")
        if size < 1:
            raise _invalid("tree_size", "the tree is empty: no inclusion proof exists")
        if not 0 <= index < size:
            raise _invalid("index", f"index {index} is outside a tree of {size} entries (0 <= index < tree_size)")
        try:
            ids = inclusion_node_ids(index, size)
        except TreeRangeError as exc:
            raise _invalid("index", str(exc)) from None
        nodes = fetch_nodes(conn, [*ids, (0, index)])
    path = inclusion_proof(index, size, nodes)
    return InclusionProofPublic(
        index=index, tree_size=size, leaf_hash=nodes[(0, index)].hex(), audit_path=[h.hex() for h in path]
    )


def consistency(log: AuditLog, *, first: int, second: int | None = None) -> ConsistencyProofPublic:
    """The consistency proof from the tree of ``first`` entries to the tree of ``second`` (default: current)."""
    with log.engine.connect() as conn:
        current, _ = _current(conn)
        size = current if second is None else second
        if size > current:
            raise _invalid("second", f"second {size} is beyond the current tree of {current} entries")
        if first < 1:
            raise _invalid("first", "first must be at least 1: an empty tree proves nothing")
        if first > size:
            raise _invalid("first", f"first {first} is larger than second {size}")
        try:
            ids = consistency_node_ids(first, size)
        except TreeRangeError as exc:
            raise _invalid("first", str(exc)) from None
        nodes = fetch_nodes(conn, ids)
    proof = consistency_proof(first, size, nodes)
    return ConsistencyProofPublic(first=first, second=size, proof=[h.hex() for h in proof])


def encode_cursor(index: int) -> str:
    """An opaque cursor for the page after entry ``index``."""
    return base64.urlsafe_b64encode(f"after:{index}".encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> int:
    """The index a cursor continues after; 422 if it is not one this node made."""
    try:
        text = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode("ascii")
        prefix, _, number = text.partition(":")
        if prefix != "after" or not number.isdigit():
            raise ValueError(text)
        return int(number)
    except (ValueError, binascii.Error, UnicodeDecodeError):
        raise _invalid("cursor", "not a cursor returned by this endpoint") from None


def _public(seq: int, entry: str, leaf: bytes) -> AuditEntryPublic:
    return AuditEntryPublic(index=int(seq), entry=json.loads(entry), leaf_hash=bytes(leaf).hex())


def list_entries(
    log: AuditLog,
    *,
    filters: EntryFilters,
    cursor: str | None = None,
    limit: int = 100,
    context: AuditContext | None = None,
) -> AuditEntryPage:
    """One page of sequenced entries matching ``filters``, oldest first, within the current signed tree."""
    after = decode_cursor(cursor) if cursor else None
    with log.engine.connect() as conn:
        size, _ = _current(conn)
        statement = select(ENTRY.c.seq, ENTRY.c.entry, ENTRY.c.leaf_hash).where(
            ENTRY.c.seq.is_not(None), ENTRY.c.seq < size
        )
        if after is not None:
            statement = statement.where(ENTRY.c.seq > after)
        rows = conn.execute(filters.apply(statement).order_by(ENTRY.c.seq).limit(limit + 1)).all()
    items = [_public(*row) for row in rows[:limit]]
    if context is not None:
        context.result_count = len(items)
    next_cursor = encode_cursor(items[-1].index) if len(rows) > limit else None
    return AuditEntryPage(items=items, next_cursor=next_cursor, tree_size=size)


def get_entry(log: AuditLog, *, index: int) -> AuditEntryWithProof:
    """Entry ``index`` with its inclusion proof against the current signed tree head (given beside it)."""
    with log.engine.connect() as conn:
        size, head = _current(conn)
        if not 0 <= index < size or head is None:
            raise ValidationFailed(
                f"no sequenced entry {index}: the signed tree holds entries 0 to {size - 1}",
                errors=[{"path": "path:index", "message": f"must be between 0 and {size - 1}"}],
            )
        row = conn.execute(
            select(ENTRY.c.seq, ENTRY.c.entry, ENTRY.c.leaf_hash).where(ENTRY.c.seq.is_not(None), ENTRY.c.seq == index)
        ).one_or_none()
        nodes = fetch_nodes(conn, inclusion_node_ids(index, size))
    if row is None:  # sequenced but gone: the store was tampered with
        raise NotFound(f"entry {index} is missing from the store; run 'rcc-node audit verify'")
    public = _public(*row)
    path = inclusion_proof(index, size, nodes)
    return AuditEntryWithProof(
        index=public.index,
        entry=public.entry,
        leaf_hash=public.leaf_hash,
        audit_path=[h.hex() for h in path],
        signed_tree_head=head,
    )


def export_lines(
    log: AuditLog, *, filters: EntryFilters, fmt: ExportFormat, context: AuditContext | None = None
) -> Iterator[bytes]:
    """The export, chunk by chunk: entries matching ``filters`` in index order, up to the tree size at start.

    Bounding it by the tree size when the export began makes it reproducible: the same filters and bound
    give the same bytes later. ``context.result_count`` is set when the export completes.
    """
    with log.engine.connect() as conn:
        size, _ = _current(conn)
    return _export_chunks(log, size=size, filters=filters, fmt=fmt, context=context)


def _export_chunks(
    log: AuditLog, *, size: int, filters: EntryFilters, fmt: ExportFormat, context: AuditContext | None
) -> Iterator[bytes]:
    count = 0
    after = -1
    if fmt == "csv":
        yield _csv_row(["index", "leaf_hash", *FIELDS, "extra"])
    while True:
        with log.engine.connect() as conn:
            statement = select(ENTRY.c.seq, ENTRY.c.entry, ENTRY.c.leaf_hash).where(
                ENTRY.c.seq.is_not(None), ENTRY.c.seq < size, ENTRY.c.seq > after
            )
            rows = conn.execute(filters.apply(statement).order_by(ENTRY.c.seq).limit(EXPORT_CHUNK)).all()
        if not rows:
            break
        out = io.StringIO()
        for seq, entry, leaf in rows:
            if fmt == "jsonl":
                out.write(f'{{"index":{int(seq)},"entry":{entry},"leaf_hash":"{bytes(leaf).hex()}"}}\n')
            else:
                out.write(_csv_row(_csv_values(int(seq), entry, bytes(leaf))).decode("utf-8"))
        count += len(rows)
        after = int(rows[-1][0])
        yield out.getvalue().encode("utf-8")
    if context is not None:
        context.result_count = count


def _csv_values(index: int, entry: str, leaf: bytes) -> list[str]:
    document = json.loads(entry)
    values = [str(index), leaf.hex()]
    for name in FIELDS:
        value = document.get(name)
        if value is None:
            values.append("")
        elif isinstance(value, list):
            values.append(" ".join(str(v) for v in value))
        else:
            values.append(str(value))
    extra = document.get("extra")
    values.append(json.dumps(extra, sort_keys=True, separators=(",", ":")) if extra else "")
    return values


def _csv_row(values: list[str]) -> bytes:
    out = io.StringIO()
    csv.writer(out, lineterminator="\r\n").writerow(values)
    return out.getvalue().encode("utf-8")
