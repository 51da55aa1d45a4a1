"""Storage primitives of the audit log: table handles, batched node reads, the entry inserter, ``append_in``.

Everything here works on plain SQLAlchemy Core connections or a DBAPI connection, never on the ORM session
of a request, except :func:`append_in`, whose whole point is to join the request's own transaction.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from sqlalchemy import Connection, Engine, Table, event, insert, select
from sqlalchemy.exc import SQLAlchemyError
from sqlmodel import Session

from registry.core.audit.entry import FILTER_COLUMNS, PreparedEntry, format_time
from registry.core.audit.errors import AuditStoreError, AuditUnavailable
from registry.core.audit.models import HEAD_ROW_ID, AuditEntry, AuditHead, AuditNode, SignedTreeHead, TreeHead
from registry.core.db import KeptConnection
from registry.core.merkle import NodeId

ENTRY: Table = AuditEntry.__table__  # type: ignore[attr-defined]
NODE: Table = AuditNode.__table__  # type: ignore[attr-defined]
HEAD: Table = AuditHead.__table__  # type: ignore[attr-defined]


def fetch_nodes(conn: Connection, node_ids: Sequence[NodeId]) -> dict[NodeId, bytes]:
    """Stored perfect-subtree hashes among ``node_ids``, in one query (a ``merkle.GetNodes``).

    A proof needs a few dozen nodes scattered over the levels. They are fetched by joining a ``VALUES`` list
    of the wanted ``(level, idx)`` pairs to the primary key: one index search per node on both engines, and
    plain driver SQL, so no statement is compiled per proof shape. (A row-value ``IN`` makes SQLite scan
    the whole table.)
    """
    wanted = list(dict.fromkeys((int(level), int(idx)) for level, idx in node_ids))
    if not wanted:
        return {}
    mark = "?" if conn.dialect.paramstyle == "qmark" else "%s"
    values = ", ".join([f"({mark}, {mark})"] * len(wanted))
    # Only placeholders are spliced in; the node ids travel as bound parameters.
    sql = (
        f"WITH wanted(level, idx) AS (VALUES {values}) "  # noqa: S608
        "SELECT n.level, n.idx, n.digest FROM wanted JOIN audit_node n ON n.level = wanted.level AND n.idx = wanted.idx"
    )
    params = tuple(number for pair in wanted for number in pair)
    rows = conn.exec_driver_sql(sql, params)
    return {(int(level), int(idx)): bytes(digest) for level, idx, digest in rows}


def read_head(conn: Connection) -> Any:
    """The ``audit_head`` row, or raise :class:`AuditStoreError` if it is gone."""
    row = conn.execute(select(HEAD).where(HEAD.c.id == HEAD_ROW_ID)).first()
    if row is None:
        raise AuditStoreError("the audit_head row is missing; the log cannot be extended (run 'rcc-node audit verify')")
    return row


def signed_head_of(row: Any) -> SignedTreeHead | None:
    """The signed tree head stored in an ``audit_head`` row (None before the first signing)."""
    if row.signature is None or row.signed_at is None or row.node_id is None:
        return None
    head = TreeHead(
        node_id=row.node_id, tree_size=int(row.tree_size), root_hash=row.root_hash, timestamp=format_time(row.signed_at)
    )
    return SignedTreeHead(tree_head=head, signature=row.signature)


class EntryInserter:
    """Inserts entry rows over one DBAPI connection, kept between batches (:class:`~registry.core.db.KeptConnection`).

    This is the hot path of every request: one prepared ``INSERT``, the column types' own bind processors (so
    timestamps are stored exactly as the ``UTCDateTime`` column reads them back), and ``executemany`` +
    ``commit`` on the driver. A failed batch discards the connection.
    """

    COLUMNS = ("ts", "entry", "leaf_hash", *FILTER_COLUMNS.values())

    def __init__(self, engine: Engine, *, busy_timeout_ms: int | None = None) -> None:
        dialect = engine.dialect
        mark = "?" if dialect.paramstyle == "qmark" else "%s"
        self.engine = engine
        columns, marks = ", ".join(self.COLUMNS), ", ".join([mark] * len(self.COLUMNS))
        # Only fixed column names and placeholders: nothing from a request ever reaches this text.
        self.sql = f"INSERT INTO audit_entry ({columns}) VALUES ({marks})"  # noqa: S608
        # Only the columns whose type converts values on the way in (the timestamp, the hash); the text
        # columns go to the driver as they are.
        self._processors: list[tuple[int, Callable[[Any], Any]]] = [
            (position, process)
            for position, name in enumerate(self.COLUMNS)
            if (process := ENTRY.c[name].type.bind_processor(dialect)) is not None
        ]
        # SQLite: busy_timeout_ms is how long this connection waits for another writer (0: fail at once and
        # let the caller choose another path).
        self._kept = KeptConnection(engine, busy_timeout_ms=busy_timeout_ms)

    def params(self, row: dict[str, Any]) -> tuple[Any, ...]:
        """One row's positional parameters, through each column type's bind processor."""
        values = [row[name] for name in self.COLUMNS]
        for position, process in self._processors:
            value = values[position]
            if value is not None:
                values[position] = process(value)
        return tuple(values)

    def insert(self, rows: Sequence[dict[str, Any]]) -> None:
        """Insert and commit ``rows`` in one transaction; raises whatever the driver raises."""
        params = [self.params(row) for row in rows]
        self._kept.transaction(lambda _connection, cursor: cursor.executemany(self.sql, params))

    def release(self) -> None:
        """Return the kept connection to the pool (when idle, and on stop)."""
        self._kept.release()


def append_in(session: Session, entry: PreparedEntry) -> None:
    """Store a state change's entry in the request's own transaction: both commit, or neither does.

    For services that change state (call it after the change is flushed, with an entry from
    ``registry.core.audit.middleware.request_entry``). Once the transaction commits, the request's audit
    context is marked ``recorded`` and the audit middleware writes no second entry; if it rolls back, the
    middleware records the failed request as usual. The sequencer picks the entry up within a second.
    """
    try:
        session.connection().execute(insert(ENTRY), [entry.row()])
    except SQLAlchemyError as exc:
        raise AuditUnavailable("the audit log could not store this change's entry") from exc
    context = entry.context
    if context is not None:

        def _committed(_session: Session) -> None:
            context.recorded = True

        event.listen(session, "after_commit", _committed, once=True)
