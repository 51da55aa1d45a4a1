"""Reading the stored agreements back as verified facts, with verification cached by content hash.

Every reader — the API, the CLI, the policy decision — goes through :func:`load` then :func:`compile_all`.
Compiling a version re-verifies each stored signature and event against the public key recorded with it
(~230 µs per Ed25519 verify), so the result is cached under a *content key*: the digest of the document and
of every signature and event stored for it. A new signature or event gives a new key, hence a fresh
verification; nothing else ever invalidates an entry, because the same content always verifies the same way.
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.engine import Connection
from sqlmodel import Session, col

from agreements import signatures
from agreements.documents import AgreementDocument, digest, event_time, from_valid
from agreements.lifecycle import EventFact, SignatureFact, VersionFacts, compile_version, link_versions
from agreements.models import AgreementEvent, AgreementRevision, AgreementSignature, AgreementVersion

log = logging.getLogger("rcc.agreements")


@dataclass(frozen=True)
class SignatureRecord:
    """A stored signature, detached from the ORM session."""

    node_id: str
    kid: str
    jwk: str
    jws: str
    recorded_at: datetime


@dataclass(frozen=True)
class EventRecord:
    """A stored event, detached from the ORM session."""

    sha256: str
    event: dict[str, Any]
    kid: str
    jwk: str
    jws: str
    recorded_at: datetime

    @property
    def type(self) -> str:
        """The event type (signed, proposed, revoked, withdrawn, renewed, suspended)."""
        return str(self.event.get("type"))

    @property
    def by(self) -> str:
        """The node that made and signed the event."""
        return str(self.event.get("by"))


@dataclass(frozen=True)
class StoredVersion:
    """One stored version with its signatures and events."""

    document: AgreementDocument
    origin: str
    recorded_at: datetime
    signatures: tuple[SignatureRecord, ...]
    events: tuple[EventRecord, ...]

    @property
    def content_key(self) -> str:
        """Digest of everything stored for this version; verification results are cached under it."""
        h = hashlib.sha256(self.document.sha256.encode())
        for s in sorted(self.signatures, key=lambda s: (s.node_id, s.jws)):
            h.update(f"\ns {s.node_id} {s.kid} {s.jwk} {s.jws}".encode())
        for e in sorted(self.events, key=lambda e: e.sha256):
            h.update(f"\ne {e.sha256} {e.kid} {e.jwk} {e.jws}".encode())
        return h.hexdigest()


@dataclass(frozen=True)
class CheckedVersion:
    """A compiled version and the verification outcome of each stored signature and event (``None`` = valid)."""

    facts: VersionFacts
    signature_failures: dict[str, str | None]
    event_failures: dict[str, str | None]


class VerifiedCache:
    """Compiled versions by content key, plus parsed documents by digest; safe to share between threads."""

    def __init__(self, max_entries: int = 4096) -> None:
        self._checked: dict[str, CheckedVersion] = {}
        self._documents: dict[str, AgreementDocument] = {}
        self._lock = threading.Lock()
        self.max_entries = max_entries
        self.verifications = 0

    def document(self, text: str) -> AgreementDocument:
        """The parsed document stored as ``text``, parsed once per distinct text.

        Its digest is recomputed from the text (never taken from the row's ``sha256`` column), so a document
        altered in the database no longer matches the signatures over the original.
        """
        key = hashlib.sha256(text.encode("utf-8")).hexdigest()
        found = self._documents.get(key)
        if found is None:
            raw = json.loads(text)
            found = from_valid(raw, digest(raw))
            with self._lock:
                self._remember(self._documents, key, found)
        return found

    def checked(self, stored: StoredVersion) -> CheckedVersion:
        """The compiled, verified version (verified once per content key)."""
        key = stored.content_key
        found = self._checked.get(key)
        if found is None:
            found = check_version(stored)
            with self._lock:
                self.verifications += 1
                self._remember(self._checked, key, found)
        return found

    def _remember(self, table: dict[str, Any], key: str, value: Any) -> None:
        if len(table) >= self.max_entries:
            table.clear()  # rare (thousands of versions); rebuilding is correct, just slower once
        table[key] = value


def check_version(stored: StoredVersion) -> CheckedVersion:
    """Re-verify every signature and event of a version with its recorded key and compile its facts."""
    raw = stored.document.raw
    signature_failures: dict[str, str | None] = {}
    signature_facts = []
    for s in stored.signatures:
        failure = signatures.check_recorded(raw, s.jws, kid=s.kid, jwk_json=s.jwk, typ=signatures.DOCUMENT_TYP)
        signature_failures[s.node_id] = failure
        signature_facts.append(SignatureFact(s.node_id, s.kid, failure is None))
    event_failures: dict[str, str | None] = {}
    event_facts = []
    for e in stored.events:
        failure = signatures.check_recorded(e.event, e.jws, kid=e.kid, jwk_json=e.jwk, typ=signatures.EVENT_TYP)
        if failure is None and e.event.get("document_sha256") != stored.document.sha256:
            failure = "wrong-document"
        event_failures[e.sha256] = failure
        if failure is None:
            event_facts.append(event_fact(e.sha256, e.event))
    facts = compile_version(stored.document, signature_facts, event_facts)
    return CheckedVersion(facts, signature_failures, event_failures)


def event_fact(sha256: str, event: dict[str, Any]) -> EventFact:
    """The lifecycle fact an (already verified) event states."""
    review_by = event.get("review_by")
    return EventFact(
        type=event["type"],
        by=event["by"],
        at=event_time(event["at"]),
        sha256=sha256,
        review_by=date.fromisoformat(review_by) if review_by else None,
        reason=event.get("reason"),
    )


def load(session: Session, cache: VerifiedCache, *, agreement_id: str | None = None) -> dict[str, list[StoredVersion]]:
    """Every stored version (of one agreement, or all), grouped by agreement id, oldest version first."""
    versions = select(AgreementVersion)
    sigs = select(AgreementSignature)
    events = select(AgreementEvent)
    if agreement_id is not None:
        versions = versions.where(col(AgreementVersion.agreement_id) == agreement_id)
        sigs = sigs.where(col(AgreementSignature.agreement_id) == agreement_id)
        events = events.where(col(AgreementEvent.agreement_id) == agreement_id)
    sig_by_doc: dict[str, list[SignatureRecord]] = {}
    for s in session.scalars(sigs):
        sig_by_doc.setdefault(s.document_sha256, []).append(
            SignatureRecord(s.node_id, s.kid, s.jwk, s.jws, s.recorded_at)
        )
    events_by_doc: dict[str, list[EventRecord]] = {}
    for e in session.scalars(events.order_by(col(AgreementEvent.id))):
        event = _readable(e.event, f"event {e.sha256}")
        if isinstance(event, dict):
            events_by_doc.setdefault(e.document_sha256, []).append(
                EventRecord(e.sha256, event, e.kid, e.jwk, e.jws, e.recorded_at)
            )
    grouped: dict[str, list[StoredVersion]] = {}
    for v in session.scalars(versions.order_by(col(AgreementVersion.agreement_id), col(AgreementVersion.version))):
        try:
            document = cache.document(v.document)
        except (ValueError, KeyError, TypeError, AttributeError):
            # Only a database edited behind the node's back gets here; such a version can never be in force.
            log.error("agreement %s version %s is unreadable in the database; ignored", v.agreement_id, v.version)
            continue
        grouped.setdefault(v.agreement_id, []).append(
            StoredVersion(
                document=document,
                origin=v.origin,
                recorded_at=v.recorded_at,
                signatures=tuple(sig_by_doc.get(v.sha256, ())),
                events=tuple(events_by_doc.get(v.sha256, ())),
            )
        )
    return grouped


def _readable(text: str, what: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        log.error("%s is unreadable in the database; ignored", what)
        return None


def compile_group(stored: Iterable[StoredVersion], cache: VerifiedCache) -> list[VersionFacts]:
    """The versions of one agreement as facts, linked so earlier versions know when they are superseded."""
    return link_versions(cache.checked(s).facts for s in stored)


def bump_revision(session: Session) -> None:
    """Count a write, in the writer's transaction, so other workers' policy caches see it once committed."""
    result = session.execute(
        update(AgreementRevision)
        .where(col(AgreementRevision.id) == 1)
        .values(revision=col(AgreementRevision.revision) + 1)
    )
    if getattr(result, "rowcount", 0) == 0:
        session.add(AgreementRevision(id=1, revision=1))
    session.flush()


REVISION_SQL = "SELECT revision FROM agreement_revision WHERE id = 1"


def read_revision(connection: Connection | Session) -> int:
    """The write counter as this connection or session sees it (0 before the first write).

    Runs on the DBAPI cursor of the connection (inside its transaction): this is on every federated
    request's path, and SQLAlchemy's statement and result layers cost more than the query itself.
    """
    if isinstance(connection, Session):
        connection = connection.connection()
    cursor = connection.connection.cursor()
    try:
        cursor.execute(REVISION_SQL)
        row = cursor.fetchone()
    finally:
        cursor.close()
    return int(row[0]) if row else 0
