"""The agreements service: draft, read, list, sign, revoke, withdraw, renew, propose.

Plain functions, session first, the rest keyword-only; they ``flush()`` and never ``commit()`` (the request,
or the CLI command, owns the transaction). Every write goes through :func:`agreements.store.ingest`, so this
node's own signatures and events are checked exactly as a peer's would be. Every change the other parties
must hear of queues a delivery to each of them in the same transaction (:func:`agreements.outbox.enqueue`);
a draft nobody else has seen stays local until it is proposed. Exchange with other nodes (outbox, receive,
bundles) is in :mod:`agreements.exchange`.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from sqlmodel import Session

from agreements import documents, ledger, outbox, signatures, store
from agreements.errors import AgreementNotFound, AgreementStateConflict, EventInvalid, NotAParty
from agreements.lifecycle import State, VersionFacts
from agreements.models import (
    AgreementPublic,
    AgreementSummary,
    AttentionPublic,
    EventPublic,
    SignaturePublic,
    VersionRef,
)
from agreements.runtime import AgreementsRuntime

LIVE = (State.draft, State.proposed, State.active, State.suspended)


@dataclass(frozen=True)
class Version:
    """A stored version with its facts (a pair every read needs)."""

    stored: ledger.StoredVersion
    facts: VersionFacts

    @property
    def document(self) -> documents.AgreementDocument:
        """The validated document."""
        return self.stored.document


def versions_of(session: Session, *, runtime: AgreementsRuntime, agreement_id: str) -> list[Version]:
    """Every stored version of an agreement, oldest first; :class:`AgreementNotFound` if there is none."""
    stored = ledger.load(session, runtime.cache, agreement_id=agreement_id).get(agreement_id)
    if not stored:
        raise AgreementNotFound(agreement_id)
    return [Version(s, f) for s, f in zip(stored, ledger.compile_group(stored, runtime.cache), strict=True)]


def _pick(versions: list[Version], agreement_id: str, version: int | None) -> Version:
    if version is None:
        return versions[-1]
    for candidate in versions:
        if candidate.document.version == version:
            return candidate
    raise AgreementNotFound(agreement_id, version)


def create(session: Session, *, runtime: AgreementsRuntime, document: Any) -> tuple[AgreementPublic, bool]:
    """Store a draft this node is a party to; ``(agreement, created)`` — storing the same document again is a no-op."""
    parsed = documents.parse(document)
    if not parsed.is_party(runtime.node_id):
        raise NotAParty(parsed.id, runtime.node_id)
    result = store.ingest(
        session, document=parsed, signed=[], events=[], resolver=runtime.resolver, origin="local", now=runtime.now()
    )
    return get(session, runtime=runtime, agreement_id=parsed.id, version=parsed.version), result.document_stored


def get(
    session: Session, *, runtime: AgreementsRuntime, agreement_id: str, version: int | None = None
) -> AgreementPublic:
    """One version (default: the newest) in full, with its state now and the agreement's other versions."""
    versions = versions_of(session, runtime=runtime, agreement_id=agreement_id)
    found = public(_pick(versions, agreement_id, version), versions, runtime=runtime)
    found.deliveries = outbox.status(session, agreement_id=agreement_id)
    return found


def list_agreements(
    session: Session,
    *,
    runtime: AgreementsRuntime,
    state: str | None = None,
    party: str | None = None,
    dataset: str | None = None,
    purpose: str | None = None,
    attention: bool | None = None,
) -> list[AgreementSummary]:
    """Every stored version matching all given filters, by agreement id then newest version first."""
    now = runtime.now()
    rows: list[AgreementSummary] = []
    for _, stored in sorted(ledger.load(session, runtime.cache).items()):
        for facts in sorted(ledger.compile_group(stored, runtime.cache), key=lambda f: -f.document.version):
            doc = facts.document
            if party is not None and not doc.is_party(party):
                continue
            if dataset is not None and dataset not in doc.datasets:
                continue
            if purpose is not None and purpose not in doc.purposes:
                continue
            summary = summarise(facts, now=now)
            if state is not None and summary.state != state:
                continue
            if attention is not None and bool(summary.attention) != attention:
                continue
            rows.append(summary)
    return rows


def sign(
    session: Session,
    *,
    runtime: AgreementsRuntime,
    agreement_id: str,
    version: int | None = None,
    sha256: str | None = None,
) -> AgreementPublic:
    """Sign a version (default: the newest) with this node's key, recording a signed ``signed`` event with it.

    ``sha256``, when given, must be the digest of that version: the signer pins exactly what it has read.
    Signing again is a no-op; a revoked, expired or superseded version cannot be signed.
    """
    versions = versions_of(session, runtime=runtime, agreement_id=agreement_id)
    target = _pick(versions, agreement_id, version)
    doc = target.document
    _require_party(doc, runtime.node_id)
    if sha256 is not None and sha256 != doc.sha256:
        raise AgreementStateConflict(
            agreement_id, _state(target, runtime), f"version {doc.version} has digest {doc.sha256}, not {sha256}"
        )
    if runtime.node_id in target.facts.signers:
        return public(target, versions, runtime=runtime)
    state = _state(target, runtime)
    if state not in LIVE:
        raise AgreementStateConflict(agreement_id, state, f"a {state} agreement cannot be signed")
    jws = signatures.sign(doc.raw, runtime.keys.active, typ=signatures.DOCUMENT_TYP)
    _ingest_own(
        session, runtime=runtime, document=doc, signed=[(runtime.node_id, jws)], events=[_event(runtime, doc, "signed")]
    )
    if _shared(target, runtime):
        _notify(session, runtime, [target])
    return get(session, runtime=runtime, agreement_id=agreement_id, version=doc.version)


def revoke(session: Session, *, runtime: AgreementsRuntime, agreement_id: str, reason: str) -> AgreementPublic:
    """Revoke every live version this node is a party to; it takes effect at once (idempotent)."""
    mine = _versions_as_party(session, runtime, agreement_id)
    if all(runtime.node_id in v.facts.withdrawn for v in mine):
        raise AgreementStateConflict(
            agreement_id, _state(mine[-1], runtime), "this node has withdrawn; it cannot revoke for the others"
        )
    targets = [v for v in mine if _state(v, runtime) in LIVE and runtime.node_id not in v.facts.withdrawn]
    if not targets and not any(_state(v, runtime) == State.revoked for v in mine):
        raise AgreementStateConflict(agreement_id, _state(mine[-1], runtime), "nothing left to revoke")
    return _record_event(session, runtime, agreement_id, targets, "revoked", reason)


def withdraw(session: Session, *, runtime: AgreementsRuntime, agreement_id: str, reason: str) -> AgreementPublic:
    """End this node's part in every live version it is a party to; the other parties' grants stand."""
    mine = _versions_as_party(session, runtime, agreement_id)
    targets = [v for v in mine if _state(v, runtime) in LIVE and runtime.node_id not in v.facts.withdrawn]
    if not targets and not any(runtime.node_id in v.facts.withdrawn for v in mine):
        raise AgreementStateConflict(agreement_id, _state(mine[-1], runtime), "nothing left to withdraw from")
    return _record_event(session, runtime, agreement_id, targets, "withdrawn", reason)


def _versions_as_party(session: Session, runtime: AgreementsRuntime, agreement_id: str) -> list[Version]:
    """The versions of ``agreement_id`` naming this node as a party; refused when there are none."""
    mine = [
        v
        for v in versions_of(session, runtime=runtime, agreement_id=agreement_id)
        if v.document.is_party(runtime.node_id)
    ]
    if not mine:
        raise NotAParty(agreement_id, runtime.node_id)
    return mine


def _record_event(
    session: Session, runtime: AgreementsRuntime, agreement_id: str, targets: list[Version], kind: str, reason: str
) -> AgreementPublic:
    """Sign ``kind`` on each target version, queue it for the other parties, and answer the agreement as changed."""
    for target in targets:
        _ingest_own(
            session,
            runtime=runtime,
            document=target.document,
            events=[_event(runtime, target.document, kind, reason=reason)],
        )
    _notify(session, runtime, [t for t in targets if _shared(t, runtime)])
    return get(session, runtime=runtime, agreement_id=agreement_id)


def renew(
    session: Session, *, runtime: AgreementsRuntime, agreement_id: str, review_by: date, version: int | None = None
) -> AgreementPublic:
    """This party's signed agreement to move the review date to ``review_by``.

    The renewal counts once every remaining party has renewed to the same date; until then a lapsed review
    keeps the agreement suspended. The target is the given version, else the newest one every party signed.
    """
    versions = versions_of(session, runtime=runtime, agreement_id=agreement_id)
    if version is not None:
        target = _pick(versions, agreement_id, version)
    else:
        signed = [v for v in versions if v.facts.fully_signed and _state(v, runtime) in LIVE]
        target = signed[-1] if signed else versions[-1]
    doc = target.document
    _require_party(doc, runtime.node_id)
    state = _state(target, runtime)
    if not target.facts.fully_signed or state not in (State.active, State.suspended, State.proposed):
        raise AgreementStateConflict(agreement_id, state, "only an agreement every party has signed can be renewed")
    if runtime.node_id in target.facts.withdrawn:
        raise AgreementStateConflict(agreement_id, state, "this node has withdrawn from the agreement")
    already = any(
        e.type == "renewed" and e.by == runtime.node_id and e.review_by == review_by for e in target.facts.events
    )
    if not already:
        event = _event(runtime, doc, "renewed", review_by=review_by.isoformat())
        try:
            _ingest_own(session, runtime=runtime, document=doc, events=[event])
        except EventInvalid as exc:  # report against the request body, not the event it became
            raise EventInvalid([{"path": "/review_by", "message": e["message"]} for e in exc.errors or []]) from None
        _notify(session, runtime, [target])
    return get(session, runtime=runtime, agreement_id=agreement_id, version=doc.version)


def record_proposal(
    session: Session,
    *,
    runtime: AgreementsRuntime,
    agreement_id: str,
    version: int | None = None,
    sha256: str | None = None,
) -> Version:
    """Sign (if not yet) and record this node's ``proposed`` event for a version (:func:`propose` also queues it
    for every other party)."""
    versions = versions_of(session, runtime=runtime, agreement_id=agreement_id)
    target = _pick(versions, agreement_id, version)
    doc = target.document
    _require_party(doc, runtime.node_id)
    if runtime.node_id not in target.facts.signers:
        sign(session, runtime=runtime, agreement_id=agreement_id, version=doc.version, sha256=sha256)
    elif sha256 is not None and sha256 != doc.sha256:
        raise AgreementStateConflict(
            agreement_id, _state(target, runtime), f"version {doc.version} has digest {doc.sha256}, not {sha256}"
        )
    if not any(e.type == "proposed" and e.by == runtime.node_id for e in target.facts.events):
        _ingest_own(session, runtime=runtime, document=doc, events=[_event(runtime, doc, "proposed")])
    return _pick(versions_of(session, runtime=runtime, agreement_id=agreement_id), agreement_id, doc.version)


def propose(
    session: Session,
    *,
    runtime: AgreementsRuntime,
    agreement_id: str,
    version: int | None = None,
    sha256: str | None = None,
) -> AgreementPublic:
    """Sign and propose a version, and queue it — document, every signature and event — for every other party.

    Proposing again is harmless: nothing new is signed, and the agreement is queued for every party again,
    which is how an operator re-sends it to a party that lost it.
    """
    proposed = record_proposal(session, runtime=runtime, agreement_id=agreement_id, version=version, sha256=sha256)
    _notify(session, runtime, [proposed])
    return get(session, runtime=runtime, agreement_id=agreement_id, version=proposed.document.version)


# --- helpers ------------------------------------------------------------------------------------------------


def _shared(version: Version, runtime: AgreementsRuntime) -> bool:
    """Do other parties already know this version (proposed, or signed by someone else)? Judged before a change."""
    return version.facts.proposed or bool(version.facts.signers - {runtime.node_id})


def _notify(session: Session, runtime: AgreementsRuntime, changed: Iterable[Version]) -> None:
    """Queue the agreement for every other party of the changed versions (nothing if none changed)."""
    versions = list(changed)
    parties = {p for v in versions for p in v.document.parties if p != runtime.node_id}
    for agreement_id in sorted({v.document.id for v in versions}):
        outbox.enqueue(session, agreement_id=agreement_id, parties=parties)


def _require_party(doc: documents.AgreementDocument, node_id: str) -> None:
    if not doc.is_party(node_id):
        raise NotAParty(doc.id, node_id)


def _state(version: Version, runtime: AgreementsRuntime) -> State:
    return version.facts.state_at(runtime.now())


def _event(
    runtime: AgreementsRuntime, doc: documents.AgreementDocument, kind: str, **extra: str
) -> tuple[dict[str, Any], str]:
    event: dict[str, Any] = {
        "agreement": doc.id,
        "version": doc.version,
        "document_sha256": doc.sha256,
        "type": kind,
        "by": runtime.node_id,
        "at": documents.rfc3339(runtime.now()),
        **extra,
    }
    return event, signatures.sign(event, runtime.keys.active, typ=signatures.EVENT_TYP)


def _ingest_own(
    session: Session,
    *,
    runtime: AgreementsRuntime,
    document: documents.AgreementDocument,
    signed: Iterable[tuple[str, str]] = (),
    events: Iterable[tuple[dict[str, Any], str]] = (),
) -> None:
    store.ingest(
        session,
        document=document,
        signed=list(signed),
        events=list(events),
        resolver=runtime.resolver,
        origin="local",
        now=runtime.now(),
    )


def summarise(facts: VersionFacts, *, now: datetime) -> AgreementSummary:
    """The register's one-line view of a version at ``now``."""
    doc = facts.document
    return AgreementSummary(
        agreement=doc.id,
        version=doc.version,
        sha256=doc.sha256,
        title=doc.title,
        kind=doc.kind,
        state=str(facts.state_at(now)),
        parties=list(doc.parties),
        missing_signatures=facts.missing_signatures,
        withdrawn=[p for p in doc.parties if p in facts.withdrawn],
        valid_from=doc.valid_from,
        valid_until=doc.valid_until,
        review_by=facts.review_by,
        attention=[
            AttentionPublic(kind=a.kind, due=a.due, days_left=a.days_left, threshold=a.threshold)
            for a in facts.attention(now)
        ],
    )


def public(version: Version, versions: list[Version], *, runtime: AgreementsRuntime) -> AgreementPublic:
    """A version in full: document, signatures, events (oldest first), and every version's state."""
    now = runtime.now()
    stored = version.stored
    return AgreementPublic(
        **summarise(version.facts, now=now).model_dump(),
        document=stored.document.raw,
        signatures=[
            SignaturePublic(node_id=s.node_id, kid=s.kid, jws=s.jws, recorded_at=s.recorded_at)
            for s in stored.signatures
        ],
        events=[
            EventPublic(
                sha256=e.sha256,
                type=e.type,
                by=e.by,
                at=documents.event_time(e.event["at"]),
                reason=e.event.get("reason"),
                review_by=date.fromisoformat(e.event["review_by"]) if "review_by" in e.event else None,
                event=e.event,
                jws=e.jws,
                recorded_at=e.recorded_at,
            )
            # By the time each party gave; equal times in the order this node recorded them.
            for _, e in sorted(
                enumerate(stored.events), key=lambda item: (documents.event_time(item[1].event["at"]), item[0])
            )
        ],
        versions=[
            VersionRef(version=v.document.version, sha256=v.document.sha256, state=str(v.facts.state_at(now)))
            for v in versions
        ],
    )
