"""Offline verification of a node's audit log: what ``rcc-node audit verify`` runs.

It trusts nothing stored: it checks the latest signed tree head's signature against the node's JWKS, reads
every sequenced entry in index order, recomputes each leaf ``SHA-256(0x00 || entry)`` from the stored JSON,
recomputes every perfect subtree of the whole tree (``merkle.node_hash``, level by level) and compares it with
the stored node hashes that proofs are built from, and folds the recomputed ones into the root
(``merkle.root_from``, the same answer as ``merkle.root_of`` without hashing the tree twice) to compare with
the signed head. Any edit, deletion, insertion or reordering of entries shows up as the first index
where the recomputation and the store disagree:

- an edited entry no longer matches its stored leaf hash (or, if that was edited too, the stored tree);
- a deleted entry leaves a gap in the indices;
- swapped or re-ordered entries no longer match the stored level-0 nodes at their positions;
- an inserted entry either collides with an index (``seq`` is unique), opens a gap, or sits beyond the
  signed tree head.

If an attacker rewrote entries, leaf hashes and every stored node consistently, only the signed root can
disagree; then the report says so without an index, since the original hashes are gone (witnesses that
kept earlier tree heads narrow it down). ``deep=True`` also checks that each entry is in canonical form and
that the indexed filter columns still say what the entry says (costs a JSON parse per entry).

The scan is bounded by the head read first, so it can run beside a live node: entries sequenced meanwhile
lie beyond that head and are reported as newer, not as tampering.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Connection, Engine, Select, func, select

from registry.core.audit.entry import FILTER_COLUMNS, canonical_entry, format_time
from registry.core.audit.log import ENTRY, NODE, read_head, signed_head_of
from registry.core.audit.models import SignedTreeHead
from registry.core.keys import public_key_from_jwk
from registry.core.merkle import NodeId, leaf_hash, node_hash, root_from, root_node_ids
from registry.core.signing import TYP_TREE_HEAD, SignatureInvalid, verify_detached

Progress = Callable[[str, int, int], None]
"""``progress(phase, done, total)``: phase ``entries`` then ``nodes``."""

CHUNK = 20_000


@dataclass
class Problem:
    """One thing wrong with the log: the first index it affects (None when no index can be named)."""

    index: int | None
    kind: str
    detail: str


@dataclass
class VerifyReport:
    """The outcome of a verification."""

    tree_size: int = 0
    entries_checked: int = 0
    nodes_checked: int = 0
    pending: int = 0
    newer: int = 0
    root_hash: str | None = None
    signed_tree_head: SignedTreeHead | None = None
    problems: list[Problem] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """True when nothing is wrong."""
        return not self.problems

    @property
    def first_bad_index(self) -> int | None:
        """The smallest index any problem names (None if none names one)."""
        indices = [p.index for p in self.problems if p.index is not None]
        return min(indices) if indices else None

    def as_dict(self) -> dict[str, Any]:
        """A JSON-friendly summary (``rcc-node audit verify --json``)."""
        return {
            "ok": self.ok,
            "first_bad_index": self.first_bad_index,
            "tree_size": self.tree_size,
            "entries_checked": self.entries_checked,
            "nodes_checked": self.nodes_checked,
            "pending": self.pending,
            "newer": self.newer,
            "root_hash": self.root_hash,
            "signed_tree_head": self.signed_tree_head.model_dump() if self.signed_tree_head else None,
            "problems": [p.__dict__ for p in sorted(self.problems, key=_problem_order)],
        }


def _problem_order(problem: Problem) -> tuple[int, int]:
    return (0, problem.index) if problem.index is not None else (1, 0)


def _resolver(jwks: Mapping[str, Any]) -> Callable[[str], Any]:
    keys = {k.get("kid"): k for k in jwks.get("keys", []) if isinstance(k, dict)}

    def resolve(kid: str) -> Any:
        jwk = keys.get(kid)
        if jwk is None:
            return None
        try:
            return public_key_from_jwk(jwk)
        except ValueError:
            return None

    return resolve


def verify_log(
    engine: Engine,
    *,
    jwks: Mapping[str, Any],
    node_id: str | None = None,
    deep: bool = False,
    progress: Progress | None = None,
) -> VerifyReport:
    """Verify the whole log in ``engine`` against the node's public keys; never raises for a bad log."""
    report = VerifyReport()
    with engine.connect() as conn:
        head_row = read_head(conn)
        size = int(head_row.tree_size)
        report.tree_size = size
        head = signed_head_of(head_row)
        report.signed_tree_head = head
        _check_head(report, head, size, jwks, node_id)
        leaves = _check_entries(conn, report, size, deep, progress)
        root_nodes = _check_nodes(conn, report, leaves, progress)
        report.root_hash = root_from(size, root_nodes).hex()
        if head is not None and report.root_hash != head.tree_head.root_hash:
            report.problems.append(
                Problem(
                    None, "root-mismatch", f"entries 0..{size - 1} give root {report.root_hash}, not the signed one"
                )
            )
        _check_beyond(conn, report, size)
    return report


def _check_head(
    report: VerifyReport, head: SignedTreeHead | None, size: int, jwks: Mapping[str, Any], node_id: str | None
) -> None:
    if head is None:
        if size:
            report.problems.append(Problem(None, "unsigned-head", f"the tree of {size} entries has no signed head"))
        return
    try:
        verify_detached(head.tree_head.model_dump(), head.signature, typ=TYP_TREE_HEAD, resolve=_resolver(jwks))
    except SignatureInvalid as exc:
        report.problems.append(Problem(None, "bad-head-signature", f"the tree head signature fails: {exc.detail}"))
    if node_id is not None and head.tree_head.node_id != node_id:
        report.problems.append(Problem(None, "wrong-node", f"the tree head is for {head.tree_head.node_id}"))


def _raw_chunks(conn: Connection, statement: Select[Any]) -> Iterator[Sequence[Any]]:
    """Rows of ``statement`` in chunks, straight from the driver (a server-side cursor on PostgreSQL).

    Verification reads every row of the log; skipping SQLAlchemy's per-row result processing roughly halves
    its cost. Only integer literals are bound, so the statement is compiled with them inline.
    """
    sql = str(statement.compile(dialect=conn.dialect, compile_kwargs={"literal_binds": True}))
    dbapi = conn.connection.dbapi_connection
    assert dbapi is not None  # noqa: S101 - a live connection
    named = conn.dialect.name == "postgresql"
    cursor = dbapi.cursor(name=f"rcc_verify_{id(statement)}") if named else dbapi.cursor()
    try:
        cursor.execute(sql)
        while rows := cursor.fetchmany(CHUNK):
            yield rows
    finally:
        cursor.close()


def _check_entries(
    conn: Connection, report: VerifyReport, size: int, deep: bool, progress: Progress | None
) -> list[bytes]:
    leaves: list[bytes] = []
    append = leaves.append
    columns = [ENTRY.c.seq, ENTRY.c.entry, ENTRY.c.leaf_hash]
    if deep:
        columns += [ENTRY.c.ts, *(ENTRY.c[column] for column in FILTER_COLUMNS.values())]
    statement = select(*columns).where(ENTRY.c.seq.is_not(None), ENTRY.c.seq < size).order_by(ENTRY.c.seq)
    chunks: Iterator[Sequence[Any]]
    if deep:  # needs the column types' processing (timestamps), so through SQLAlchemy
        chunks = conn.execution_options(stream_results=True, yield_per=CHUNK).execute(statement).partitions()
    else:
        chunks = _raw_chunks(conn, statement)
    expected = 0
    first_leaf_mismatch: int | None = None
    for rows in chunks:
        for row in rows:
            seq = row[0]
            if seq != expected:
                if expected not in _reported(report):
                    report.problems.append(
                        Problem(expected, "missing-entry", f"no entry at index {expected} (next stored is {seq})")
                    )
                # Keep the tree aligned with indices so later comparisons name the right positions.
                while expected < seq:
                    append(b"\x00" * 32)
                    expected += 1
            digest = leaf_hash(row[1].encode("utf-8"))
            append(digest)
            if digest != row[2] and first_leaf_mismatch is None and digest != bytes(row[2]):
                first_leaf_mismatch = seq
                report.problems.append(
                    Problem(seq, "entry-edited", f"entry {seq} does not hash to its stored leaf hash")
                )
            if deep:
                _deep_check(report, row)
            expected += 1
        report.entries_checked = expected
        if progress is not None:
            progress("entries", expected, size)
    if expected < size:
        report.problems.append(
            Problem(expected, "missing-entry", f"the signed tree has {size} entries, the store ends at {expected}")
        )
        leaves.extend(b"\x00" * 32 for _ in range(size - expected))
    return leaves


def _reported(report: VerifyReport) -> set[int]:
    return {p.index for p in report.problems if p.index is not None}


def _deep_check(report: VerifyReport, row: Any) -> None:
    seq, text = row[0], row[1]
    try:
        document = json.loads(text)
    except ValueError:
        report.problems.append(Problem(seq, "entry-not-json", f"entry {seq} is not JSON"))
        return
    if canonical_entry(document) != text.encode("utf-8"):
        report.problems.append(Problem(seq, "entry-not-canonical", f"entry {seq} is not in RFC 8785 form"))
    values = dict(zip(FILTER_COLUMNS.values(), row[4:], strict=True))
    for name, column in FILTER_COLUMNS.items():
        if document.get(name) != values[column]:
            report.problems.append(
                Problem(seq, "column-mismatch", f"entry {seq}: column {column} does not match the entry's {name}")
            )
    if row[3] is not None and format_time(row[3]) != document.get("time"):
        report.problems.append(Problem(seq, "column-mismatch", f"entry {seq}: column ts does not match its time"))


def _check_nodes(
    conn: Connection, report: VerifyReport, leaves: list[bytes], progress: Progress | None
) -> dict[NodeId, bytes]:
    """Compare every stored perfect node inside the signed tree with the one recomputed from the entries.

    Level by level: the stored level is streamed in index order and compared chunk by chunk with the level
    recomputed from the one below (``merkle.node_hash`` of each pair). A node is blamed only when its children
    agree with the store and it does not: a changed entry makes every node above it differ too, and those are
    consequences, not separate findings.
    """
    total = sum(len(leaves) >> level for level in range(len(leaves).bit_length()))
    wanted = set(root_node_ids(len(leaves)))
    root_nodes: dict[NodeId, bytes] = {}
    done = 0
    level = 0
    computed = leaves
    below: set[int] = set()
    while computed:
        count = len(computed)
        here = _level_mismatches(conn, level, computed)
        blamed = next((i for i in sorted(here) if level == 0 or not {2 * i, 2 * i + 1} & below), None)
        if blamed is not None:
            report.problems.append(
                Problem(blamed << level, "node-mismatch", f"stored node (level {level}, index {blamed}) does not match")
            )
        done += count
        if progress is not None:
            progress("nodes", done, total)
        below = here
        root_nodes.update({(lv, i): computed[i] for lv, i in wanted if lv == level})
        computed = [node_hash(computed[i], computed[i + 1]) for i in range(0, count - 1, 2)]
        level += 1
    report.nodes_checked = done
    return root_nodes


def _level_mismatches(conn: Connection, level: int, computed: list[bytes]) -> set[int]:
    """Indices of ``level`` whose stored node is missing or differs from ``computed``."""
    count = len(computed)
    statement = select(NODE.c.idx, NODE.c.digest).where(NODE.c.level == level, NODE.c.idx < count).order_by(NODE.c.idx)
    bad: set[int] = set()
    offset = 0
    for rows in _raw_chunks(conn, statement):
        first, last = int(rows[0][0]), int(rows[-1][0])
        if first == offset and last == offset + len(rows) - 1:  # no gap: compare the whole chunk at C speed
            stored = [digest if type(digest) is bytes else bytes(digest) for _, digest in rows]
            if stored != computed[offset : last + 1]:
                bad.update(offset + i for i, digest in enumerate(stored) if digest != computed[offset + i])
        else:
            held = {int(idx): bytes(digest) for idx, digest in rows}
            bad.update(i for i in range(offset, last + 1) if held.get(i) != computed[i])
        offset = last + 1
    bad.update(range(offset, count))  # nothing stored past here
    return bad


def _check_beyond(conn: Connection, report: VerifyReport, size: int) -> None:
    """Entries past the signed head: legitimate only if the head has moved on since the scan began."""
    report.pending = int(conn.execute(select(func.count()).where(ENTRY.c.seq.is_(None))).scalar_one())
    beyond = conn.execute(
        select(func.min(ENTRY.c.seq), func.count()).where(ENTRY.c.seq.is_not(None), ENTRY.c.seq >= size)
    ).one()
    current = int(read_head(conn).tree_size)
    if beyond[1] and current == size:
        report.problems.append(
            Problem(int(beyond[0]), "entry-beyond-head", f"{beyond[1]} entr(y/ies) at or past index {size}, unsigned")
        )
    else:
        report.newer = int(beyond[1])
