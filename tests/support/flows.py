"""The per-agreement flows report in tests: an agreement to report on, past flows under it, the report's rows.

Every flows test (the API, ``rcc-node audit flows``, the report between real nodes) needs the same three things:
a draft agreement under which a peer may ask for vacancies, a log holding calls made under it at fixed times
in March 2026 (months before any test runs, so the node's own activity never falls among them), and the report's
rows reduced to the columns a test asserts. Entries are built as the product records them — a peer's call as
the audit middleware does, this node's call out as the federation client does — so a test names only the peer,
the day and what came of the call.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any

from registry.core.audit.context import AuditContext
from registry.core.audit.entry import PreparedEntry, build_entry
from registry.core.audit.log import AuditLog
from tests.agreements.conftest import document, grant

VACANCIES, SEARCH = "capacity.vacancies", "placement-search"
ACTION = "federation.capacity_search"
ROW = ("direction", "peer", "dataset", "purpose", "decision", "reason", "requests", "result_count")
"""A report row's columns that say what flowed (``first``, ``last`` and the agreement's facts left out)."""


def march(day: int, hour: int = 12) -> datetime:
    """A fixed time in March 2026 (UTC)."""
    return datetime(2026, 3, day, hour, tzinfo=UTC)


def vacancies_mou(agreement_id: str, provider: str, recipient: str) -> dict[str, Any]:
    """A valid agreement letting ``recipient`` search ``provider``'s vacancies (registered as a draft)."""
    return document(agreement_id, [provider, recipient], [grant(provider, [recipient], [VACANCIES], [SEARCH])])


def inbound(
    node_id: str,
    *,
    peer: str,
    agreement: str,
    when: datetime,
    results: int | None = None,
    deny: str | None = None,
    dataset: str = VACANCIES,
    purpose: str = SEARCH,
) -> PreparedEntry:
    """``peer``'s call to ``node_id`` as the audit middleware records it: permitted with ``results``, or refused."""
    context = AuditContext(
        actor_type="node", actor_id=peer, peer=peer, agreement=agreement, dataset=dataset, purpose=purpose
    )
    if deny is None:
        context.permit()
        context.result_count = results
    else:
        context.deny(deny)
    return build_entry(
        node_id=node_id,
        direction="inbound",
        action=ACTION,
        context=context,
        time=when,
        status=403 if deny else 200,
    )


def outbound(
    node_id: str,
    *,
    peer: str,
    agreement: str,
    when: datetime,
    outcome: str = "ok",
    dataset: str = VACANCIES,
    purpose: str = SEARCH,
) -> PreparedEntry:
    """``node_id``'s call to ``peer``, decided from its outcome as ``recording.outbound_entry`` decides it:
    ``ok`` permits, ``refused`` denies, anything else (``timeout``) decides nothing and is the reason."""
    context = AuditContext(peer=peer, agreement=agreement, dataset=dataset, purpose=purpose)
    if outcome == "ok":
        context.permit()
    elif outcome == "refused":
        context.deny(outcome)
    else:
        context.reason = outcome
    return build_entry(
        node_id=node_id,
        direction="outbound",
        action=ACTION,
        context=context,
        time=when,
        outcome=outcome,
        method="POST",
    )


def record(log: AuditLog, entries: Sequence[PreparedEntry]) -> None:
    """Write ``entries`` into the log and sequence them under a signed tree head (the report counts only those)."""
    log.insert_now(entries)
    log.sequence_pending()


def rows(
    body: dict[str, Any], columns: Sequence[str] = ROW, *, where: Callable[[dict[str, Any]], bool] | None = None
) -> list[tuple[Any, ...]]:
    """The report's rows (those ``where`` keeps), in its order, as tuples of ``columns``."""
    return [tuple(row[c] for c in columns) for row in body["rows"] if where is None or where(row)]
