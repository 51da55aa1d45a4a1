"""The publications register: publish, update, withdraw, read and diff immutable, signed document versions.

Every version is immutable and signed by the node that holds it (see ``signatures``).

Updates are optimistic: the caller names the version it read (``If-Match``), and the new version is taken
by a conditional ``UPDATE publication SET latest_version = n + 1 WHERE latest_version = n``. Of two writers
holding the same ETag exactly one changes a row; the other gets :class:`StaleETag` (412). On PostgreSQL the
second UPDATE waits for the first's row lock and then re-checks the condition; on SQLite the database write
lock serialises them the same way. The ``(node_id, publication_id, version)`` primary key backs this up.

Services flush and never commit: the request (or the CLI command) owns the transaction.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Sequence
from datetime import UTC, date, datetime
from typing import Any, NamedTuple
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import sqlalchemy as sa
from sqlalchemy import and_, or_
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, select

import schemas
from registry.core.db import utcnow
from registry.core.errors import ValidationFailed
from registry.core.signing import canonical, sha256_hex
from registry.publications.errors import (
    ETagRequired,
    PublicationExists,
    PublicationNotFound,
    PublicationWithdrawn,
    StaleETag,
    VersionNotFound,
)
from registry.publications.kinds import Kind, effective_dates, semantic_problems
from registry.publications.models import Publication, PublicationPublic, PublicationVersion, Verification
from registry.publications.patch import Operation, diff
from registry.publications.signatures import Signer, iso_time, sign

PUBLISHED, WITHDRAWN = "published", "withdrawn"
MAX_PAGE = 500


class Held(NamedTuple):
    """A stored version with the region of the node that published it."""

    version: PublicationVersion
    region_code: str | None


# --- validation ------------------------------------------------------------------------------------------


def validate(kind: Kind, document: dict[str, Any], *, node_id: str, session: Session | None = None) -> None:
    """Raise :class:`ValidationFailed` naming every failing path (``/document/…``) of ``document``."""
    errors = [
        {"path": "/document" + e.path, "message": e.message} for e in schemas.validate(kind.schema_name, document)
    ]
    if not errors:
        problems = semantic_problems(kind, document, node_id=node_id)
        if session is not None and kind is Kind.placement_protocol:
            problems.extend(_fee_cap_ref_problems(session, document, node_id=node_id))
        errors = [{"path": "/document" + path, "message": message} for path, message in problems]
    if errors:
        raise ValidationFailed(f"the {kind.value} document is not valid", errors=errors)


def _fee_cap_ref_problems(session: Session, document: dict[str, Any], *, node_id: str) -> list[tuple[str, str]]:
    """A protocol naming a fee cap this node holds must name it correctly (peers' caps cannot be checked here)."""
    ref = document.get("fee_cap")
    if ref is None:
        return []
    head = session.get(Publication, (node_id, ref["id"]))
    if head is None:
        return []
    if head.kind != Kind.fee_cap:
        return [("/fee_cap/id", f"names a {head.kind} publication, not a fee-cap")]
    if "version" not in ref:
        return []
    version = session.get(PublicationVersion, (node_id, ref["id"], ref["version"]))
    if version is None:
        return [("/fee_cap/version", f"is not a version of {ref['id']} (latest is {head.latest_version})")]
    if "sha256" in ref and ref["sha256"] != version.sha256:
        return [("/fee_cap/sha256", f"does not match version {ref['version']} of {ref['id']}")]
    return []


# --- writing ---------------------------------------------------------------------------------------------------


def publish(
    session: Session,
    *,
    signer: Signer,
    kind: Kind,
    document: dict[str, Any],
    publication_id: str | None = None,
    actor: str | None = None,
    now: datetime | None = None,
) -> Held:
    """Validate and store version 1 of a new publication, signed by ``signer``."""
    validate(kind, document, node_id=signer.node_id, session=session)
    publication_id = publication_id or f"{kind.value}-{secrets.token_hex(6)}"
    if session.get(Publication, (signer.node_id, publication_id)) is not None:
        raise PublicationExists(publication_id)
    when = _stamp(now)
    version = _signed_version(signer, kind, publication_id, 1, PUBLISHED, document, when, actor=actor)
    session.add(
        Publication(
            node_id=signer.node_id,
            id=publication_id,
            kind=kind.value,
            region_code=signer.region_code,
            latest_version=1,
            state=PUBLISHED,
            created_at=when,
            updated_at=when,
        )
    )
    try:
        session.flush()  # the head first: the version's foreign key needs it
    except IntegrityError:
        raise PublicationExists(publication_id) from None
    session.add(version)
    session.flush()
    return Held(version, signer.region_code)


def update(
    session: Session,
    *,
    signer: Signer,
    publication_id: str,
    document: dict[str, Any],
    if_match: str | None,
    kind: Kind | None = None,
    actor: str | None = None,
    now: datetime | None = None,
) -> Held:
    """Store the next version of a publication, if ``if_match`` names its latest version."""
    head, current = _writable(session, signer.node_id, publication_id, if_match)
    held_kind = Kind(head.kind)
    if kind is not None and kind is not held_kind:
        raise ValidationFailed(
            "a publication keeps its kind", errors=[{"path": "/kind", "message": f"must be {held_kind.value}"}]
        )
    validate(held_kind, document, node_id=signer.node_id, session=session)
    return _advance(session, signer, head, current, PUBLISHED, document, now=now, actor=actor)


def withdraw(
    session: Session,
    *,
    signer: Signer,
    publication_id: str,
    if_match: str | None,
    reason: str | None = None,
    actor: str | None = None,
    now: datetime | None = None,
) -> Held:
    """Withdraw a publication: a signed new version in state ``withdrawn``, never a delete.

    The withdrawn version carries the same document, so what was withdrawn stays readable and verifiable.
    """
    head, current = _writable(session, signer.node_id, publication_id, if_match)
    document = json.loads(current.document)
    return _advance(session, signer, head, current, WITHDRAWN, document, now=now, actor=actor, reason=reason)


def _writable(
    session: Session, node_id: str, publication_id: str, if_match: str | None
) -> tuple[Publication, PublicationVersion]:
    head = get_or_raise(session, publication_id, node_id=node_id)
    if if_match is None:
        raise ETagRequired(publication_id)
    current = get_version_or_raise(session, publication_id, head.latest_version, node_id=node_id)
    if not if_match_holds(if_match, etag(current)):
        raise StaleETag(publication_id, etag(current))
    if head.state == WITHDRAWN:
        raise PublicationWithdrawn(publication_id, head.latest_version)
    return head, current


def _advance(
    session: Session,
    signer: Signer,
    head: Publication,
    current: PublicationVersion,
    state: str,
    document: dict[str, Any],
    *,
    now: datetime | None,
    actor: str | None,
    reason: str | None = None,
) -> Held:
    when = _stamp(now)
    # Sign first: the conditional UPDATE takes the row (PostgreSQL) or database (SQLite) lock, held till commit.
    version = _signed_version(
        signer, Kind(head.kind), head.id, current.version + 1, state, document, when, actor=actor, reason=reason
    )
    region_code = head.region_code
    claim_next_version(session, signer.node_id, head.id, expected=current.version, state=state, now=when)
    session.add(version)
    try:
        session.flush()
    except IntegrityError:
        raise StaleETag(head.id, None) from None
    session.expire(head)
    return Held(version, region_code)


def claim_next_version(
    session: Session, node_id: str, publication_id: str, *, expected: int, state: str, now: datetime
) -> None:
    """Move the publication from version ``expected`` to the next, or raise :class:`StaleETag` if it has moved.

    The one statement that decides an update race: it changes a row only while ``latest_version`` is still
    ``expected``, so of concurrent writers that read the same version exactly one succeeds.
    """
    result = session.execute(
        sa.update(Publication)
        .where(
            col(Publication.node_id) == node_id,
            col(Publication.id) == publication_id,
            col(Publication.latest_version) == expected,
        )
        .values(latest_version=expected + 1, state=state, updated_at=now)
        .execution_options(synchronize_session=False)
    )
    if getattr(result, "rowcount", 0) != 1:
        raise StaleETag(publication_id, None)


def _signed_version(
    signer: Signer,
    kind: Kind,
    publication_id: str,
    number: int,
    state: str,
    document: dict[str, Any],
    when: datetime,
    *,
    actor: str | None,
    reason: str | None = None,
) -> PublicationVersion:
    try:
        text = canonical(document)
    except ValueError as exc:
        raise ValidationFailed(
            "the document cannot be put in canonical form", errors=[{"path": "/document", "message": str(exc)}]
        ) from None
    start, end = effective_dates(document)
    version = PublicationVersion(
        node_id=signer.node_id,
        publication_id=publication_id,
        version=number,
        kind=kind.value,
        state=state,
        document=text.decode("utf-8"),
        sha256=sha256_hex(text),
        schema_id=schemas.load(kind.schema_name)["$id"],
        schema_version=schemas.version(kind.schema_name),
        effective_from=start,
        effective_to=end,
        published_at=when,
        reason=reason,
        signature="",
        kid=signer.key.kid,
        published_by=actor,
    )
    version.signature = sign(version, json.loads(version.document), signer.key)
    return version


def _stamp(now: datetime | None) -> datetime:
    """Millisecond precision: the time is signed as text and must read back identically on every engine."""
    moment = (now or utcnow()).astimezone(UTC)
    return moment.replace(microsecond=moment.microsecond // 1000 * 1000)


# --- reading ------------------------------------------------------------------------------------------------------


def get_or_raise(session: Session, publication_id: str, *, node_id: str) -> Publication:
    """The publication's head row, or :class:`PublicationNotFound`."""
    head = session.get(Publication, (node_id, publication_id))
    if head is None:
        raise PublicationNotFound(publication_id)
    return head


def get_version_or_raise(session: Session, publication_id: str, number: int, *, node_id: str) -> PublicationVersion:
    """One stored version, or :class:`PublicationNotFound` / :class:`VersionNotFound`."""
    version = session.get(PublicationVersion, (node_id, publication_id, number))
    if version is None:
        head = get_or_raise(session, publication_id, node_id=node_id)
        raise VersionNotFound(publication_id, number, head.latest_version)
    return version


def get_latest(session: Session, publication_id: str, *, node_id: str) -> Held:
    """The latest version of a publication."""
    head = get_or_raise(session, publication_id, node_id=node_id)
    return Held(get_version_or_raise(session, publication_id, head.latest_version, node_id=node_id), head.region_code)


def get_version(session: Session, publication_id: str, number: int, *, node_id: str) -> Held:
    """One version with its node's region."""
    head = get_or_raise(session, publication_id, node_id=node_id)
    return Held(get_version_or_raise(session, publication_id, number, node_id=node_id), head.region_code)


def list_versions(session: Session, publication_id: str, *, node_id: str) -> list[PublicationVersion]:
    """Every version of a publication, oldest first."""
    get_or_raise(session, publication_id, node_id=node_id)
    return list(
        session.exec(
            select(PublicationVersion)
            .where(PublicationVersion.node_id == node_id, PublicationVersion.publication_id == publication_id)
            .order_by(col(PublicationVersion.version))
        )
    )


def list_latest(
    session: Session,
    *,
    node_ids: Sequence[str] | None = None,
    kind: Kind | None = None,
    effective_on: date | None = None,
    state: str | None = None,
    limit: int | None = 100,
    cursor: str | None = None,
) -> tuple[list[Held], str | None]:
    """The latest version of each publication held, filtered; returns the page and the next cursor.

    ``effective_on`` keeps only documents in force on that date: published (not withdrawn), with
    ``effective_from`` on or before it and no ``effective_to`` or one on or after it. The latest version
    is authoritative: a new version replaces the old one entirely, dates included.
    ``node_ids`` None means every node's documents this node holds (its own, and peers' in phase 2).
    """
    pv = PublicationVersion
    query = select(pv, Publication.region_code).join(
        Publication,
        and_(
            col(Publication.node_id) == col(pv.node_id),
            col(Publication.id) == col(pv.publication_id),
            col(Publication.latest_version) == col(pv.version),
        ),
    )
    if node_ids is not None:
        query = query.where(col(pv.node_id).in_(list(node_ids)))
    if kind is not None:
        query = query.where(pv.kind == kind.value)
    if state is not None:
        query = query.where(pv.state == state)
    if effective_on is not None:
        query = query.where(
            pv.state == PUBLISHED,
            col(pv.effective_from) <= effective_on,
            or_(col(pv.effective_to).is_(None), col(pv.effective_to) >= effective_on),
        )
    if cursor:
        after_node, _, after_id = cursor.partition("/")
        query = query.where(
            or_(
                col(pv.node_id) > after_node,
                and_(col(pv.node_id) == after_node, col(pv.publication_id) > after_id),
            )
        )
    query = query.order_by(col(pv.node_id), col(pv.publication_id))
    if limit is not None:
        query = query.limit(limit + 1)
    rows = [Held(version, region) for version, region in session.exec(query)]
    if limit is not None and len(rows) > limit:
        last = rows[limit - 1].version
        return rows[:limit], f"{last.node_id}/{last.publication_id}"
    return rows, None


def diff_versions(session: Session, publication_id: str, source: int, target: int, *, node_id: str) -> list[Operation]:
    """The RFC 6902 JSON Patch turning version ``source``'s document into version ``target``'s."""
    before = get_version_or_raise(session, publication_id, source, node_id=node_id)
    after = get_version_or_raise(session, publication_id, target, node_id=node_id)
    return diff(json.loads(before.document), json.loads(after.document))


def document_of(version: PublicationVersion) -> dict[str, Any]:
    """The stored document parsed (empty if the stored text is unreadable, which verification reports)."""
    try:
        document = json.loads(version.document)
    except ValueError:
        return {}
    return document if isinstance(document, dict) else {}


def etag(version: PublicationVersion) -> str:
    """The strong ETag of a version: its number and digest, so it changes with every new version."""
    return f'"{version.version}.{version.sha256[:20]}"'


def if_match_holds(header: str, current: str) -> bool:
    """RFC 9110 ``If-Match``: ``*`` or a list containing the current ETag (strong comparison: ``W/`` never matches)."""
    value = header.strip()
    return value == "*" or current in (tag.strip() for tag in value.split(","))


def to_public(held: Held, *, verification: Verification | None = None) -> PublicationPublic:
    """The wire form of a stored version."""
    version = held.version
    document = document_of(version)
    return PublicationPublic(
        node_id=version.node_id,
        id=version.publication_id,
        kind=version.kind,
        version=version.version,
        state=PUBLISHED if version.state == PUBLISHED else WITHDRAWN,
        published_at=iso_time(version.published_at),
        schema_=version.schema_id,
        document=document,
        reason=version.reason,
        sha256=version.sha256,
        etag=etag(version),
        signature=version.signature,
        schema_version=version.schema_version,
        effective_from=version.effective_from,
        effective_to=version.effective_to,
        region_code=held.region_code,
        synthetic=document.get("synthetic") is True,
        verification=verification,
    )


# --- the node --------------------------------------------------------------------------------------------------


def today() -> date:
    """Today in England, where effective dates are set (UTC if the time zone database is missing)."""
    try:
        return utcnow().astimezone(ZoneInfo("Europe/London")).date()
    except ZoneInfoNotFoundError:
        return utcnow().date()
