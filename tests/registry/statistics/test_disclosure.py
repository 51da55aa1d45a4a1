"""Disclosure control: no suppressed figure can be worked out from what a release publishes."""

from itertools import product

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from registry.statistics.disclosure import (
    Cube,
    Dimension,
    Symbol,
    percentage,
    protect,
    render,
    round_half_up,
    threshold_for,
)
from tests.registry.statistics.disclosure_checks import assert_safe, equations

C = Symbol.confidential
X = Symbol.unavailable
REGION = "E12000008"
LAS = ("E06000035", "E06000036", "E06000037", "E06000038")


def la_dim(n: int, total: str | None = REGION) -> Dimension:
    return Dimension("area", LAS[:n], total, rounded_total=True)


def matrix_cube(rows: list[list[int]], *, name: str = "t", measure: str = "m", total: str | None = REGION) -> Cube:
    """An LA x category table from a matrix of counts (one row per LA)."""
    cats = tuple(f"k{j}" for j in range(len(rows[0])))
    counts = {(LAS[i], cats[j]): v for i, row in enumerate(rows) for j, v in enumerate(row)}
    return Cube(name, measure, (la_dim(len(rows), total), Dimension("k", cats)), counts)


# ---------------------------------------------------------------- examples


class TestPrimarySuppression:
    @pytest.mark.parametrize(("value", "shown"), [(0, 0), (1, C), (5, C), (6, 6), (40, 40)])
    def test_counts_of_one_to_five_are_c_and_zeros_are_published(self, value, shown) -> None:
        release = protect([matrix_cube([[value, 50, 50], [50, 50, 50]])])
        assert release.table("t").figures[("E06000035", "k0")] == shown

    @pytest.mark.parametrize(("min_cell_size", "threshold"), [(None, 5), (0, 5), (3, 5), (5, 5), (10, 10)])
    def test_an_agreement_can_raise_the_threshold_but_never_lower_it(self, min_cell_size, threshold) -> None:
        assert threshold_for(min_cell_size) == threshold

    def test_a_negative_minimum_cell_size_is_refused(self) -> None:
        with pytest.raises(ValueError, match="negative"):
            threshold_for(-1)

    def test_a_raised_threshold_suppresses_more_and_keeps_every_earlier_suppression(self) -> None:
        cube = matrix_cube([[3, 8, 12, 40], [9, 7, 30, 2], [25, 6, 15, 11]])
        base, strict = protect([cube]), protect([cube], min_cell_size=10)
        hidden = {k for k, v in base.table("t").figures.items() if v == C}
        hidden_strict = {k for k, v in strict.table("t").figures.items() if v == C}
        assert hidden < hidden_strict and strict.threshold == 10
        assert_safe([cube], strict, 10)


class TestSecondarySuppression:
    def test_a_lone_suppressed_cell_gets_the_smallest_partner_in_its_row_and_column(self) -> None:
        cube = matrix_cube([[2, 30, 9], [40, 50, 60], [70, 8, 90]])
        figures = protect([cube]).table("t").figures
        hidden = sorted(k for k, v in figures.items() if v == C)
        assert hidden == [("E06000035", "k0"), ("E06000035", "k2"), ("E06000036", "k0"), ("E06000036", "k2")]
        assert_safe([cube], protect([cube]), 5)

    def test_two_tiny_cells_are_not_hidden_together(self) -> None:
        cube = matrix_cube([[1, 1, 50, 60], [1, 1, 70, 80]])
        figures = protect([cube]).table("t").figures
        remainder = 112 - sum(v for (la, k), v in figures.items() if la == "E06000035" and k != "Total" and v != C)
        assert remainder > 5
        assert_safe([cube], protect([cube]), 5)

    def test_a_cell_bridging_two_protected_blocks_is_also_protected(self) -> None:
        # Each line below has two or three 5s hidden, summing to more than 5, yet rows 1-2 minus columns 1-2
        # give the bridge (row 2, column 3) exactly. Only the exact audit sees it.
        rows = [[5, 5, 50, 50], [5, 5, 5, 50], [50, 50, 5, 5], [50, 50, 5, 5]]
        cube = matrix_cube(rows)
        release = protect([cube])
        hidden = [k for k, v in release.table("t").figures.items() if v == C]
        assert len(hidden) > 9
        assert_safe([cube], release, 5)

    def test_linked_tables_hide_a_shared_la_total_in_every_table(self) -> None:
        by_sex = Cube("sex", "cla", (la_dim(3), Dimension("sex", ("F", "M"))),
                      {("E06000035", "F"): 2, ("E06000035", "M"): 2, ("E06000036", "F"): 30, ("E06000036", "M"): 40,
                       ("E06000037", "F"): 50, ("E06000037", "M"): 60})  # fmt: skip
        by_age = Cube("age", "cla", (la_dim(3), Dimension("age", ("young", "old"))),
                      {("E06000035", "young"): 1, ("E06000035", "old"): 3, ("E06000036", "young"): 35,
                       ("E06000036", "old"): 35, ("E06000037", "young"): 55, ("E06000037", "old"): 55})  # fmt: skip
        release = protect([by_sex, by_age])
        for name in ("sex", "age"):
            figures = release.table(name).figures
            assert figures[("E06000035", "Total")] == C
            assert figures[("E06000036", "Total")] == C  # the partner that stops region minus the others
        assert_safe([by_sex, by_age], release, 5)

    def test_protection_is_deterministic(self) -> None:
        cube = matrix_cube([[3, 8, 12, 40], [9, 7, 30, 2], [25, 6, 15, 11]])
        assert protect([cube]) == protect([cube])


class TestRounding:
    @pytest.mark.parametrize(("value", "rounded"), [(0, 0), (4, 0), (5, 10), (14, 10), (15, 20), (1234, 1230)])
    def test_halves_round_up(self, value, rounded) -> None:
        assert round_half_up(value) == rounded

    def test_only_regional_figures_are_rounded(self) -> None:
        figures = protect([matrix_cube([[11, 22], [33, 44]])]).table("t").figures
        assert figures[("E06000035", "k0")] == 11 and figures[("E06000035", "Total")] == 33
        assert figures[(REGION, "k0")] == 40 and figures[(REGION, "k1")] == 70 and figures[(REGION, "Total")] == 110

    def test_without_a_published_margin_there_is_no_regional_figure(self) -> None:
        figures = protect([matrix_cube([[11, 22], [33, 44]], total=None)]).table("t").figures
        assert not [k for k in figures if k[0] == REGION]


class TestPercentageAndSymbols:
    @pytest.mark.parametrize(
        ("numerator", "denominator", "share"),
        [(1, 3, 33), (1, 2, 50), (1, 8, 13), (0, 40, 0), (1, 300, Symbol.low), (40, 40, 100),
         (C, 40, C), (40, C, C), (X, 40, X), (40, X, X), (0, 0, Symbol.not_applicable), (Symbol.low, 40, Symbol.low)],
    )  # fmt: skip
    def test_percentages_reveal_nothing_their_figures_do_not(self, numerator, denominator, share) -> None:
        assert percentage(numerator, denominator) == share

    @pytest.mark.parametrize(("figure", "text"), [(0, "0"), (120, "120"), (C, "c"), (Symbol.not_applicable, "z"),
                                                  (Symbol.unavailable, "x"), (Symbol.low, "low")])  # fmt: skip
    def test_figures_render_as_numbers_or_gss_symbols(self, figure, text) -> None:
        assert render(figure) == text


class TestCubeValidation:
    def test_an_incomplete_cube_is_refused(self) -> None:
        with pytest.raises(ValueError, match="exactly one count"):
            Cube("t", "m", (la_dim(2), Dimension("k", ("a", "b"))), {("E06000035", "a"): 1})

    def test_a_negative_count_is_refused(self) -> None:
        with pytest.raises(ValueError, match="non-negative"):
            matrix_cube([[1, -1]])

    def test_a_total_label_that_is_also_a_category_is_refused(self) -> None:
        with pytest.raises(ValueError, match="total label"):
            Dimension("k", ("a", "Total"))

    def test_linked_tables_must_agree_on_shared_dimensions_and_figures(self) -> None:
        with pytest.raises(ValueError, match="disagree on dimension"):
            protect([matrix_cube([[1, 2]], name="a"), matrix_cube([[1, 2, 3]], name="b")])
        with pytest.raises(ValueError, match="linked tables disagree"):
            protect([matrix_cube([[1, 2]], name="a"), matrix_cube([[1, 3]], name="b")])


# ---------------------------------------------------------------- properties


@st.composite
def releases(draw):
    """Random microdata cut into linked tables, as a release: LA x A, LA x B, LA x A x B, and another measure."""
    n_las = draw(st.integers(2, 4))
    a_cats, b_cats = ("a0", "a1", "a2")[: draw(st.integers(1, 3))], ("b0", "b1", "b2")[: draw(st.integers(2, 3))]
    record = st.tuples(st.integers(0, n_las - 1), st.sampled_from(a_cats), st.sampled_from(b_cats))
    records = draw(st.lists(record, max_size=90))
    starts = draw(st.lists(record, max_size=30))
    total = draw(st.sampled_from([REGION, None]))
    area = la_dim(n_las, total)
    dim_a, dim_b = Dimension("a", a_cats), Dimension("b", b_cats)

    def cube(name: str, measure: str, dims: tuple[Dimension, ...], rows: list[tuple[int, str, str]]) -> Cube:
        counts = dict.fromkeys(product(*(d.categories for d in dims)), 0)
        for la, a, b in rows:
            coords = {"area": LAS[la], "a": a, "b": b}
            counts[tuple(coords[d.name] for d in dims)] += 1
        return Cube(name, measure, dims, counts)

    cubes = [
        cube("by-a", "cla", (area, dim_a), records),
        cube("by-b", "cla", (area, dim_b), records),
        cube("by-a-b", "cla", (area, dim_a, dim_b), records),
        cube("starts-by-a", "starts", (area, dim_a), starts),
    ]
    return cubes, draw(st.sampled_from([None, 3, 5, 7, 10]))


class TestProtectionProperties:
    @settings(max_examples=100, deadline=None, database=None)
    @given(releases())
    def test_no_suppressed_figure_can_be_worked_out_from_a_release(self, release_spec) -> None:
        cubes, min_cell_size = release_spec
        release = protect(cubes, min_cell_size=min_cell_size)
        assert_safe(cubes, release, threshold_for(min_cell_size))

    @settings(max_examples=40, deadline=None, database=None)
    @given(releases())
    def test_published_la_lines_add_up(self, release_spec) -> None:
        cubes, _ = release_spec
        for cube, table in zip(cubes, protect(cubes).tables, strict=True):
            for total, cells in equations(cube):
                if total[0] == REGION:
                    continue
                shown = [table.figures[c] for c in (total, *cells)]
                if C not in shown:
                    assert shown[0] == sum(shown[1:])

    @settings(max_examples=40, deadline=None, database=None)
    @given(releases())
    def test_a_stricter_release_only_adds_suppressions(self, release_spec) -> None:
        cubes, _ = release_spec
        base, strict = protect(cubes), protect(cubes, min_cell_size=9)
        for loose, tight in zip(base.tables, strict.tables, strict=True):
            assert {k for k, v in loose.figures.items() if v == C} <= {k for k, v in tight.figures.items() if v == C}
