from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlmodel import Session

from registry.capacity import board, service
from registry.capacity.secure_models import (
    BoardHome,
    SecureHomeCreate,
)
from registry.capacity.synth import synth_secure_homes
from registry.core.domain import local_authorities

NOW = datetime(2026, 3, 2, 9, 30, tzinfo=UTC)
FIELDS = ("approved_places", "welfare_beds", "justice_beds", "beds_free")


def national_set(seed: int) -> list[BoardHome]:
    return [
        BoardHome.model_validate(
            {
                **home.model_dump(),
                "node_id": "rcc-x",
                "region_code": local_authorities()[home.la_code].region_code,
                "stale": NOW - home.as_of > timedelta(hours=24),
            }
        )
        for home in synth_secure_homes(seed=seed, now=NOW)
    ]


class TestSummarise:
    @pytest.mark.parametrize("seed", [1, 2, 3])
    def test_totals_are_the_sums_of_the_homes_by_region_and_for_england(self, seed: int) -> None:
        homes = national_set(seed)
        result = board.summarise(homes, now=NOW, node_id="rcc-national", scope="national")
        for field in FIELDS:
            assert getattr(result.england, field) == sum(getattr(h, field) for h in homes)
            assert sum(getattr(r, field) for r in result.regions) == getattr(result.england, field)
            for region in result.regions:
                in_region = [h for h in homes if h.region_code == region.region_code]
                assert getattr(region, field) == sum(getattr(h, field) for h in in_region)
        assert result.england.homes == len(homes) == sum(r.homes for r in result.regions)
        assert result.england.beds_free_female == sum(h.beds_free_by_sex.female for h in homes)
        assert result.england.stale_homes == sum(h.stale for h in homes)
        assert result.england.oldest_as_of == min(h.as_of for h in homes)

    def test_beds_by_age_count_only_homes_taking_that_age(self) -> None:
        homes = national_set(1)
        result = board.summarise(homes, now=NOW, node_id="rcc-national", scope="national")
        for row in result.by_age:
            taking = [h for h in homes if h.age_range.min_age <= row.age <= h.age_range.max_age]
            assert row.female == sum(h.beds_free_by_sex.female for h in taking)
            assert row.male == sum(h.beds_free_by_sex.male for h in taking)
        assert [row.age for row in result.by_age] == list(range(10, 18))

    def test_a_region_asked_for_is_listed_even_with_no_home(self) -> None:
        result = board.summarise([], now=NOW, node_id="rcc-london", scope="region", regions=["E12000007"])
        assert [(r.region_code, r.region_name, r.homes) for r in result.regions] == [("E12000007", "London", 0)]
        assert result.england.beds_free == 0


@pytest.mark.postgres
class TestSecureBedBoard:
    def test_the_node_board_counts_every_current_home_it_holds(self, session: Session) -> None:
        homes = [
            h for h in synth_secure_homes(seed=5, now=NOW) if local_authorities()[h.la_code].region_code == "E12000008"
        ]
        for home in homes:
            service.put_secure_home(session, home.urn, SecureHomeCreate.model_validate(home.model_dump()), now=NOW)
        session.commit()
        result = board.secure_bed_board(session, now=NOW, node_id="rcc-se", region_code="E12000008")
        assert result.england.homes == len(homes) == 2
        assert result.england.beds_free == sum(h.beds_free for h in homes)
        assert [r.region_code for r in result.regions] == ["E12000008"]
        assert {h.node_id for h in result.homes} == {"rcc-se"}
