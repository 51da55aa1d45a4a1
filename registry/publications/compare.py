"""The "shine a light" views: fee caps and placement protocols of every region this node holds, side by side.

Both read whatever documents the node holds — its own now, peers' once phase 2 stores them — in force on
the date asked (today by default). A document whose signature does not verify is left out of the table and
named under ``unverified``, so a tampered row can never quietly skew a comparison.
"""

from __future__ import annotations

import statistics
from datetime import date
from decimal import Decimal
from typing import Any

from sqlmodel import Session

from registry.core.domain import english_regions, local_authorities
from registry.publications.feecaps import PENNY, HeldCap, load_fee_caps, reference
from registry.publications.kinds import Kind
from registry.publications.models import (
    DutyCell,
    DutyRow,
    DutyTiming,
    FeeCapComparison,
    FeeCapRow,
    ProtocolColumn,
    ProtocolComparison,
    PublicationRef,
)
from registry.publications.service import Held, document_of, list_latest
from registry.publications.signatures import Keys, verify_version
from schemas import NeedLevel, SettingType

# The order the placement-protocol schema lists them in: the host authority first, regulators last.
_NOTIFY_ORDER = [
    "host-authority",
    "host-education",
    "host-health",
    "virtual-school",
    "youth-justice-service",
    "police",
    "ofsted",
]
_HOLDER_ORDER = ["placing-authority", "provider"]


def _region_of(cap: HeldCap) -> str | None:
    """The region a cap is for: as it says, else the one region all its LAs are in, else its node's."""
    if cap.region_code:
        return cap.region_code
    regions = {la.region_code for code in cap.la_codes if (la := local_authorities().get(code))}
    return regions.pop() if len(regions) == 1 else cap.held.region_code


def compare_fee_caps(
    session: Session, *, setting_type: SettingType, need_level: NeedLevel, on: date, keys: Keys | None = None
) -> FeeCapComparison:
    """Every cap in force on ``on`` for the setting type and need level, with its difference from the median."""
    caps = load_fee_caps(session, on=on, keys=keys, upcoming=False)
    key = (setting_type.value, need_level.value)
    pricing = [cap for cap in caps.in_force if key in cap.caps]
    median = statistics.median([cap.caps[key] for cap in pricing]).quantize(PENNY) if pricing else None
    names = english_regions()
    rows: list[FeeCapRow] = []
    for cap in pricing:
        amount = cap.caps[key]
        region = _region_of(cap)
        difference = amount - median if median is not None else Decimal(0)
        rows.append(
            FeeCapRow(
                node_id=cap.held.version.node_id,
                region_code=region,
                region_name=names.get(region) if region else None,
                covers=cap.document.get("covers", {}),
                publication=reference(cap.held, cap.document),
                max_weekly_fee=amount,
                difference_from_median=difference,
                percent_from_median=round(float(difference / median * 100), 1) if median else None,
                effective_from=cap.held.version.effective_from,
                effective_to=cap.held.version.effective_to,
            )
        )
    rows.sort(key=lambda row: (-row.max_weekly_fee, row.node_id, row.publication.id))
    covered = {row.region_code for row in rows}
    return FeeCapComparison(
        setting_type=setting_type,
        need_level=need_level,
        on=on,
        median=median,
        rows=rows,
        regions_without_cap=sorted(code for code in names if code not in covered),
        unverified=caps.unverified,
        synthetic=any(row.publication.synthetic for row in rows),
    )


def compare_placement_protocols(session: Session, *, on: date, keys: Keys | None = None) -> ProtocolComparison:
    """Protocols in force on ``on``: each one's terms, and every notification duty across all of them."""
    held, _ = list_latest(session, kind=Kind.placement_protocol, effective_on=on, limit=None)
    unverified: list[PublicationRef] = []
    protocols: list[tuple[str, Held, dict[str, Any]]] = []
    for item in held:
        document = document_of(item.version)
        if keys is not None and not verify_version(item.version, keys=keys).ok:
            unverified.append(reference(item, document))
            continue
        protocols.append((f"{item.version.node_id}/{item.version.publication_id}", item, document))

    columns = [_column(key, item, document) for key, item, document in protocols]
    duties: dict[tuple[str, str], dict[str, list[DutyCell]]] = {}
    for key, _item, document in protocols:
        for duty in document.get("notification_duties", []):
            cells = duties.setdefault((duty["notify"], duty["duty_holder"]), {})
            cells.setdefault(key, []).append(_cell(duty))
    rows = []
    for (notify, holder), cells in sorted(duties.items(), key=lambda item: _duty_order(*item[0])):
        by_protocol = {key: cells.get(key, []) for key, _item, _document in protocols}
        shapes = {tuple(_shape(cell) for cell in found) for found in by_protocol.values()}
        rows.append(DutyRow(notify=notify, duty_holder=holder, protocols=by_protocol, differs=len(shapes) > 1))
    return ProtocolComparison(
        on=on,
        protocols=columns,
        duties=rows,
        unverified=unverified,
        synthetic=any(column.publication.synthetic for column in columns),
    )


def _column(key: str, held: Held, document: dict[str, Any]) -> ProtocolColumn:
    distance = document.get("distance_placements", {})
    dispute = document.get("dispute_resolution", {})
    return ProtocolColumn(
        key=key,
        publication=reference(held, document),
        region_code=held.region_code,
        las=len(document.get("parties", {}).get("las", [])),
        placements=document.get("scope", {}).get("placements", []),
        distance_approval_by=distance.get("approval_by", ""),
        distance_consult_host_authority=bool(distance.get("consult_host_authority")),
        dispute_steps=len(dispute.get("steps", [])),
        dispute_working_days_per_step=dispute.get("working_days_per_step"),
        fee_cap=document.get("fee_cap"),
    )


def _cell(duty: dict[str, Any]) -> DutyCell:
    emergency = duty.get("emergency_timing")
    return DutyCell(
        timing=DutyTiming(**duty["timing"]),
        emergency_timing=DutyTiming(**emergency) if emergency else None,
        regulations=duty["regulations"],
        information=duty["information"],
    )


def _shape(cell: DutyCell) -> tuple[str, int, str | None, int | None]:
    """What makes two protocols' duties differ: the timings (wording and citations aside)."""
    emergency = cell.emergency_timing
    return (
        cell.timing.when,
        cell.timing.working_days,
        emergency.when if emergency else None,
        emergency.working_days if emergency else None,
    )


def _duty_order(notify: str, holder: str) -> tuple[int, int, str, str]:
    rank = _NOTIFY_ORDER.index(notify) if notify in _NOTIFY_ORDER else len(_NOTIFY_ORDER)
    holder_rank = _HOLDER_ORDER.index(holder) if holder in _HOLDER_ORDER else len(_HOLDER_ORDER)
    return rank, holder_rank, notify, holder
