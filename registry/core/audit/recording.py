"""Recording entries from anywhere in the node: the per-node log, outbound calls, synchronous sequencing.

The audit middleware records every inbound request by itself. Code that makes calls *out* of the node
(the federation client) records each with :func:`append_outbound` / :func:`aappend_outbound`, keeping the
peer's response signature as evidence of what the peer said. Tests and the CLI sequence with
:func:`sequence_pending` instead of waiting for the background sequencer.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from registry.core.audit.context import AuditContext
from registry.core.audit.entry import PreparedEntry, build_entry
from registry.core.audit.log import AuditLog
from registry.core.node import Node

EXTENSION = "audit"
_PERMITTED_OUTCOMES = {"ok"}
_REFUSED_OUTCOMES = {"refused", "unauthorized"}


def audit_log(node: Node) -> AuditLog:
    """The node's :class:`AuditLog`, created on first use (threads start only when needed)."""
    existing = node.extensions.get(EXTENSION)
    if isinstance(existing, AuditLog):
        return existing
    created = AuditLog(engine=node.engine, node_id=node.node_id, keys=node.keys)
    node.extensions[EXTENSION] = created
    return created


def close_audit_log(node: Node) -> None:
    """Stop the node's :class:`AuditLog` if one was made: its writer flushes what it holds, and the connections
    it holds go back to the engine's pool, so disposing of the engine closes them.

    For code that audits outside a served app (a command's own calls to peers): the app stops its log itself.
    """
    existing = node.extensions.pop(EXTENSION, None)
    if isinstance(existing, AuditLog):
        existing.stop()


def sequence_pending(node: Node) -> int:
    """Sequence every pending entry now and sign a tree head; return how many entries were sequenced."""
    return audit_log(node).sequence_pending()


def outbound_entry(
    node: Node,
    *,
    peer: str,
    action: str,
    dataset: str | None,
    purpose: str | None,
    agreement: str | None,
    status: int | None,
    outcome: str,
    request_sha256: str | None,
    response_sha256: str | None,
    peer_signature: str | None,
    result_count: int | None,
    request_id: str | None,
    method: str = "POST",
    context: AuditContext | None = None,
    extra: dict[str, Any] | None = None,
) -> PreparedEntry:
    """The entry for one call this node made to a peer.

    ``context`` is the audit context of the local request that caused the call (its actor and roles are
    kept); the decision is ``permit`` for outcome ``ok``, ``deny`` for ``refused``/``unauthorized`` and
    left empty otherwise (timeouts and errors decide nothing), with the outcome as the reason.
    """
    base = replace(context, extra=dict(context.extra), roles=list(context.roles)) if context else AuditContext()
    ctx = replace(
        base,
        dataset=dataset,
        purpose=purpose,
        agreement=agreement,
        peer=peer,
        result_count=result_count,
        decision=None,
        reason=None,
        recorded=False,
        extra={**base.extra, **(extra or {})},
    )
    if outcome in _PERMITTED_OUTCOMES:
        ctx.permit()
    elif outcome in _REFUSED_OUTCOMES:
        ctx.deny(outcome)
    else:
        ctx.reason = outcome
    return build_entry(
        node_id=node.node_id,
        direction="outbound",
        action=action,
        context=ctx,
        request_id=request_id,
        method=method,
        status=status,
        outcome=outcome,
        request_sha256=request_sha256,
        response_sha256=response_sha256,
        peer_signature=peer_signature,
    )


def append_outbound(
    node: Node,
    *,
    peer: str,
    action: str,
    dataset: str | None,
    purpose: str | None,
    agreement: str | None,
    status: int | None,
    outcome: str,
    request_sha256: str | None,
    response_sha256: str | None,
    peer_signature: str | None,
    result_count: int | None,
    request_id: str | None,
    method: str = "POST",
    context: AuditContext | None = None,
    extra: dict[str, Any] | None = None,
) -> None:
    """Durably record one outbound call (blocks until committed; :class:`AuditUnavailable` if it cannot be)."""
    entry = outbound_entry(
        node,
        peer=peer,
        action=action,
        dataset=dataset,
        purpose=purpose,
        agreement=agreement,
        status=status,
        outcome=outcome,
        request_sha256=request_sha256,
        response_sha256=response_sha256,
        peer_signature=peer_signature,
        result_count=result_count,
        request_id=request_id,
        method=method,
        context=context,
        extra=extra,
    )
    audit_log(node).append(entry)


async def aappend_outbound(
    node: Node,
    *,
    peer: str,
    action: str,
    dataset: str | None,
    purpose: str | None,
    agreement: str | None,
    status: int | None,
    outcome: str,
    request_sha256: str | None,
    response_sha256: str | None,
    peer_signature: str | None,
    result_count: int | None,
    request_id: str | None,
    method: str = "POST",
    context: AuditContext | None = None,
    extra: dict[str, Any] | None = None,
) -> None:
    """:func:`append_outbound` for async code: the insert runs on the writer thread, the loop is not blocked."""
    entry = outbound_entry(
        node,
        peer=peer,
        action=action,
        dataset=dataset,
        purpose=purpose,
        agreement=agreement,
        status=status,
        outcome=outcome,
        request_sha256=request_sha256,
        response_sha256=response_sha256,
        peer_signature=peer_signature,
        result_count=result_count,
        request_id=request_id,
        method=method,
        context=context,
        extra=extra,
    )
    await audit_log(node).aappend(entry)
