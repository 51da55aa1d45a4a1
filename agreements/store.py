"""Writing documents, signatures and events: every check first, then every row, or nothing.

:func:`ingest` is the single door into the agreement tables, used alike for a local draft, this node's own
signature or event, and a message from another party's node. It refuses the whole batch if any item fails
(nothing half-written stays), skips what is already stored (so repeating a message is harmless), and bumps
the revision counter once, in the same transaction, so the policy cache of every worker notices.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col

import schemas
from agreements import documents, signatures
from agreements.documents import AgreementDocument
from agreements.errors import DocumentInvalid, EventInvalid, SignatureRefused, VersionConflict
from agreements.keys import KeyResolver
from agreements.ledger import bump_revision
from agreements.models import AgreementEvent, AgreementSignature, AgreementVersion, ReceiveResult
from registry.core.errors import Conflict
from registry.core.signing import SignatureInvalid, canonical


@dataclass(frozen=True)
class _NewSignature:
    node_id: str
    jws: str
    checked: signatures.CheckedSignature


@dataclass(frozen=True)
class _NewEvent:
    sha256: str
    event: dict[str, Any]
    jws: str
    checked: signatures.CheckedSignature


class _Problems:
    """Every failure of a batch, kept apart by kind so the right error class is raised."""

    def __init__(self) -> None:
        self.invalid: list[dict[str, str]] = []
        self.refused: list[tuple[str, dict[str, str]]] = []

    def raise_if_any(self) -> None:
        if self.refused:
            errors = [error for _, error in self.refused] + self.invalid
            raise SignatureRefused(self.refused[0][0], errors)
        if self.invalid:
            raise EventInvalid(self.invalid)


def admissible(session: Session, document: AgreementDocument) -> AgreementVersion | None:
    """The stored row if this exact version is already held; raise if another content holds its (id, version)
    or if what it supersedes is not held with the pinned digest."""
    existing = session.get(AgreementVersion, (document.id, document.version))
    if existing is not None:
        if existing.sha256 != document.sha256:
            raise VersionConflict(document.id, document.version, existing.sha256, document.sha256)
        return existing
    if document.supersedes is not None:
        # A party acceding by a new version never held the old one: only a version held can be checked.
        prior_id, prior_version, prior_sha = document.supersedes
        prior = session.get(AgreementVersion, (prior_id, prior_version))
        if prior is not None and prior.sha256 != prior_sha:
            raise DocumentInvalid([{"path": "/supersedes/sha256", "message": "is not the digest of that version"}])
    for later in session.scalars(
        select(AgreementVersion).where(
            col(AgreementVersion.agreement_id) == document.id, col(AgreementVersion.version) > document.version
        )
    ):
        pinned = json.loads(later.document).get("supersedes") or {}
        if pinned.get("version") == document.version and pinned.get("sha256") != document.sha256:
            raise DocumentInvalid(
                [{"path": "", "message": f"version {later.version} held here supersedes another content of it"}]
            )
    return None


def ingest(
    session: Session,
    *,
    document: AgreementDocument,
    signed: list[tuple[str, str]],
    events: list[tuple[Any, str]],
    resolver: KeyResolver,
    origin: str,
    now: datetime,
) -> ReceiveResult:
    """Store a version and any signatures ``(node_id, jws)`` and events ``(event, jws)`` not yet stored.

    Each new signature must be a party's, by a key active for that node, over this exact document; each new
    event must validate, name this version by digest, be made and signed by a party. Raises
    :class:`SignatureRefused` / :class:`EventInvalid` (422) listing every failure by JSON path, or a
    :class:`~agreements.errors.VersionConflict` (409) for a different document under the same (id, version).
    """
    existing = admissible(session, document)
    problems = _Problems()
    new_signatures = _check_signatures(session, document, signed, resolver, problems, known=existing is not None)
    new_events = _check_events(session, document, events, resolver, problems, known=existing is not None)
    problems.raise_if_any()
    if existing is None:
        session.add(
            AgreementVersion(
                agreement_id=document.id,
                version=document.version,
                sha256=document.sha256,
                document=canonical(document.raw).decode("utf-8"),
                schema_version=schemas.version(documents.SCHEMA),
                origin=origin,
                recorded_at=now,
            )
        )
        _flush(session)  # the version row first: signatures and events reference it
    for s in new_signatures:
        session.add(
            AgreementSignature(
                document_sha256=document.sha256,
                agreement_id=document.id,
                version=document.version,
                node_id=s.node_id,
                kid=s.checked.kid,
                jwk=signatures.jwk_json(s.checked.jwk),
                jws=s.jws,
                recorded_at=now,
            )
        )
    for e in new_events:
        session.add(
            AgreementEvent(
                sha256=e.sha256,
                document_sha256=document.sha256,
                agreement_id=document.id,
                version=document.version,
                type=e.event["type"],
                by_node=e.event["by"],
                at=documents.event_time(e.event["at"]),
                event=canonical(e.event).decode("utf-8"),
                kid=e.checked.kid,
                jwk=signatures.jwk_json(e.checked.jwk),
                jws=e.jws,
                recorded_at=now,
            )
        )
    if existing is None or new_signatures or new_events:
        _flush(session)
        bump_revision(session)
    return ReceiveResult(
        agreement=document.id,
        version=document.version,
        document_stored=existing is None,
        signatures_stored=len(new_signatures),
        events_stored=len(new_events),
    )


def _flush(session: Session) -> None:
    try:
        session.flush()
    except IntegrityError:
        # Another request stored the same item between our check and our write; the client may simply retry.
        raise Conflict("the agreement changed while this was being stored; send it again") from None


def _check_signatures(
    session: Session,
    document: AgreementDocument,
    signed: list[tuple[str, str]],
    resolver: KeyResolver,
    problems: _Problems,
    *,
    known: bool,
) -> list[_NewSignature]:
    stored: set[str] = set()
    if known:
        stored = set(
            session.scalars(
                select(col(AgreementSignature.node_id)).where(
                    col(AgreementSignature.document_sha256) == document.sha256
                )
            )
        )
    accepted: list[_NewSignature] = []
    for index, (node_id, jws) in enumerate(signed):
        if node_id in stored:
            continue  # one signature per party and document: the first stored stands
        try:
            checked = signatures.check(
                document.raw,
                jws,
                node_id=node_id,
                typ=signatures.DOCUMENT_TYP,
                resolver=resolver,
                parties=document.parties,
            )
        except SignatureInvalid as exc:
            problems.refused.append((exc.reason, {"path": f"/signatures/{index}", "message": exc.detail}))
            continue
        stored.add(node_id)
        accepted.append(_NewSignature(node_id, jws, checked))
    return accepted


def _check_events(
    session: Session,
    document: AgreementDocument,
    events: list[tuple[Any, str]],
    resolver: KeyResolver,
    problems: _Problems,
    *,
    known: bool,
) -> list[_NewEvent]:
    accepted: list[_NewEvent] = []
    seen: set[str] = set()
    for index, (event, jws) in enumerate(events):
        path = f"/events/{index}"
        try:
            documents.parse_event(event)
            sha = documents.digest(event)
        except (EventInvalid, ValueError) as exc:
            errors = exc.errors if isinstance(exc, EventInvalid) and exc.errors else [{"path": "", "message": str(exc)}]
            problems.invalid.extend({"path": f"{path}/event{e['path']}", "message": e["message"]} for e in errors)
            continue
        if sha in seen or (
            known and session.scalar(select(col(AgreementEvent.id)).where(col(AgreementEvent.sha256) == sha))
        ):
            continue
        rule = event_rule(document, event)
        if rule is not None:
            problems.invalid.append({"path": f"{path}/event{rule[0]}", "message": rule[1]})
            continue
        try:
            checked = signatures.check(
                event,
                jws,
                node_id=event["by"],
                typ=signatures.EVENT_TYP,
                resolver=resolver,
                parties=document.parties,
            )
        except SignatureInvalid as exc:
            problems.refused.append((exc.reason, {"path": f"{path}/jws", "message": exc.detail}))
            continue
        seen.add(sha)
        accepted.append(_NewEvent(sha, event, jws, checked))
    return accepted


def event_rule(document: AgreementDocument, event: dict[str, Any]) -> tuple[str, str] | None:
    """Rules an event must keep towards the version it is about; ``(path, message)`` of the first broken one."""
    if event["agreement"] != document.id:
        return "/agreement", "is not this agreement"
    if event["version"] != document.version:
        return "/version", "is not this version"
    if event["document_sha256"] != document.sha256:
        return "/document_sha256", "is not the digest of this version"
    if event["type"] == "renewed":
        review_by = date.fromisoformat(event["review_by"])
        if review_by <= document.review_by:
            return "/review_by", "must be after the document's review_by"
        if review_by > document.valid_until:
            return "/review_by", "must not be after valid_until (a longer agreement needs a new version)"
    return None
