"""An agreement version's state, computed — never stored — from its signatures, its signed events and the clock.

Pure functions over plain facts, so the same answer comes out on every node, in the API, the CLI, the policy
decision and offline verification. The rules (DESIGN.md, "Agreements"):

* ``draft``: stored, nobody has signed or proposed it yet. ``proposed``: someone has, but not every party has
  signed the identical canonical document — or every party has and ``valid_from`` is still ahead.
* ``active``: every party has signed it and now is inside ``valid_from``..``valid_until`` (whole UTC days).
* ``suspended``: active, but its review date has passed (or a party suspended it) and no renewal signed by
  every remaining party has moved the review date past now. Renewals are ``renewed`` events, one per party,
  naming the same new ``review_by``.
* ``revoked``: any party signed a ``revoked`` event; it takes effect as soon as the event is stored, whatever
  the clock says. ``expired``: ``valid_until`` is behind us. ``superseded``: a later version of the same
  agreement is signed by all its parties, not revoked, and in force.

A ``withdrawn`` event ends its signer's part only: grants it provides are dropped and it is removed from other
grants' recipients; the agreement stands for the others. Warnings (``attention``) come 90 and 30 days before
the review date or the end of validity, and while a review has lapsed.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from datetime import date, datetime, timedelta
from enum import StrEnum
from functools import cached_property

from agreements.documents import AgreementDocument, Grant, day_start

WARNING_DAYS = (90, 30)


class State(StrEnum):
    """The computed states of an agreement version."""

    draft = "draft"
    proposed = "proposed"
    active = "active"
    suspended = "suspended"
    revoked = "revoked"
    expired = "expired"
    superseded = "superseded"


@dataclass(frozen=True)
class SignatureFact:
    """A stored signature over a document version, and whether it verified."""

    node_id: str
    kid: str
    valid: bool


@dataclass(frozen=True)
class EventFact:
    """A stored lifecycle event whose signature verified (unverifiable events are never facts)."""

    type: str
    by: str
    at: datetime
    sha256: str
    review_by: date | None = None
    reason: str | None = None


@dataclass(frozen=True)
class Attention:
    """Something a governance officer must act on: ``kind`` is review-due, review-lapsed or expiry-due."""

    kind: str
    due: date
    days_left: int
    threshold: int | None


@dataclass(frozen=True)
class VersionFacts:
    """Everything about one version that does not depend on the clock, derived once per content hash."""

    document: AgreementDocument
    signers: frozenset[str]
    withdrawn: frozenset[str]
    revoked_by: tuple[str, ...]
    proposed: bool
    review_by: date
    suspended: bool
    grants: tuple[Grant, ...]
    events: tuple[EventFact, ...] = ()
    superseded_at: datetime | None = field(default=None)

    @cached_property
    def grants_between(self) -> dict[tuple[str, str], tuple[Grant, ...]]:
        """Effective grants by ``(provider, recipient)``: a decision is one dictionary lookup."""
        index: dict[tuple[str, str], list[Grant]] = {}
        for g in self.grants:
            for recipient in g.recipients:
                index.setdefault((g.provider, recipient), []).append(g)
        return {pair: tuple(found) for pair, found in index.items()}

    @property
    def fully_signed(self) -> bool:
        """Every party has a valid signature over this exact canonical document."""
        return set(self.document.parties) <= self.signers

    @property
    def missing_signatures(self) -> list[str]:
        """Parties whose signature is still missing, in document order."""
        return [p for p in self.document.parties if p not in self.signers]

    @property
    def remaining_parties(self) -> list[str]:
        """Parties that have not withdrawn, in document order."""
        return [p for p in self.document.parties if p not in self.withdrawn]

    def state_at(self, now: datetime) -> State:
        """The version's state at ``now`` (aware)."""
        if self.revoked_by:
            return State.revoked
        if self.superseded_at is not None and now >= self.superseded_at:
            return State.superseded
        if now >= self.document.ends_at:
            return State.expired
        if not self.fully_signed or now < self.document.starts_at:
            return State.proposed if self.proposed or self.signers else State.draft
        if self.suspended or self.review_lapsed(now):
            return State.suspended
        return State.active

    def review_lapsed(self, now: datetime) -> bool:
        """The (renewed) review date is behind ``now``: the day after it has begun."""
        return now >= self.review_lapses_at

    @cached_property
    def review_lapses_at(self) -> datetime:
        """00:00 UTC the day after the (renewed) review date."""
        return day_start(self.review_by + timedelta(days=1))

    def attention(self, now: datetime) -> list[Attention]:
        """Warnings for an active or suspended version; nothing for the others."""
        state = self.state_at(now)
        if state not in (State.active, State.suspended):
            return []
        today = now.date()
        warnings: list[Attention] = []
        if self.review_lapsed(now):
            warnings.append(Attention("review-lapsed", self.review_by, (self.review_by - today).days, None))
        else:
            warnings.extend(_due("review-due", self.review_by, today))
        warnings.extend(_due("expiry-due", self.document.valid_until, today))
        return warnings


def _due(kind: str, due: date, today: date) -> list[Attention]:
    days = (due - today).days
    if not 0 <= days <= max(WARNING_DAYS):
        return []
    threshold = min(t for t in WARNING_DAYS if days <= t)
    return [Attention(kind, due, days, threshold)]


def compile_version(
    document: AgreementDocument, signatures: Iterable[SignatureFact], events: Iterable[EventFact]
) -> VersionFacts:
    """Derive a version's clock-independent facts from its verified signatures and events.

    Events by nodes that are not parties are ignored (they are refused on receipt; this is the second lock).
    """
    parties = set(document.parties)
    signers = frozenset(s.node_id for s in signatures if s.valid and s.node_id in parties)
    ordered = sorted((e for e in events if e.by in parties), key=lambda e: (e.at, e.sha256))
    withdrawn = frozenset(e.by for e in ordered if e.type == "withdrawn")
    revoked_by = _revokers(ordered)
    remaining = parties - withdrawn
    review_by, renewed_at = _renewal(document.review_by, ordered, remaining)
    suspensions = [e.at for e in ordered if e.type == "suspended"]
    suspended = bool(suspensions) and (renewed_at is None or renewed_at <= max(suspensions))
    grants = tuple(
        replace(g, recipients=g.recipients - withdrawn)
        for g in document.grants
        if g.provider not in withdrawn and g.recipients - withdrawn
    )
    return VersionFacts(
        document=document,
        signers=signers,
        withdrawn=withdrawn,
        revoked_by=revoked_by,
        proposed=any(e.type == "proposed" for e in ordered),
        review_by=review_by,
        suspended=suspended,
        grants=grants,
        events=tuple(ordered),
    )


def _revokers(events: Sequence[EventFact]) -> tuple[str, ...]:
    """Parties whose revocation counts: a party that has withdrawn can no longer end it for the others."""
    gone: set[str] = set()
    revokers: dict[str, None] = {}
    for event in events:
        if event.type == "withdrawn":
            gone.add(event.by)
        elif event.type == "revoked" and event.by not in gone:
            revokers[event.by] = None
    return tuple(revokers)


def _renewal(review_by: date, events: Sequence[EventFact], remaining: set[str]) -> tuple[date, datetime | None]:
    """The latest review date every remaining party has renewed to, and when the last of them did."""
    by_date: dict[date, dict[str, datetime]] = {}
    for event in events:
        if event.type == "renewed" and event.review_by is not None:
            by_date.setdefault(event.review_by, {})[event.by] = event.at
    complete = [(day, max(who.values())) for day, who in by_date.items() if remaining and remaining <= set(who)]
    if not complete:
        return review_by, None
    best_day = max(day for day, _ in complete)
    last_at = max(at for _, at in complete)
    return max(review_by, best_day), last_at


def link_versions(versions: Iterable[VersionFacts]) -> list[VersionFacts]:
    """Set ``superseded_at`` across the versions of one agreement id: when the earliest later version that is
    signed by all its parties and not revoked comes into force."""
    ordered = sorted(versions, key=lambda v: v.document.version)
    linked: list[VersionFacts] = []
    for index, facts in enumerate(ordered):
        successors = [
            later.document.starts_at for later in ordered[index + 1 :] if later.fully_signed and not later.revoked_by
        ]
        linked.append(replace(facts, superseded_at=min(successors) if successors else None))
    return linked
