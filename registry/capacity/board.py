"""The secure-bed board: free beds in secure children's homes by sex and age, totals by region and for England.

:func:`summarise` is pure, over homes from anywhere, so the national board (phase 2: homes gathered from every
region under agreements) adds up exactly as a regional one does; :func:`secure_bed_board` feeds it this
node's own register. Expired reports are never counted (they are never read); stale ones (over 24 hours old)
are counted and flagged, per home and as ``stale_homes`` in every total.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Literal

from sqlmodel import Session

from registry.capacity.models import (
    PeerReport,
)
from registry.capacity.secure_models import (
    SECURE_HOME_STALE_AFTER,
    AgeBeds,
    BedCounts,
    BoardHome,
    RegionBeds,
    SecureBedBoard,
    SecureHomePublic,
)
from registry.capacity.service import list_secure_homes
from registry.core import domain

SECURE_AGES = range(10, 18)


def _add(counts: BedCounts, home: SecureHomePublic) -> None:
    counts.homes += 1
    counts.approved_places += home.approved_places
    counts.welfare_beds += home.welfare_beds
    counts.justice_beds += home.justice_beds
    counts.beds_free += home.beds_free
    counts.beds_free_female += home.beds_free_by_sex.female
    counts.beds_free_male += home.beds_free_by_sex.male
    counts.stale_homes += int(home.stale)
    if counts.oldest_as_of is None or home.as_of < counts.oldest_as_of:
        counts.oldest_as_of = home.as_of


def summarise(
    homes: Sequence[BoardHome],
    *,
    now: datetime,
    node_id: str,
    scope: Literal["region", "national"],
    regions: Iterable[str] = (),
    peers: Sequence[PeerReport] = (),
) -> SecureBedBoard:
    """The board over ``homes``; every region in ``regions`` gets a row even when it holds no home."""
    names = domain.regions()
    by_region = {code: RegionBeds(region_code=code, region_name=names.get(code, code)) for code in regions}
    england = BedCounts()
    for home in homes:
        code = home.region_code
        row = by_region.setdefault(code, RegionBeds(region_code=code, region_name=names.get(code, code)))
        _add(row, home)
        _add(england, home)
    by_age = [
        AgeBeds(
            age=age,
            female=sum(h.beds_free_by_sex.female for h in homes if h.age_range.min_age <= age <= h.age_range.max_age),
            male=sum(h.beds_free_by_sex.male for h in homes if h.age_range.min_age <= age <= h.age_range.max_age),
        )
        for age in SECURE_AGES
    ]
    return SecureBedBoard(
        scope=scope,
        node_id=node_id,
        generated_at=now,
        stale_after_hours=int(SECURE_HOME_STALE_AFTER.total_seconds() // 3600),
        homes=sorted(homes, key=lambda h: (h.region_code, h.name, h.urn)),
        regions=[by_region[code] for code in sorted(by_region)],
        england=england,
        by_age=by_age,
        peers=list(peers),
    )


def secure_bed_board(
    session: Session,
    *,
    now: datetime,
    node_id: str,
    region_code: str | None,
    scope: Literal["region"] = "region",
) -> SecureBedBoard:
    """This node's own board (``scope=region``): the homes in its register, its region always listed.

    ``scope=national`` is the federation's to answer (phase 2), from every region's homes via :func:`summarise`.
    """
    homes = [
        BoardHome.model_construct(**dict(home), node_id=node_id) for home in list_secure_homes(session, now=now).items
    ]
    return summarise(homes, now=now, node_id=node_id, scope=scope, regions=[region_code] if region_code else ())
