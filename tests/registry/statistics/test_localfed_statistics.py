"""What ``rcc-node federation up`` gives each regional node: a signed release of synthetic episodes, made once."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import pytest
from sqlmodel import Session

from registry.cli import localfed_data as data
from registry.core.keys import KeyRing
from registry.core.settings import load_settings
from registry.statistics import service
from tests.support.jose import verify_detached
from tests.support.nodes import init_node

NORTH_WEST = "E12000002"


@pytest.fixture
def target(tmp_path: Path) -> data.Target:
    member = data.BY_ID[data.GM]  # ten boroughs: the quickest region to make
    spec = init_node(tmp_path, member.node_id, region_code=NORTH_WEST)
    settings = load_settings(data_dir=spec.data_dir)
    return data.Target(member, spec.data_dir, settings, KeyRing.load(settings.effective_key_dir))


def test_a_regional_node_gets_a_signed_release_of_its_las_once(target: data.Target) -> None:
    try:
        data._statistics(target, seed=1, today=date(2025, 6, 1))
        with Session(target.db) as session:
            release = service.get_release_or_raise(session)
            assert (release.version, release.year, release.area_code) == (1, 2025, NORTH_WEST)
            assert release.las.split() == sorted(data.GM_BOROUGHS)
            assert set(release.missing.split()) == set(service.area_las(NORTH_WEST)) - set(data.GM_BOROUGHS)
            _, signed = service.get_signed_table(session, "cla-placement-group")
            verify_detached(signed.document, signed.signature, target.keys.jwks(), "rcc-statistics+jws")
            la_rows = [r for r in signed.document["rows"] if r["geographic_level"] == "Local authority"]
            assert any(str(r["number"]).isdigit() and int(r["number"]) > 0 for r in la_rows)

        data._statistics(target, seed=2, today=date(2026, 6, 1))  # a later run keeps what the node holds
        with Session(target.db) as session:
            assert [(r.version, r.year) for r in service.list_catalogue(session).releases] == [(1, 2025)]
            assert service.imported(session) == {2025: set(data.GM_BOROUGHS)}
    finally:
        target.db.dispose()


@pytest.mark.parametrize(
    ("today", "year"),
    [(date(2026, 3, 31), 2025), (date(2026, 4, 1), 2026), (date(2026, 11, 28), 2026), (date(2027, 1, 1), 2026)],
)
def test_the_year_is_the_latest_collection_year_that_has_ended(today: date, year: int) -> None:
    assert data.latest_collection_year(today) == year
