"""Pure helpers of the pages: the bar chart's geometry and the formats people read."""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal

import pytest

from registry.ui.chart import WIDTH, bar_chart, compared
from registry.ui.render import la_name, money, region_name, when, words


class TestChart:
    @pytest.mark.parametrize(
        ("percent", "expected"),
        [(None, "near"), (0.0, "near"), (9.9, "near"), (-9.9, "near"), (10.0, "above"), (-10.0, "below")],
    )
    def test_a_cap_ten_per_cent_from_the_median_is_highlighted(self, percent: float | None, expected: str) -> None:
        assert compared(percent) == expected

    def test_bars_are_scaled_to_the_largest_and_the_median_is_placed_between(self) -> None:
        chart = bar_chart(
            [
                ("London", Decimal("6000"), 20.0),
                ("South East", Decimal("5000"), 0.0),
                ("North West", Decimal("3000"), -40.0),
            ],
            median=Decimal("5000"),
        )
        widths = [bar.width for bar in chart.bars]
        assert widths[0] > widths[1] > widths[2] > 0
        assert widths[2] * 2 == widths[0]
        assert [bar.compared for bar in chart.bars] == ["above", "near", "below"]
        assert chart.median_x is not None and chart.median_x < WIDTH
        assert chart.bars[0].value_text == "£6,000.00" and chart.median_text == "National median £5,000.00"

    def test_no_rows_draws_no_bars(self) -> None:
        chart = bar_chart([], median=None)
        assert chart.bars == [] and chart.median_x is None


class TestFormats:
    @pytest.mark.parametrize(
        ("value", "text"),
        [(Decimal("1234.5"), "£1,234.50"), (Decimal("-645"), "-£645.00"), (0, "£0.00"), (None, "\u2013")],
    )
    def test_money(self, value: Decimal | int | None, text: str) -> None:
        assert money(value) == text

    def test_times_and_dates(self) -> None:
        assert when(datetime(2026, 11, 28, 21, 30, tzinfo=UTC)) == "28 Nov 2026, 21:30 UTC"
        assert when("2026-11-28T21:30:00Z") == "28 Nov 2026, 21:30 UTC"
        assert when(date(2026, 4, 1)) == "1 Apr 2026"
        assert when(None) == "\u2013" and when("not a time") == "not a time"

    def test_names_of_places_and_words(self) -> None:
        assert region_name("E12000007") == "London" and region_name("E99") == "E99"
        assert la_name("E10000016") == "Kent"
        assert words("emotional-behavioural-difficulties") == "Emotional behavioural difficulties"
