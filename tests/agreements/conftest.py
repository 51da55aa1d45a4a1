"""Fixtures for agreements: documents, a movable clock, and in-process parties that exchange via receive().

Storage is expensive to create (a migrated database per node), so the parties of a module share their
databases; every test starts from empty agreement tables (``clean``), with the clock back at ``START``.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator, Sequence
from contextlib import ExitStack
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, delete
from sqlmodel import Session

from agreements import documents, exchange, signatures
from agreements.keys import LocalKeys, PartyKey
from agreements.ledger import EventRecord, SignatureRecord, StoredVersion, bump_revision
from agreements.models import AgreementDelivery, AgreementEvent, AgreementSignature, AgreementVersion
from agreements.runtime import AgreementsRuntime
from registry.core.db import make_engine, upgrade
from registry.core.keys import KeyRing, public_jwk
from tests.support.databases import fresh_database

SE, GM, NAT, LDN = "rcc-south-east", "rcc-greater-manchester", "rcc-national", "rcc-london"
START = datetime(2025, 6, 1, 12, 0, tzinfo=UTC)


def party(node_id: str, organisation: str | None = None) -> dict[str, Any]:
    return {
        "node_id": node_id,
        "organisation": organisation or f"{node_id} organisation",
        "signatory_role": "Director of Children's Services",
        "contacts": {"data_protection_officer": {"name": "DPO", "email": f"dpo@{node_id}.example"}},
    }


def grant(
    provider: str, recipients: list[str], datasets: list[str], purposes: list[str], **extra: Any
) -> dict[str, Any]:
    return {"provider": provider, "recipients": recipients, "datasets": datasets, "purposes": purposes, **extra}


def document(
    agreement_id: str = "se-gm-mou",
    parties: list[str] | None = None,
    grants: list[dict[str, Any]] | None = None,
    *,
    version: int = 1,
    supersedes: dict[str, Any] | None = None,
    valid_from: str = "2025-04-01",
    valid_until: str = "2027-03-31",
    review_by: str = "2026-03-31",
    kind: str = "memorandum-of-understanding",
) -> dict[str, Any]:
    """A valid agreement document; by default SE and GM share vacancies both ways for placement search."""
    parties = parties or [SE, GM]
    if grants is None:
        grants = [
            grant(SE, [GM], ["capacity.vacancies"], ["placement-search"]),
            grant(
                GM,
                [SE],
                ["capacity.vacancies", "statistics.looked-after"],
                ["placement-search", "sufficiency-planning"],
                min_cell_size=10,
            ),
        ]
    doc: dict[str, Any] = {
        "id": agreement_id,
        "version": version,
        "title": f"Agreement {agreement_id}",
        "kind": kind,
        "parties": [party(p) for p in parties],
        "grants": grants,
        "lawful_basis": {"article_6": "public-task", "statutory_duties": ["Children Act 1989 s22G (sufficiency)"]},
        "data_items": [
            {
                "dataset": "capacity.vacancies",
                "description": "Vacancies without child data.",
                "personal_data": False,
                "special_category": False,
            }
        ],
        "retention": "P1Y",
        "security_measures": ["Signed node-to-node requests"],
        "valid_from": valid_from,
        "valid_until": valid_until,
        "review_by": review_by,
        "text": "# Memorandum\n\nThe parties share what the grants say.\n",
    }
    if kind == "data-sharing-agreement":
        doc["dpia_reference"] = "DPIA-2025-01"
    if supersedes is not None:
        doc["supersedes"] = supersedes
    return doc


def variant(doc: dict[str, Any], **changes: Any) -> dict[str, Any]:
    """A deep copy with top-level members changed."""
    out = copy.deepcopy(doc)
    out.update(changes)
    return out


@dataclass
class Clock:
    """The injectable clock: tests move it, the runtime reads it."""

    now: datetime = START

    def __call__(self) -> datetime:
        return self.now

    def move(self, **delta: float) -> None:
        self.now += timedelta(**delta)

    def set(self, when: datetime) -> None:
        self.now = when


@dataclass
class Federation:
    """Every party's current key ring, as a directory would publish it (retired keys included)."""

    rings: dict[str, KeyRing] = field(default_factory=dict)

    def __call__(self, node_id: str, kid: str) -> PartyKey | None:
        ring = self.rings.get(node_id)
        return LocalKeys(node_id, ring)(node_id, kid) if ring is not None else None

    def jwks(self) -> dict[str, Any]:
        return {node_id: ring.jwks() for node_id, ring in self.rings.items()}


@dataclass
class Party:
    """One in-process node as far as agreements go: its own database, key ring, runtime."""

    node_id: str
    engine: Engine
    key_dir: Path
    runtime: AgreementsRuntime
    federation: Federation

    def call(self, function: Any, **kwargs: Any) -> Any:
        """Run a service function in its own committed transaction, as a request would."""
        with Session(self.engine) as session:
            result = function(session, runtime=self.runtime, **kwargs)
            session.commit()
            return result

    def send_to(self, other: Party, agreement_id: str) -> list[Any]:
        """Deliver this node's outbox for ``agreement_id`` to ``other`` (the phase-2 wire, by hand)."""
        outgoing = self.call(exchange.outbox_for, agreement_id=agreement_id)
        return [
            other.call(exchange.receive, message=item.message.model_dump(mode="json"), sender_node_id=self.node_id)
            for item in outgoing
            if item.to == other.node_id
        ]

    def rotate(self) -> None:
        """Rotate the node key; the old one becomes retired (public half still published)."""
        ring = self.runtime.keys.rotate(self.key_dir)
        self.runtime.keys = ring
        self.federation.rings[self.node_id] = ring

    def clean(self) -> None:
        clean_agreements(self.engine)


def clean_agreements(engine: Engine) -> None:
    """Empty the agreement tables (the revision counter moves on, as after any write)."""
    with Session(engine) as session:
        for table in (AgreementDelivery, AgreementEvent, AgreementSignature, AgreementVersion):
            session.execute(delete(table))
        bump_revision(session)
        session.commit()


@pytest.fixture(scope="module")
def federation_keys() -> Federation:
    return Federation()


@pytest.fixture(scope="module")
def module_clock() -> Clock:
    return Clock()


@pytest.fixture(scope="module")
def parties(
    tmp_path_factory: pytest.TempPathFactory, federation_keys: Federation, module_clock: Clock
) -> Iterator[dict[str, Party]]:
    """SE, GM and the national node, each with its own migrated database, sharing one key directory."""
    with ExitStack() as stack:
        built: dict[str, Party] = {}
        for node_id in (SE, GM, NAT):
            base = tmp_path_factory.mktemp(node_id)
            url = stack.enter_context(fresh_database(base))
            upgrade(url)
            engine = make_engine(url)
            stack.callback(engine.dispose)
            ring = KeyRing.create(base / "keys")
            federation_keys.rings[node_id] = ring
            runtime = AgreementsRuntime.standalone(
                node_id=node_id, keys=ring, engine=engine, peers=federation_keys, clock=module_clock
            )
            built[node_id] = Party(node_id, engine, base / "keys", runtime, federation_keys)
        yield built


@pytest.fixture
def clock(module_clock: Clock) -> Clock:
    module_clock.set(START)
    return module_clock


@pytest.fixture
def se(parties: dict[str, Party], clock: Clock) -> Party:
    for p in parties.values():
        p.clean()
    return parties[SE]


@pytest.fixture
def gm(parties: dict[str, Party], se: Party) -> Party:
    return parties[GM]


@pytest.fixture
def nat(parties: dict[str, Party], se: Party) -> Party:
    return parties[NAT]


# --- in-memory versions (no database): for lifecycle and policy tests -------------------------------------


def signed_event(
    ring: KeyRing, by: str, doc: dict[str, Any], kind: str, at: datetime, **extra: Any
) -> tuple[dict[str, Any], str]:
    """An event about ``doc`` made and signed by ``by`` (as the service makes them)."""
    event = {
        "agreement": doc["id"],
        "version": doc["version"],
        "document_sha256": documents.digest(doc),
        "type": kind,
        "by": by,
        "at": documents.rfc3339(at),
        **extra,
    }
    if kind in ("revoked", "withdrawn", "suspended"):
        event.setdefault("reason", "test")
    return event, signatures.sign(event, ring.active, typ=signatures.EVENT_TYP)


def stored_version(
    doc: dict[str, Any],
    rings: dict[str, KeyRing],
    signers: list[str] | None = None,
    events: Sequence[tuple[dict[str, Any], str]] = (),
) -> StoredVersion:
    """A ``StoredVersion`` as the ledger would load it, signed by ``signers`` (default: every party)."""
    parsed = documents.parse(doc)
    who = list(parsed.parties) if signers is None else signers
    sigs = tuple(
        SignatureRecord(
            node_id,
            rings[node_id].active.kid,
            signatures.jwk_json(public_jwk(rings[node_id].active.public)),
            signatures.sign(doc, rings[node_id].active, typ=signatures.DOCUMENT_TYP),
            START,
        )
        for node_id in who
    )
    records = tuple(
        EventRecord(
            documents.digest(event),
            event,
            rings[event["by"]].active.kid,
            signatures.jwk_json(public_jwk(rings[event["by"]].active.public)),
            jws,
            START,
        )
        for event, jws in events
    )
    return StoredVersion(parsed, "test", START, sigs, records)


@pytest.fixture(scope="session")
def rings() -> dict[str, KeyRing]:
    """In-memory key rings for the four test nodes."""
    return {node_id: KeyRing.generate() for node_id in (SE, GM, NAT, LDN)}
