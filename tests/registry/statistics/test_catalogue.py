"""The table catalogue: complete cubes, consistent totals, children counted once, rows valid against their schema."""

from datetime import date
from itertools import product

import pytest
from jsonschema import Draft202012Validator

from registry.statistics.catalogue import (
    AGE_BANDS,
    CEASED,
    CEASED_GROUPS,
    ENGLAND,
    LEGAL_STATUS_GROUPS,
    LOOKED_AFTER,
    NEEDS,
    STARTED,
    TABLES,
    TOTAL,
    age_band,
    build_cubes,
    counted,
    publish,
    row_schema,
    table,
)
from registry.statistics.disclosure import protect, threshold_for
from registry.statistics.ssda903 import CIN_CODES, LS_CODES, REC_CODES, SHORT_BREAK_LS, Episode, read_episodes
from registry.statistics.synth import write_episodes
from tests.registry.statistics.disclosure_checks import assert_safe

REGION = "E12000008"  # South East
LAS = ("E06000035", "E06000036", "E10000016")  # Medway, Bracknell Forest, Kent
YEAR = 2025
SALT = b"catalogue-test-salt-0123456789"


@pytest.fixture(scope="module")
def episodes(tmp_path_factory: pytest.TempPathFactory) -> tuple[Episode, ...]:
    """Synthetic episodes for a small, a middling and a large LA of one region."""
    tmp = tmp_path_factory.mktemp("episodes")
    found: list[Episode] = []
    for n, la in enumerate(LAS):
        path = tmp / f"{la}.csv"
        write_episodes(path, la=la, year=YEAR, children=(40, 150, 400)[n], seed=5)
        found.extend(read_episodes(path, la=la, year=YEAR, salt=SALT))
    return tuple(found)


def episode(**fields: object) -> Episode:
    base: dict[str, object] = {
        "la": LAS[0], "year": YEAR, "child": "p1", "sex": "F", "birth_month": date(2012, 1, 1), "ethnic": "WBRI",
        "uasc": False, "decom": date(2024, 6, 1), "rne": "S", "ls": "C2", "cin": "N1", "place": "U6",
        "place_provider": "PR1", "dec": None, "rec": None, "reason_place_change": None, "home_district": "ME1",
        "placement_district": "ME2", "urn": "SC123456", "placement_group": "fostering", "age_at_31_march": 13,
        "outside_la": False, "at_distance": False,
    }  # fmt: skip
    return Episode(**(base | fields))


class TestCubes:
    def test_every_cube_is_complete(self, episodes) -> None:
        for cube in build_cubes(episodes, year=YEAR, las=LAS, total=REGION):
            combinations = set(product(*(d.categories for d in cube.dimensions)))
            assert set(cube.counts) == combinations, cube.name

    def test_every_breakdown_adds_up_to_the_same_la_totals(self, episodes) -> None:
        cubes = build_cubes(episodes, year=YEAR, las=LAS, total=REGION)
        by_measure: dict[str, dict[str, int]] = {}
        for cube in cubes:
            totals = {la: sum(v for cell, v in cube.counts.items() if cell[0] == la) for la in LAS}
            assert by_measure.setdefault(cube.measure, totals) == totals, cube.name
        found = counted(episodes, year=YEAR, las=LAS)
        for measure, totals in by_measure.items():
            assert totals == {la: sum(e.la == la for e in found[measure]) for la in LAS}
        assert all(v > 0 for totals in by_measure.values() for v in totals.values())

    def test_the_catalogue_has_the_issue_tables(self) -> None:
        assert [t.name for t in TABLES] == [
            "cla-placement-group", "cla-age-band", "cla-sex", "cla-legal-status", "cla-category-of-need",
            "cla-uasc", "cla-placement-location", "started-category-of-need", "ceased-reason",
        ]  # fmt: skip
        assert table("cla-age-band").breakdowns[0].categories == AGE_BANDS
        with pytest.raises(KeyError):
            table("adoptions")

    @pytest.mark.parametrize(("year", "sexes"), [(2024, ("female", "male")), (2025, ("female", "male", "unknown"))])
    def test_categories_that_did_not_yet_exist_are_left_out(self, year, sexes) -> None:
        (cube,) = [c for c in build_cubes([], year=year, las=LAS, total=REGION) if c.name == "cla-sex"]
        assert cube.dimensions[1].categories == sexes

    def test_one_table_builds_alone_as_in_the_release(self, episodes) -> None:
        alone = table("ceased-reason").build(episodes, year=YEAR, las=LAS, total=REGION)
        assert alone == build_cubes(episodes, year=YEAR, las=LAS, total=REGION)[-1]

    @pytest.mark.parametrize(
        ("las", "total", "message"),
        [(("E06000035", "E08000003"), REGION, "in that region"), (LAS, "E12000099", "English region"),
         (("E99999999",), None, "ONS code"), ((), None, "at least one")],
    )  # fmt: skip
    def test_a_release_must_be_one_area(self, las, total, message) -> None:
        with pytest.raises(ValueError, match=message):
            build_cubes([], year=YEAR, las=las, total=total)

    def test_an_episode_from_outside_the_release_is_refused(self) -> None:
        with pytest.raises(ValueError, match="another collection year or LA"):
            build_cubes([episode(la="E08000003")], year=YEAR, las=LAS, total=REGION)
        with pytest.raises(ValueError, match="another collection year or LA"):
            build_cubes([episode(year=2024)], year=YEAR, las=LAS, total=REGION)


class TestCounting:
    def test_a_child_is_counted_once_on_their_first_start_and_last_ceasing(self) -> None:
        periods = [
            episode(decom=date(2024, 5, 1), dec=date(2024, 7, 1), rec="E4A", cin="N4"),
            episode(decom=date(2024, 9, 1), dec=date(2025, 1, 1), rec="E11", cin="N1"),
            episode(decom=date(2025, 2, 1), cin="N5"),
        ]
        found = counted(periods, year=YEAR, las=LAS)
        assert [e.cin for e in found[STARTED]] == ["N4"]
        assert [e.rec for e in found[CEASED]] == ["E11"]
        assert [e.cin for e in found[LOOKED_AFTER]] == ["N5"]

    def test_a_change_of_episode_is_neither_a_start_nor_a_ceasing(self) -> None:
        chain = [
            episode(decom=date(2023, 5, 1), dec=date(2024, 10, 1), rec="X1"),
            episode(decom=date(2024, 10, 1), rne="P"),
        ]
        found = counted(chain, year=YEAR, las=LAS)
        assert (len(found[STARTED]), len(found[CEASED]), len(found[LOOKED_AFTER])) == (0, 0, 1)

    def test_short_breaks_are_left_out(self) -> None:
        breaks = [episode(ls="V3"), episode(child="p2", ls="V4", dec=date(2024, 8, 1), rec="E8")]
        assert all(not v for v in counted(breaks, year=YEAR, las=LAS).values())

    @pytest.mark.parametrize(
        ("age", "band"),
        [(0, "under 1"), (1, "1 to 4"), (4, "1 to 4"), (5, "5 to 9"), (9, "5 to 9"), (10, "10 to 15"),
         (15, "10 to 15"), (16, "16 and over"), (17, "16 and over")],
    )  # fmt: skip
    def test_age_bands_take_the_lower_bound(self, age, band) -> None:
        assert age_band(age) == band

    @pytest.mark.parametrize(
        ("groups", "codes"),
        [(CEASED_GROUPS, REC_CODES - {"X1"}), (LEGAL_STATUS_GROUPS, LS_CODES - SHORT_BREAK_LS), (NEEDS, CIN_CODES)],
    )
    def test_every_code_that_is_counted_has_exactly_one_category(self, groups, codes) -> None:
        assert set(groups) == codes

    def test_a_negative_age_is_refused(self) -> None:
        with pytest.raises(ValueError, match="negative"):
            age_band(-1)

    @pytest.mark.parametrize(
        ("outside_la", "at_distance", "location", "distance"),
        [(False, False, "inside home LA", "20 miles or less"), (True, True, "outside home LA", "over 20 miles"),
         (None, None, "not recorded", "not recorded")],
    )  # fmt: skip
    def test_location_and_distance_say_when_they_were_not_recorded(self, outside_la, at_distance, location, distance):
        cube = table("cla-placement-location").build(
            [episode(outside_la=outside_la, at_distance=at_distance)], year=YEAR, las=LAS, total=REGION
        )
        assert cube.counts[(LAS[0], location, distance)] == 1


class TestPublish:
    def test_every_row_is_valid_against_its_tables_schema(self, episodes) -> None:
        rows = publish(episodes, year=YEAR, las=LAS, total=REGION)
        for spec in TABLES:
            schema = row_schema(spec)
            Draft202012Validator.check_schema(schema)
            validator = Draft202012Validator(schema)
            assert rows[spec.name]
            for row in rows[spec.name]:
                assert not list(validator.iter_errors(row)), row

    def test_regional_rows_are_rounded_and_la_rows_are_exact(self, episodes) -> None:
        rows = publish(episodes, year=YEAR, las=LAS, total=REGION)["cla-placement-group"]
        regional = [r for r in rows if r["geographic_level"] == "Regional"]
        assert regional and all(r["number"] == "c" or int(r["number"]) % 10 == 0 for r in regional)
        kent = next(r for r in rows if r["area_code"] == "E10000016" and r["placement_group"] == TOTAL)
        cla_in_kent = sum(e.la == "E10000016" for e in counted(episodes, year=YEAR, las=LAS)[LOOKED_AFTER])
        assert (kent["number"], kent["percent"], kent["area_name"]) == (str(cla_in_kent), "100", "Kent")

    def test_a_suppressed_count_has_a_suppressed_percentage(self, episodes) -> None:
        rows = [r for rs in publish(episodes, year=YEAR, las=LAS, total=REGION).values() for r in rs]
        hidden = [r for r in rows if r["number"] == "c"]
        assert hidden and all(r["percent"] == "c" for r in hidden)

    def test_las_that_sent_nothing_and_the_area_total_are_x(self, episodes) -> None:
        present = [e for e in episodes if e.la != "E06000036"]
        rows = publish(present, year=YEAR, las=LAS[::2], total=REGION, missing=("E06000036",))["cla-uasc"]
        unavailable = {r["area_code"] for r in rows if r["number"] == "x"}
        assert unavailable == {"E06000036", REGION}
        assert all(r["percent"] == "x" for r in rows if r["area_code"] in unavailable)
        assert len(rows) == 4 * 3

    def test_no_figure_is_ever_blank(self, episodes) -> None:
        for rows in publish(episodes, year=YEAR, las=LAS, total=ENGLAND, min_cell_size=10).values():
            assert all(v not in ("", None) for row in rows for v in row.values())


class TestCatalogueRelease:
    @pytest.mark.parametrize("min_cell_size", [None, 10])
    def test_the_whole_release_passes_the_outside_disclosure_check(self, episodes, min_cell_size) -> None:
        sparse = [e for e in episodes if int(e.child, 16) % 3 == 0]  # small counts, plenty to suppress
        cubes = build_cubes(sparse, year=YEAR, las=LAS, total=REGION)
        assert_safe(cubes, protect(cubes, min_cell_size=min_cell_size), threshold_for(min_cell_size))
