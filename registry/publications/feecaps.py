"""Fee caps in use: is weekly fee F for setting type T and need level L in LA A on date D within the cap?

The caps are the published ``fee-cap`` documents this node holds (its own now; peers' too once phase 2
copies them in), in force on the date: published, not withdrawn, ``effective_from <= D`` and no
``effective_to`` before D. When several cover the LA and price T/L, the most specific answers: a document
naming the LA beats one covering its whole region; then the later ``effective_from``; then the later
publication. Equal to the cap is within it; a penny over exceeds it. Amounts are exact decimals.

A document whose signature does not verify is never relied on: it is set aside and named in the answer.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from functools import lru_cache
from typing import Any

from sqlmodel import Session, col, select

from registry.core.domain import local_authorities
from registry.publications.kinds import Kind
from registry.publications.models import (
    CapFound,
    FeeCapCheckRequest,
    FeeCapCheckResult,
    Publication,
    PublicationRef,
    PublicationVersion,
    Verification,
)
from registry.publications.service import PUBLISHED, Held, document_of, list_latest
from registry.publications.signatures import Keys, verify_version
from schemas import NeedLevel, SettingType

PENNY = Decimal("0.01")


def exact(value: Decimal | float | int | str) -> Decimal:
    """An amount as an exact decimal (a float via its shortest repr: the number as JSON wrote it)."""
    return value if isinstance(value, Decimal) else Decimal(str(value))


def money(value: Decimal | float | int | str) -> Decimal:
    """An amount to the penny, as caps are published."""
    return exact(value).quantize(PENNY)


def reference(held: Held, document: dict[str, Any]) -> PublicationRef:
    """The pointer to exactly the signed version an answer or a table row rests on."""
    version = held.version
    return PublicationRef(
        node_id=version.node_id,
        id=version.publication_id,
        version=version.version,
        sha256=version.sha256,
        title=str(document.get("title", "")),
        synthetic=document.get("synthetic") is True,
    )


@dataclass(frozen=True)
class HeldCap:
    """One fee-cap document, parsed for checking."""

    held: Held
    document: dict[str, Any]
    region_code: str | None
    la_codes: frozenset[str]
    caps: dict[tuple[str, str], Decimal]
    verification: Verification | None

    @classmethod
    def of(cls, held: Held, verification: Verification | None) -> HeldCap:
        document, region_code, la_codes, caps = _parsed(held.version.document)
        return cls(held, document, region_code, la_codes, caps, verification)

    def covers(self, la_code: str, la_region: str) -> bool:
        """Named LAs narrow the region when both are given."""
        if self.la_codes:
            return la_code in self.la_codes
        return self.region_code == la_region

    def rank(self) -> tuple[int, date, str, str]:
        version = self.held.version
        return (1 if self.la_codes else 0, version.effective_from, version.published_at.isoformat(), version.node_id)

    def found(self, setting_type: str, need_level: str) -> CapFound:
        version = self.held.version
        return CapFound(
            max_weekly_fee=self.caps[(setting_type, need_level)],
            publication=reference(self.held, self.document),
            covers=self.document.get("covers", {}),
            effective_from=version.effective_from,
            effective_to=version.effective_to,
            signature=version.signature,
            verification=self.verification,
        )


@dataclass(frozen=True)
class FeeCaps:
    """The caps in force on one date (and those about to be), loaded once to check many fees.

    Capacity search marks every result with :meth:`within`; build one per search with :func:`load_fee_caps`.
    """

    on: date
    in_force: list[HeldCap]
    upcoming: list[HeldCap]
    unverified: list[PublicationRef]

    def find(self, setting_type: str, need_level: str, la_code: str) -> HeldCap | None:
        """The cap document that answers for T/L in the LA, or None."""
        return _best(self.in_force, setting_type, need_level, la_code)

    def within(self, *, setting_type: str, need_level: str, weekly_fee: Decimal | float | int, la: str) -> bool | None:
        """True within the cap (equal included), False over it, None when no cap covers it."""
        held = self.find(setting_type, need_level, la)
        if held is None:
            return None
        return exact(weekly_fee) <= held.caps[(setting_type, need_level)]

    def check(self, request: FeeCapCheckRequest) -> FeeCapCheckResult:
        """The full answer: outcome, the cap and its signed source, the excess, or the next cap to come."""
        setting_type, need_level = request.setting_type.value, request.need_level.value
        fee = money(request.weekly_fee)
        la = local_authorities().get(request.la)
        region = la.region_code if la else None
        place = la.name if la else request.la
        base: dict[str, Any] = {
            "setting_type": request.setting_type,
            "need_level": request.need_level,
            "weekly_fee": fee,
            "la": request.la,
            "region_code": region,
            "on": self.on,
            "unverified": self.unverified,
        }
        what = f"{setting_type} / {need_level} in {place}"
        held = self.find(setting_type, need_level, request.la)
        if held is None:
            soon = _soonest(self.upcoming, setting_type, need_level, request.la)
            detail = f"No fee cap for {what} is in force on {self.on.isoformat()}."
            if soon is not None:
                detail += (
                    f" {soon.held.version.publication_id} v{soon.held.version.version} takes effect on "
                    f"{soon.held.version.effective_from.isoformat()}."
                )
            return FeeCapCheckResult(
                outcome="no-cap",
                within_cap=None,
                upcoming=soon.found(setting_type, need_level) if soon else None,
                detail=detail,
                **base,
            )
        cap = held.caps[(setting_type, need_level)]
        source = f"{held.held.version.publication_id} v{held.held.version.version}"
        if fee <= cap:
            return FeeCapCheckResult(
                outcome="within",
                within_cap=True,
                cap=held.found(setting_type, need_level),
                detail=f"£{fee:,} a week is within the £{cap:,} cap for {what} ({source}).",
                **base,
            )
        return FeeCapCheckResult(
            outcome="exceeds",
            within_cap=False,
            cap=held.found(setting_type, need_level),
            excess=fee - cap,
            detail=f"£{fee:,} a week exceeds the £{cap:,} cap for {what} by £{fee - cap:,} ({source}).",
            **base,
        )


@lru_cache(maxsize=512)
def _parsed(text: str) -> tuple[dict[str, Any], str | None, frozenset[str], dict[tuple[str, str], Decimal]]:
    """A stored fee-cap document parsed once per process (keyed by its text: an edited row is parsed afresh).

    Callers must not change the returned document.
    """
    try:
        document = json.loads(text)
        covers = document.get("covers", {})
        caps = {(c["setting_type"], c["need_level"]): money(c["max_weekly_fee"]) for c in document.get("caps", [])}
        return document, covers.get("region_code"), frozenset(covers.get("la_codes", [])), caps
    except (ValueError, TypeError, KeyError, AttributeError, ArithmeticError):
        # Only an edited row can be unreadable; with keys given it never gets here (verification sets it aside).
        return {}, None, frozenset(), {}


def _best(caps: list[HeldCap], setting_type: str, need_level: str, la_code: str) -> HeldCap | None:
    la = local_authorities().get(la_code)
    if la is None:
        return None
    matching = [c for c in caps if (setting_type, need_level) in c.caps and c.covers(la_code, la.region_code)]
    return max(matching, key=HeldCap.rank, default=None)


def _soonest(caps: list[HeldCap], setting_type: str, need_level: str, la_code: str) -> HeldCap | None:
    la = local_authorities().get(la_code)
    if la is None:
        return None
    matching = [c for c in caps if (setting_type, need_level) in c.caps and c.covers(la_code, la.region_code)]
    return min(matching, key=lambda c: (c.held.version.effective_from, -c.rank()[0]), default=None)


def load_fee_caps(session: Session, *, on: date, keys: Keys | None = None, upcoming: bool = True) -> FeeCaps:
    """The fee caps in force on ``on`` (and, with ``upcoming``, those due to start later).

    With ``keys`` each document's signature is checked; one that fails is set aside and named in ``unverified``.
    """
    in_force, _ = list_latest(session, kind=Kind.fee_cap, effective_on=on, limit=None)
    later = _upcoming(session, on) if upcoming else []
    unverified: list[PublicationRef] = []

    def trusted(rows: list[Held]) -> list[HeldCap]:
        kept: list[HeldCap] = []
        for held in rows:
            verification = verify_version(held.version, keys=keys) if keys is not None else None
            if verification is not None and not verification.ok:
                unverified.append(reference(held, document_of(held.version)))
                continue
            kept.append(HeldCap.of(held, verification))
        return kept

    return FeeCaps(on=on, in_force=trusted(in_force), upcoming=trusted(later), unverified=unverified)


def _upcoming(session: Session, on: date) -> list[Held]:
    pv = PublicationVersion
    query = (
        select(pv, Publication.region_code)
        .join(
            Publication,
            (col(Publication.node_id) == col(pv.node_id))
            & (col(Publication.id) == col(pv.publication_id))
            & (col(Publication.latest_version) == col(pv.version)),
        )
        .where(pv.kind == Kind.fee_cap.value, pv.state == PUBLISHED, col(pv.effective_from) > on)
    )
    return [Held(version, region) for version, region in session.exec(query)]


def check_fee(
    session: Session, request: FeeCapCheckRequest, *, on: date, keys: Keys | None = None
) -> FeeCapCheckResult:
    """``POST /v1/fee-caps/check``: the answer for one fee, from verified documents when ``keys`` is given."""
    return load_fee_caps(session, on=on, keys=keys).check(request)


def fee_within_cap(
    session: Session,
    *,
    setting_type: SettingType | str,
    need_level: NeedLevel | str,
    weekly_fee: Decimal | float | int,
    la: str,
    on: date,
    keys: Keys | None = None,
) -> bool | None:
    """True if within the cap in force (equal counts as within), False if over, None if no cap covers it.

    For one fee. To mark many (a search's results), load once with :func:`load_fee_caps` and call
    :meth:`FeeCaps.within` for each: one query instead of one per result.
    """
    caps = load_fee_caps(session, on=on, keys=keys, upcoming=False)
    return caps.within(setting_type=str(setting_type), need_level=str(need_level), weekly_fee=weekly_fee, la=la)
