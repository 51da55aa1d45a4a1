"""A horizontal bar chart as server-rendered SVG: no script, no chart library, readable without colour.

Only geometry is computed here; the template draws it (escaped like any other page text). Every bar is
labelled with its value, the national median is a marked line, and the same figures are in the table beside
it, so the chart adds a picture and never holds information of its own.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

WIDTH = 720
LABEL_WIDTH = 230
VALUE_WIDTH = 110
BAR_HEIGHT = 22
GAP = 10
TOP = 28

HIGHLIGHT_PERCENT = 10.0
"""A cap this far (or further) from the national median, in per cent, is highlighted."""


@dataclass(frozen=True)
class Bar:
    """One bar: its label, value text, where it sits, and how it compares with the median."""

    label: str
    value_text: str
    y: int
    width: int
    compared: str  # "above", "below" or "near" the median


@dataclass(frozen=True)
class Chart:
    """The chart's size, bars and median line (``median_x`` None when there is no median)."""

    width: int
    height: int
    label_width: int
    bar_height: int
    bars: list[Bar]
    median_x: int | None
    median_text: str


def compared(percent: float | None) -> str:
    """``above`` / ``below`` when at least :data:`HIGHLIGHT_PERCENT` from the median, else ``near``."""
    if percent is None or abs(percent) < HIGHLIGHT_PERCENT:
        return "near"
    return "above" if percent > 0 else "below"


def bar_chart(rows: list[tuple[str, Decimal, float | None]], *, median: Decimal | None) -> Chart:
    """Bars for ``(label, amount, percent from median)`` rows, scaled to the largest amount."""
    area = WIDTH - LABEL_WIDTH - VALUE_WIDTH
    largest = max([amount for _, amount, _ in rows] + [median or Decimal(0)] + [Decimal(1)])
    bars = [
        Bar(
            label=label,
            value_text=f"£{amount:,.2f}",
            y=TOP + i * (BAR_HEIGHT + GAP),
            width=max(1, int(area * amount / largest)),
            compared=compared(percent),
        )
        for i, (label, amount, percent) in enumerate(rows)
    ]
    height = TOP + len(rows) * (BAR_HEIGHT + GAP) + GAP
    median_x = LABEL_WIDTH + int(area * median / largest) if median is not None else None
    return Chart(
        width=WIDTH,
        height=height,
        label_width=LABEL_WIDTH,
        bar_height=BAR_HEIGHT,
        bars=bars,
        median_x=median_x,
        median_text=f"National median £{median:,.2f}" if median is not None else "",
    )
