"""Peers' publications held here: a version rebuilt from what a peer served, checked, and kept only if it verifies.

A peer serves its versions as :class:`~registry.publications.models.PublicationPublic` — the signed statement
fields, the document and the detached signature. :func:`store_copy` rebuilds the stored row from them exactly
as the peer's own register holds it (canonical text, digest and dates recomputed here, never taken on trust),
checks the signature against the key the caller trusts for that peer (the federation directory, handed in as
``keys``), and only then stores it under the peer's ``node_id``. So the fee-cap check and the comparisons,
which read every node's rows, see peers' documents — and never one that failed verification.

How the copies are fetched is the federation's business: it installs a :class:`Gatherer` in
``node.extensions[GATHER_EXTENSION]`` and the register's ``GET /v1/publications?scope=national`` calls it.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Sequence
from datetime import datetime
from typing import Any, Protocol

import anyio.from_thread
import pydantic
from sqlmodel import Session

from registry.core.audit.context import AuditContext
from registry.core.db import utcnow
from registry.core.keys import b64url_decode
from registry.core.node import Node
from registry.core.signing import canonical, sha256_hex
from registry.publications.kinds import Kind, effective_dates
from registry.publications.models import PeerReport, Publication, PublicationPublic, PublicationVersion, Verification
from registry.publications.signatures import Keys, verify_version
from schemas import Purpose

GATHER_EXTENSION = "publications.gather"
"""``node.extensions`` slot for the federation's :class:`Gatherer` (absent: the node gathers from no one)."""


class Gatherer(Protocol):
    """Asks every peer for its current publications of ``kinds``, stores the verified copies, reports each peer."""

    async def __call__(
        self,
        *,
        kinds: Sequence[Kind],
        purpose: Purpose,
        request_id: str | None,
        context: AuditContext | None,
    ) -> list[PeerReport]: ...


class CopyRejected(Exception):
    """A served version that is not kept; ``reason`` is stable (``malformed``, ``bad-signature``, …)."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason, self.detail = reason, detail


def _kid(signature: str) -> str:
    """The ``kid`` in a JWS header, unverified (the signature check decides whether it means anything)."""
    try:
        header = json.loads(b64url_decode(signature.split(".", 1)[0]))
    except (ValueError, IndexError):
        return ""
    kid = header.get("kid") if isinstance(header, dict) else None
    return kid[:64] if isinstance(kid, str) else ""


def version_from_wire(item: Any, *, node_id: str) -> PublicationVersion:
    """The row a served version stands for, rebuilt from its signed fields; :class:`CopyRejected` if malformed.

    Only the signed fields and the signature are used: digest, canonical text and effective dates are
    recomputed, so nothing a peer (or anyone on the way) says about them is relied on. ``node_id`` is the peer
    that answered: a peer serves its own documents only, never another node's as if they were its.
    """
    try:
        served = PublicationPublic.model_validate(item)
        kind = Kind(served.kind)
        published_at = datetime.fromisoformat(served.published_at.replace("Z", "+00:00"))
        text = canonical(served.document)
        start, end = effective_dates(served.document)
    except (pydantic.ValidationError, ValueError, KeyError, TypeError) as exc:
        raise CopyRejected("malformed", f"not a publication version: {type(exc).__name__}") from None
    if served.node_id != node_id:
        raise CopyRejected("wrong-node", f"served by {node_id} but signed as {served.node_id}")
    if published_at.tzinfo is None:
        raise CopyRejected("malformed", "published_at has no time zone")
    return PublicationVersion(
        node_id=node_id,
        publication_id=served.id,
        version=served.version,
        kind=kind.value,
        state=served.state,
        document=text.decode("utf-8"),
        sha256=sha256_hex(text),
        schema_id=served.schema_[:200],
        schema_version=served.schema_version[:32],
        effective_from=start,
        effective_to=end,
        published_at=published_at,
        reason=served.reason,
        signature=served.signature,
        kid=_kid(served.signature),
        published_by=None,
    )


def _statement_of(version: PublicationVersion) -> tuple[Any, ...]:
    """Everything a version's signature covers, with the document as its digest."""
    return (
        version.kind,
        version.state,
        version.published_at,
        version.schema_id,
        version.reason,
        version.sha256,
        version.signature,
    )


def store_copy(
    session: Session, item: Any, *, node_id: str, region_code: str | None, keys: Keys, now: datetime | None = None
) -> PublicationVersion:
    """Verify one version served by peer ``node_id`` and hold it; raise :class:`CopyRejected` if it is not kept.

    Idempotent: a version already held identically is left as it is. A different document under a version
    number already held (a peer that signed two things as one version) is refused and the first one kept; an
    older version than the one held is kept as history but does not replace the latest. Flushes, never commits.
    """
    version = version_from_wire(item, node_id=node_id)
    held = session.get(PublicationVersion, (node_id, version.publication_id, version.version))
    # The steady state of a gather: the peer serves what is already held. Same canonical text (digest) and
    # same signed fields means the same verdict as the held row's, which is cached: canonical JSON costs
    # milliseconds for a large document, and a fresh check would pay for it twice more.
    checked = held if held is not None and _statement_of(held) == _statement_of(version) else version
    verification: Verification = verify_version(checked, keys=keys)
    if not verification.ok:
        raise CopyRejected(verification.reason or "bad-signature", f"{version.publication_id} v{version.version}")
    if held is not None:
        if checked is not held:
            raise CopyRejected("conflicts-with-held", f"{version.publication_id} v{version.version} differs")
        return held
    when = now or utcnow()
    head = session.get(Publication, (node_id, version.publication_id))
    if head is None:
        head = Publication(
            node_id=node_id,
            id=version.publication_id,
            kind=version.kind,
            region_code=region_code,
            latest_version=version.version,
            state=version.state,
            created_at=when,
            updated_at=when,
        )
        session.add(head)
        session.flush()  # the head first: the version's foreign key needs it
    elif head.kind != version.kind:
        raise CopyRejected("kind-changed", f"{version.publication_id} was a {head.kind}, now {version.kind}")
    elif version.version > head.latest_version:
        head.latest_version, head.state, head.region_code, head.updated_at = (
            version.version,
            version.state,
            region_code,
            when,
        )
        session.add(head)
    session.add(version)
    session.flush()
    return version


def gather_for(
    node: Node,
    *,
    kinds: Sequence[Kind],
    purpose: Purpose,
    request_id: str | None = None,
    context: AuditContext | None = None,
) -> list[PeerReport]:
    """Run the node's gatherer from a sync route (a worker thread) on the app's event loop; [] without one.

    The federation's connections live on the app's loop, so the gather runs there, not in a loop of its own.
    """
    gatherer: Gatherer | None = node.extensions.get(GATHER_EXTENSION)
    if gatherer is None:
        return []
    return anyio.from_thread.run(
        functools.partial(gatherer, kinds=kinds, purpose=purpose, request_id=request_id, context=context)
    )
