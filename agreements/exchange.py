"""What parties' nodes send each other about an agreement, minus the wire (``federation.agreements`` carries it).

:func:`outbox_for` says what to send to whom: for each version and each *other* party, one
:class:`~agreements.models.AgreementMessage` holding the document and every signature and event this node
knows (:mod:`agreements.outbox` keeps track of who still has to get it). :func:`receive` is what the inbox
route (``POST /federation/v1/agreements/inbox``) calls with the authenticated peer as ``sender_node_id``: it
verifies every signature against the parties' keys, stores what is new, and is idempotent — the same message
twice changes nothing. A sender that is not a party to the document is refused. :func:`import_bundle` is the
same path for a bundle file carried by hand.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError
from sqlmodel import Session

from agreements import documents, ledger, store
from agreements.errors import AgreementNotFound, DocumentInvalid, NotAParty
from agreements.keys import KeyResolver
from agreements.models import AgreementMessage, Bundle, ReceiveResult, SignedDocumentSignature, SignedEvent
from agreements.runtime import AgreementsRuntime
from registry.core.errors import json_pointer


@dataclass(frozen=True)
class Outgoing:
    """One message for one party's node."""

    to: str
    message: AgreementMessage


def message_for(stored: ledger.StoredVersion) -> AgreementMessage:
    """Everything this node knows about one version, as one self-contained message."""
    return AgreementMessage(
        agreement=stored.document.id,
        version=stored.document.version,
        document=stored.document.raw,
        signatures=[SignedDocumentSignature(node_id=s.node_id, jws=s.jws) for s in stored.signatures],
        events=[SignedEvent(event=e.event, jws=e.jws) for e in stored.events],
    )


def outbox_for(
    session: Session, *, runtime: AgreementsRuntime, agreement_id: str, version: int | None = None
) -> list[Outgoing]:
    """The messages to send so every other party's node knows what this node knows (one version, or all)."""
    stored = ledger.load(session, runtime.cache, agreement_id=agreement_id).get(agreement_id)
    if not stored:
        raise AgreementNotFound(agreement_id)
    if version is not None:
        stored = [s for s in stored if s.document.version == version]
        if not stored:
            raise AgreementNotFound(agreement_id, version)
    outgoing: list[Outgoing] = []
    for item in stored:
        if not item.document.is_party(runtime.node_id):
            continue
        message = message_for(item)
        outgoing.extend(Outgoing(party, message) for party in item.document.parties if party != runtime.node_id)
    return outgoing


def parse_message(message: AgreementMessage | dict[str, Any]) -> AgreementMessage:
    """The message as a model; :class:`DocumentInvalid` (422, JSON paths) if it is not one."""
    if isinstance(message, AgreementMessage):
        return message
    try:
        return AgreementMessage.model_validate(message)
    except ValidationError as exc:
        errors = [{"path": json_pointer(e["loc"]), "message": e["msg"]} for e in exc.errors()]
        raise DocumentInvalid(errors, "not an agreement message") from None


def receive(
    session: Session,
    *,
    runtime: AgreementsRuntime,
    message: AgreementMessage | dict[str, Any],
    sender_node_id: str | None,
    resolver: KeyResolver | None = None,
) -> ReceiveResult:
    """Verify and store an incoming proposal, signature or event message; idempotent.

    ``sender_node_id`` is the authenticated peer (``None`` for a bundle imported by this node's operator).
    Refused: a sender that is not a party (403 ``not-a-party``), a document this node is not a party to, a
    different document under a stored (id, version) (409), and — the whole message — any signature or event
    that is bad, by a non-party, or by a key not active for its node (422 ``signature-refused``).
    """
    parsed = parse_message(message)
    document = documents.parse(parsed.document)
    if (parsed.agreement, parsed.version) != (document.id, document.version):
        raise DocumentInvalid([{"path": "/agreement", "message": "does not match the document's id and version"}])
    if sender_node_id is not None and not document.is_party(sender_node_id):
        raise NotAParty(document.id, sender_node_id)
    if not document.is_party(runtime.node_id):
        raise NotAParty(document.id, runtime.node_id)
    return store.ingest(
        session,
        document=document,
        signed=[(s.node_id, s.jws) for s in parsed.signatures],
        events=[(e.event, e.jws) for e in parsed.events],
        resolver=resolver or runtime.resolver,
        origin=sender_node_id or "import",
        now=runtime.now(),
    )


def import_bundle(
    session: Session, *, runtime: AgreementsRuntime, bundle: Bundle, resolver: KeyResolver | None = None
) -> list[ReceiveResult]:
    """Receive every version of a bundle, oldest first (so what a version supersedes is already held)."""
    ordered = sorted(
        bundle.versions, key=lambda v: v.document.get("version", 0) if isinstance(v.document.get("version"), int) else 0
    )
    return [
        receive(
            session,
            runtime=runtime,
            message=AgreementMessage(
                agreement=bundle.agreement,
                version=item.document.get("version", 0),
                document=item.document,
                signatures=item.signatures,
                events=item.events,
            ),
            sender_node_id=None,
            resolver=resolver,
        )
        for item in ordered
    ]
