"""Bundles: an agreement's every version, signature and event as one JSON file, and how to verify one.

Anyone holding a bundle and the keys of the parties (a directory file, or a JWKS per node) can check it with
no node running (``rcc-node agreements verify BUNDLE --directory FILE``). The node's own
``GET /v1/agreements/{id}/verify`` runs the same check on what it stores, so both say the same thing.
Verifying here is about *authenticity*: whether each signature is a party's and matches the exact document.
Whether the agreement is in force is the lifecycle's question (``state``), not this one's.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from sqlmodel import Session

from agreements import documents, signatures
from agreements.errors import AgreementNotFound, DocumentInvalid, EventInvalid
from agreements.keys import KeyResolver, PartyKey
from agreements.ledger import load
from agreements.models import (
    Bundle,
    BundleVersion,
    EventCheck,
    SignatureCheck,
    SignedDocumentSignature,
    SignedEvent,
    VerifyReport,
    VersionCheck,
)
from agreements.runtime import AgreementsRuntime
from agreements.store import event_rule
from registry.core.keys import b64url_decode, public_key_from_jwk
from registry.core.signing import SignatureInvalid

# (node_id, kid) -> recorded public JWK, for keys no resolver knows (the node's own stored evidence).
RecordedKeys = Callable[[str, str], dict[str, Any] | None]


def build(session: Session, *, runtime: AgreementsRuntime, agreement_id: str) -> Bundle:
    """The bundle of everything this node stores about ``agreement_id``, oldest version first."""
    stored = load(session, runtime.cache, agreement_id=agreement_id).get(agreement_id)
    if not stored:
        raise AgreementNotFound(agreement_id)
    return Bundle(
        agreement=agreement_id,
        versions=[
            BundleVersion(
                document=s.document.raw,
                sha256=s.document.sha256,
                signatures=[SignedDocumentSignature(node_id=x.node_id, jws=x.jws) for x in s.signatures],
                events=[SignedEvent(event=e.event, jws=e.jws) for e in s.events],
            )
            for s in stored
        ],
    )


def verify(session: Session, *, runtime: AgreementsRuntime, agreement_id: str) -> VerifyReport:
    """Verify what this node stores, against its key resolver (own keys and the directory).

    A key the resolver does not know (no directory yet, or a node since removed from it) is checked against
    the public key recorded when the signature was received, and the check says so (``recorded-key``).
    """
    stored = load(session, runtime.cache, agreement_id=agreement_id).get(agreement_id, [])
    recorded: dict[tuple[str, str], dict[str, Any]] = {}
    for s in stored:
        for x in s.signatures:
            recorded[(x.node_id, x.kid)] = _jwk(x.jwk)
        for e in s.events:
            recorded[(e.by, e.kid)] = _jwk(e.jwk)
    bundle = build(session, runtime=runtime, agreement_id=agreement_id)
    return verify_bundle(bundle, runtime.resolver, recorded=lambda node, kid: recorded.get((node, kid)))


def _jwk(text: str) -> dict[str, Any]:
    value: dict[str, Any] = json.loads(text)
    return value


class _Tracking:
    """A resolver that remembers which source answered (for the report's ``checked_against``)."""

    def __init__(self, primary: KeyResolver, recorded: RecordedKeys | None) -> None:
        self.primary = primary
        self.recorded = recorded
        self.source = "none"
        self.status: str | None = None

    def __call__(self, node_id: str, kid: str) -> PartyKey | None:
        found = self.primary(node_id, kid)
        if found is not None:
            self.source, self.status = "directory", found.status
            return found
        jwk = self.recorded(node_id, kid) if self.recorded is not None else None
        if jwk is not None:
            self.source, self.status = "recorded-key", None
            return PartyKey(public_key_from_jwk(jwk), "active")
        return None


def verify_bundle(bundle: Bundle, resolver: KeyResolver, *, recorded: RecordedKeys | None = None) -> VerifyReport:
    """Check every version: digest, schema, each signature (a party's? a known key? the exact bytes?) and each
    event. ``valid`` is false if anything fails; missing signatures are reported but are not failures."""
    checks: list[VersionCheck] = []
    notes: list[str] = []
    digests: dict[int, str] = {}
    for index, item in enumerate(bundle.versions):
        check = _verify_version(item, resolver, recorded, notes, index)
        checks.append(check)
        digests[check.version] = check.sha256
    for item, check in zip(bundle.versions, checks, strict=True):
        pinned = item.document.get("supersedes")
        if (
            isinstance(pinned, dict)
            and pinned.get("version") in digests
            and digests[pinned["version"]] != pinned.get("sha256")
        ):
            notes.append(f"version {check.version} supersedes a version {pinned['version']} with another digest")
            check.valid = False
        if item.document.get("id") != bundle.agreement:
            notes.append(f"version {check.version} is a document of another agreement")
            check.valid = False
    return VerifyReport(
        agreement=bundle.agreement, valid=bool(checks) and all(c.valid for c in checks), versions=checks, notes=notes
    )


def _verify_version(
    item: BundleVersion, resolver: KeyResolver, recorded: RecordedKeys | None, notes: list[str], index: int
) -> VersionCheck:
    raw = item.document
    version = raw.get("version") if isinstance(raw.get("version"), int) else 0
    try:
        doc = documents.parse(raw)
    except DocumentInvalid as exc:
        first = (exc.errors or [{"path": "", "message": "invalid"}])[0]
        notes.append(f"versions/{index}: document invalid at {first['path'] or '/'}: {first['message']}")
        return VersionCheck(
            version=int(version or 0),
            sha256=item.sha256,
            digest_ok=False,
            valid=False,
            signatures=[
                SignatureCheck(
                    node_id=s.node_id,
                    kid=None,
                    valid=False,
                    reason="document-invalid",
                    key_status=None,
                    checked_against="none",
                )
                for s in item.signatures
            ],
            events=[],
            missing_signatures=[],
        )
    digest_ok = doc.sha256 == item.sha256
    if not digest_ok:
        notes.append(f"version {doc.version}: the document's digest is {doc.sha256}, the bundle says {item.sha256}")
    sig_checks = [_check_signature(doc, s.node_id, s.jws, resolver, recorded) for s in item.signatures]
    event_checks = [_check_event(doc, e.event, e.jws, resolver, recorded) for e in item.events]
    signers = {c.node_id for c in sig_checks if c.valid}
    return VersionCheck(
        version=doc.version,
        sha256=doc.sha256,
        digest_ok=digest_ok,
        valid=digest_ok and all(c.valid for c in sig_checks) and all(c.valid for c in event_checks),
        signatures=sig_checks,
        events=event_checks,
        missing_signatures=[p for p in doc.parties if p not in signers],
    )


def _check_signature(
    doc: documents.AgreementDocument, node_id: str, jws: str, resolver: KeyResolver, recorded: RecordedKeys | None
) -> SignatureCheck:
    tracking = _Tracking(resolver, recorded)
    try:
        checked = signatures.check(
            doc.raw,
            jws,
            node_id=node_id,
            typ=signatures.DOCUMENT_TYP,
            resolver=tracking,
            parties=doc.parties,
            require_active=False,
        )
    except SignatureInvalid as exc:
        return SignatureCheck(
            node_id=node_id,
            kid=_kid(jws),
            valid=False,
            reason=exc.reason,
            key_status=tracking.status,
            checked_against=tracking.source,
        )
    return SignatureCheck(
        node_id=node_id,
        kid=checked.kid,
        valid=True,
        reason=None,
        key_status=tracking.status,
        checked_against=tracking.source,
    )


def _check_event(
    doc: documents.AgreementDocument,
    event: dict[str, Any],
    jws: str,
    resolver: KeyResolver,
    recorded: RecordedKeys | None,
) -> EventCheck:
    try:
        documents.parse_event(event)
        sha = documents.digest(event)
    except (EventInvalid, ValueError):
        return EventCheck(
            sha256="", type=str(event.get("type")), by=str(event.get("by")), valid=False, reason="event-invalid"
        )
    rule = event_rule(doc, event)
    if rule is not None:
        return EventCheck(sha256=sha, type=event["type"], by=event["by"], valid=False, reason="wrong-document")
    try:
        signatures.check(
            event,
            jws,
            node_id=event["by"],
            typ=signatures.EVENT_TYP,
            resolver=_Tracking(resolver, recorded),
            parties=doc.parties,
            require_active=False,
        )
    except SignatureInvalid as exc:
        return EventCheck(sha256=sha, type=event["type"], by=event["by"], valid=False, reason=exc.reason)
    return EventCheck(sha256=sha, type=event["type"], by=event["by"], valid=True, reason=None)


def _kid(jws: str) -> str | None:
    """The ``kid`` a JWS header claims, for the report only (never trusted)."""
    try:
        header = json.loads(b64url_decode(jws.split(".", 1)[0]))
    except (ValueError, AttributeError):
        return None
    kid = header.get("kid") if isinstance(header, dict) else None
    return kid if isinstance(kid, str) else None
