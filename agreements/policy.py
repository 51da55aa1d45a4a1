"""The policy decision: may ``requester`` have ``dataset`` from ``provider`` for ``purpose`` at time ``at``?

One function, :func:`decide`, answers for every data-serving federation route; :func:`enforce` wraps it for a
route (records the decision in the audit context and raises :class:`~agreements.errors.PolicyDenied`, a 403
carrying the reason). The answer is *permit* with the agreement id (and the grant's field allow-list and
minimum cell size), or *deny* with one reason from :class:`DenyReason`.

It has to be cheap — it runs on every federated request. :class:`PolicyStore` keeps a snapshot of every
agreement's verified, compiled facts in memory and checks freshness with one primary-key read of the
``agreement_revision`` counter, which every write bumps in its own transaction: a revocation committed by any
worker or process is seen by the very next decision everywhere, and nothing is re-verified unless its content
changed (verification is cached by content hash in :class:`~agreements.ledger.VerifiedCache`).
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from sqlalchemy import Engine
from sqlmodel import Session

from agreements import ledger
from agreements.documents import Grant
from agreements.errors import PolicyDenied
from agreements.lifecycle import State, VersionFacts
from registry.core.audit.context import AuditContext


class DenyReason(StrEnum):
    """Why a request is refused; stable codes that appear in 403 bodies and audit entries."""

    no_agreement = "no-agreement"
    not_active = "not-active"
    expired = "expired"
    suspended_review = "suspended-review"
    revoked = "revoked"
    purpose_not_granted = "purpose-not-granted"
    dataset_not_granted = "dataset-not-granted"
    not_a_party = "not-a-party"


# When several agreements could apply, the denial reported is the one closest to a permit.
_RANK = {
    DenyReason.purpose_not_granted: 0,
    DenyReason.dataset_not_granted: 1,
    DenyReason.suspended_review: 2,
    DenyReason.expired: 3,
    DenyReason.revoked: 4,
    DenyReason.not_active: 5,
    DenyReason.not_a_party: 6,
    DenyReason.no_agreement: 7,
}
_STATE_REASON = {
    State.revoked: DenyReason.revoked,
    State.expired: DenyReason.expired,
    State.suspended: DenyReason.suspended_review,
}


@dataclass(frozen=True)
class Decision:
    """A permit (``agreement_id`` names the agreement relied on) or a denial with its ``reason``.

    On a permit, ``fields`` is the grant's allow-list (``None``: every field the dataset serves) and
    ``min_cell_size`` the stricter statistics threshold the grant sets, if any. On a denial, ``agreement_id``
    names the agreement the reason is about, when there is one.
    """

    permit: bool
    provider: str
    requester: str
    dataset: str
    purpose: str
    agreement_id: str | None = None
    version: int | None = None
    reason: DenyReason | None = None
    fields: tuple[str, ...] | None = None
    min_cell_size: int | None = None


@dataclass(frozen=True)
class Snapshot:
    """Every agreement's compiled facts at one committed revision, indexed for decisions."""

    revision: int
    versions: Mapping[str, list[VersionFacts]]
    by_party: Mapping[str, list[VersionFacts]]
    by_pair: Mapping[tuple[str, str], list[VersionFacts]]

    @classmethod
    def build(
        cls, revision: int, groups: Mapping[str, list[ledger.StoredVersion]], cache: ledger.VerifiedCache
    ) -> Snapshot:
        """Compile (or fetch from the verified cache) every version and index them by agreement and party."""
        versions: dict[str, list[VersionFacts]] = {}
        by_party: dict[str, list[VersionFacts]] = {}
        by_pair: dict[tuple[str, str], list[VersionFacts]] = {}
        for agreement_id in sorted(groups):
            # Newest version first: a permit from the version in force is found before older ones are judged.
            compiled = sorted(ledger.compile_group(groups[agreement_id], cache), key=lambda v: -v.document.version)
            versions[agreement_id] = compiled
            for facts in compiled:
                parties = facts.document.parties
                for party in parties:
                    by_party.setdefault(party, []).append(facts)
                    for other in parties:
                        if other != party:
                            by_pair.setdefault((party, other), []).append(facts)
        return cls(revision, versions, by_party, by_pair)

    def decide(
        self,
        *,
        provider: str,
        requester: str,
        dataset: str,
        purpose: str,
        at: datetime,
        agreement_id: str | None = None,
    ) -> Decision:
        """The decision for one request; see :func:`decide`."""
        if agreement_id is not None:
            candidates: Iterable[VersionFacts] = self.versions.get(agreement_id, ())
        else:
            candidates = self.by_pair.get((provider, requester), ())
        best: tuple[int, DenyReason, VersionFacts] | None = None
        for facts in candidates:
            outcome = _judge(facts, provider=provider, requester=requester, dataset=dataset, purpose=purpose, at=at)
            if isinstance(outcome, DenyReason):
                if best is None or _RANK[outcome] < best[0]:
                    best = (_RANK[outcome], outcome, facts)
                continue
            fields, min_cell_size = _merge(outcome)
            return Decision(
                True,
                provider,
                requester,
                dataset,
                purpose,
                agreement_id=facts.document.id,
                version=facts.document.version,
                fields=fields,
                min_cell_size=min_cell_size,
            )
        if best is None:
            return Decision(False, provider, requester, dataset, purpose, agreement_id, reason=DenyReason.no_agreement)
        _, reason, facts = best
        return Decision(
            False,
            provider,
            requester,
            dataset,
            purpose,
            agreement_id=facts.document.id,
            version=facts.document.version,
            reason=reason,
        )

    def peers(self, node_id: str) -> set[str]:
        """Every node that shares at least one stored agreement with ``node_id``."""
        return {p for v in self.by_party.get(node_id, ()) for p in v.document.parties if p != node_id}


def _judge(
    facts: VersionFacts, *, provider: str, requester: str, dataset: str, purpose: str, at: datetime
) -> DenyReason | list[Grant]:
    document = facts.document
    if not (document.is_party(provider) and document.is_party(requester)):
        return DenyReason.not_a_party
    if provider in facts.withdrawn or requester in facts.withdrawn:
        return DenyReason.not_a_party
    state = facts.state_at(at)
    if state is not State.active:
        return _STATE_REASON.get(state, DenyReason.not_active)
    with_dataset = [g for g in facts.grants_between.get((provider, requester), ()) if dataset in g.datasets]
    if not with_dataset:
        return DenyReason.dataset_not_granted
    covering = [g for g in with_dataset if purpose in g.purposes]
    if not covering:
        return DenyReason.purpose_not_granted
    return covering


def _merge(grants: list[Grant]) -> tuple[tuple[str, ...] | None, int | None]:
    """What several grants covering the same request allow together: the union, i.e. the most permissive."""
    if any(g.fields is None for g in grants):
        fields = None
    else:
        fields = tuple(sorted({f for g in grants for f in g.fields or ()}))
    sizes = [g.min_cell_size for g in grants]
    min_cell_size = None if any(s is None for s in sizes) else min(s for s in sizes if s is not None)
    return fields, min_cell_size


class PolicyStore:
    """The node's in-memory view of its agreements for decisions; one per node (built by ``create_app``)."""

    def __init__(self, engine: Engine, cache: ledger.VerifiedCache | None = None) -> None:
        self.engine = engine
        self.cache = cache or ledger.VerifiedCache()
        self._snapshot: Snapshot | None = None
        self._lock = threading.Lock()
        self.rebuilds = 0

    def snapshot(self, session: Session | None = None) -> Snapshot:
        """The snapshot at the latest committed revision: one primary-key read when nothing changed.

        The read goes through ``session`` when the caller has one open (a request's session: no second
        connection, no pool checkout), else through a pooled connection of the store's own.
        """
        revision = ledger.read_revision(session) if session is not None else self._read_revision()
        current = self._snapshot
        if current is not None and current.revision == revision:
            return current
        with self._lock:
            current = self._snapshot
            if current is not None and current.revision >= revision:
                return current
            with Session(self.engine) as session:
                # Read the counter before the rows: the rows are then at least as new as the number says.
                revision = ledger.read_revision(session)
                groups = ledger.load(session, self.cache)
            current = Snapshot.build(revision, groups, self.cache)
            self._snapshot = current
            self.rebuilds += 1
            return current

    def _read_revision(self) -> int:
        # The DBAPI connection straight from the pool: this runs on every federated request, and SQLAlchemy's
        # Connection and result layers cost several times the query itself.
        raw = self.engine.raw_connection()
        try:
            cursor = raw.cursor()
            try:
                cursor.execute(ledger.REVISION_SQL)
                row = cursor.fetchone()
            finally:
                cursor.close()
        finally:
            raw.close()
        return int(row[0]) if row else 0

    def invalidate(self) -> None:
        """Forget the snapshot (the next decision rebuilds it); verified content stays cached."""
        self._snapshot = None


def snapshot_of(source: PolicyStore | Session, session: Session | None = None) -> Snapshot:
    """A store's cached snapshot (its freshness read through ``session`` if given), or one built from a session
    (uncached; sees that session's own uncommitted writes)."""
    if isinstance(source, Session):
        cache = ledger.VerifiedCache()
        return Snapshot.build(ledger.read_revision(source), ledger.load(source, cache), cache)
    return source.snapshot(session)


def decide(
    source: PolicyStore | Session,
    *,
    provider: str,
    requester: str,
    dataset: str,
    purpose: str,
    at: datetime,
    agreement_id: str | None = None,
    session: Session | None = None,
) -> Decision:
    """Permit only if an agreement that both nodes are (still) parties to is active at ``at`` and grants
    ``dataset`` from ``provider`` to ``requester`` for ``purpose``; otherwise deny with the closest reason.

    With ``agreement_id`` (the ``agreement`` claim of a request token) only that agreement is considered.
    ``source`` is the node's :class:`PolicyStore` (cached; what routes use — pass the request's ``session``
    too, and the freshness check rides on it) or a session (uncached; sees writes not yet committed — for
    tools and tests).
    """
    return snapshot_of(source, session).decide(
        provider=provider, requester=requester, dataset=dataset, purpose=purpose, at=at, agreement_id=agreement_id
    )


def enforce(
    audit: AuditContext | None,
    source: PolicyStore | Session,
    *,
    provider: str,
    requester: str,
    dataset: str,
    purpose: str,
    at: datetime,
    agreement_id: str | None = None,
    session: Session | None = None,
) -> Decision:
    """:func:`decide`, recorded in the request's audit context; raises :class:`PolicyDenied` (403) on a denial."""
    decision = decide(
        source,
        provider=provider,
        requester=requester,
        dataset=dataset,
        purpose=purpose,
        at=at,
        agreement_id=agreement_id,
        session=session,
    )
    if audit is not None:
        audit.dataset, audit.purpose = dataset, purpose
        audit.agreement = decision.agreement_id or agreement_id
        if decision.permit:
            audit.permit()
        else:
            audit.deny(str(decision.reason))
    if not decision.permit:
        raise PolicyDenied(
            str(decision.reason),
            provider=provider,
            requester=requester,
            dataset=dataset,
            purpose=purpose,
            agreement_id=decision.agreement_id or agreement_id,
        )
    return decision


def recipients_for(
    source: PolicyStore | Session,
    *,
    provider: str,
    dataset: str,
    purpose: str,
    at: datetime,
    session: Session | None = None,
) -> dict[str, Decision]:
    """Peers an active agreement lets ``provider`` (this node) answer for ``dataset`` and ``purpose``, with the
    permit each rests on."""
    snapshot = snapshot_of(source, session)
    found: dict[str, Decision] = {}
    for peer in sorted(snapshot.peers(provider)):
        decision = snapshot.decide(provider=provider, requester=peer, dataset=dataset, purpose=purpose, at=at)
        if decision.permit:
            found[peer] = decision
    return found


def providers_for(
    source: PolicyStore | Session,
    *,
    requester: str,
    dataset: str,
    purpose: str,
    at: datetime,
    session: Session | None = None,
) -> dict[str, Decision]:
    """Peers an active agreement lets ``requester`` (this node) ask for ``dataset`` and ``purpose`` — the capacity
    fan-out's list — with the permit (and agreement id for the request token) each rests on."""
    snapshot = snapshot_of(source, session)
    found: dict[str, Decision] = {}
    for peer in sorted(snapshot.peers(requester)):
        decision = snapshot.decide(provider=peer, requester=requester, dataset=dataset, purpose=purpose, at=at)
        if decision.permit:
            found[peer] = decision
    return found
