"""Disclosure control for the statistics register: every rule in one place.

The rules apply to one *release*: every table published together, for one year, to one recipient.

1. **Primary suppression.** Every published figure — cell, subtotal or total — whose true value is 1 to T
   is shown as ``c``. T is 5; an agreement's minimum cell size can raise it, never lower it.
2. **Secondary suppression.** A release is a system of linear equations: in every table, along every
   dimension, a margin equals the sum of the figures it totals. Tables counting the same thing (the same
   *measure*) that share a dimension print the same figures — every "looked after at 31 March" table
   carries the same LA totals and the same regional total — so such a figure is one unknown however
   many tables print it, and it is published or suppressed in all of them alike. At the end:

   a. no equation holds exactly one suppressed figure (it would be the published total minus the
      published cells, or the published cells summed);
   b. where an equation's total is published, the cells it suppresses sum to more than T: two cells of
      1 hidden together still say "two children";
   c. no suppressed figure is determined by any combination of the equations. This is checked exactly,
      by reduced row echelon form over the rationals, and catches chains that (a) and (b) miss, such as
      one cell bridging two otherwise protected blocks.

   The algorithm is iterative and deterministic. For each equation at fault, suppress one of its
   non-zero published members: the one that leaves the fewest other equations with a lone
   suppression (so suppression does not cascade), then the smallest, then the first in catalogue
   order. Re-examine every equation that member is in, repeat to a fixed point, audit (c), repeat.
   Each step only adds suppressions and suppressing everything satisfies all three rules, so it
   terminates. Zeros are not suppressed (a true zero is published as 0, and ``c`` stands for 1 or more)
   unless no non-zero figure is left to protect a suppressed one — a last resort kept for soundness.
3. **Thresholds nest.** A release at T > 5 starts from the T = 5 pattern and adds to it, so whoever
   holds both learns nothing the less suppressed one did not already say.
4. **Rounding.** Figures that total over a rounded dimension (the geography: regional and national
   figures) are published rounded to the nearest 10, halves up; LA figures are exact. The checks in
   rule 2 treat rounded figures as if exact: rounding is extra protection, not counted on.
   A non-zero figure that rounds to 0 is ``low`` (it cannot happen while T ≥ 5).
5. **Symbols** (GSS/DfE): ``c`` confidential, ``z`` not applicable, ``x`` not available, ``low`` rounds
   to 0 but is not 0. A figure is always a number or one of these; never NULL, NA or blank.
6. **Percentages** are whole numbers, halves up, computed from the figures as published (rounded where
   they are rounded). A suppressed numerator or denominator gives ``c`` (a published percentage and
   a published count would give back the hidden one), ``x`` stays ``x``, a zero denominator gives
   ``z``, and a non-zero share under half a percent gives ``low``.

Not covered, and said so: interval attacks that use non-negativity beyond rule 2b (a linear-programming
audit as in tau-ARGUS would narrow them further); differencing against other years' releases (looked
after at 31 March this year = last year + started - ceased, approximately) — the same exposure as the
DfE's own tables.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from itertools import product
from math import gcd, prod

BASE_THRESHOLD = 5
ROUNDING_BASE = 10


class Symbol(StrEnum):
    """GSS/DfE symbols published in place of a number."""

    confidential = "c"
    not_applicable = "z"
    unavailable = "x"
    low = "low"


Published = int | Symbol


@dataclass(frozen=True)
class Dimension:
    """A dimension of a cube: closed categories and the label of its margin (None: margin not published).

    ``rounded_total`` marks the geography: figures totalling over it are regional or national, and rounded.
    """

    name: str
    categories: tuple[str, ...]
    total: str | None = "Total"
    rounded_total: bool = False

    def __post_init__(self) -> None:
        if not self.categories or len(set(self.categories)) != len(self.categories):
            raise ValueError(f"dimension {self.name!r} needs distinct categories")
        if self.total is not None and self.total in self.categories:
            raise ValueError(f"dimension {self.name!r}: the total label is also a category")

    @property
    def labels(self) -> tuple[str, ...]:
        """Every published label along this dimension: the categories, then the margin if published."""
        return self.categories if self.total is None else (*self.categories, self.total)


@dataclass(frozen=True)
class Cube:
    """A complete table of counts: one count for every combination of categories (zeros included)."""

    name: str
    measure: str
    dimensions: tuple[Dimension, ...]
    counts: Mapping[tuple[str, ...], int]

    def __post_init__(self) -> None:
        names = [d.name for d in self.dimensions]
        if not names or len(set(names)) != len(names):
            raise ValueError(f"cube {self.name!r} needs distinct dimension names")
        expected = prod(len(d.categories) for d in self.dimensions)
        cells = product(*(d.categories for d in self.dimensions))
        if len(self.counts) != expected or any(cell not in self.counts for cell in cells):
            raise ValueError(f"cube {self.name!r} must have exactly one count per combination of categories")
        if any(not isinstance(v, int) or v < 0 for v in self.counts.values()):
            raise ValueError(f"cube {self.name!r} counts must be non-negative integers")

    def coordinates(self) -> Iterator[tuple[str, ...]]:
        """Every published figure's coordinates, margins included, in catalogue order."""
        return product(*(d.labels for d in self.dimensions))

    def margins(self) -> dict[tuple[str, ...], int]:
        """True value of every published figure: cells and all their margins."""
        out = dict.fromkeys(self.coordinates(), 0)
        totals = [d.total for d in self.dimensions]
        for cell, value in self.counts.items():
            if value:
                for coords in product(*((c,) if t is None else (c, t) for c, t in zip(cell, totals, strict=True))):
                    out[coords] += value
        return out

    def is_rounded(self, coords: tuple[str, ...]) -> bool:
        """Whether the figure totals over a rounded dimension (regional or national)."""
        return any(d.rounded_total and c == d.total for d, c in zip(self.dimensions, coords, strict=True))


@dataclass(frozen=True)
class ProtectedTable:
    """A cube after disclosure control: every published figure, as a number or a symbol."""

    cube: Cube
    figures: Mapping[tuple[str, ...], Published]


@dataclass(frozen=True)
class Release:
    """The tables of one release, protected together, and the threshold they were protected at."""

    threshold: int
    tables: tuple[ProtectedTable, ...]

    def table(self, name: str) -> ProtectedTable:
        """The protected table of that name."""
        for t in self.tables:
            if t.cube.name == name:
                return t
        raise KeyError(name)


def threshold_for(min_cell_size: int | None) -> int:
    """The primary threshold: 5, or an agreement's minimum cell size when that is stricter."""
    if min_cell_size is not None and min_cell_size < 0:
        raise ValueError("a minimum cell size cannot be negative")
    return max(BASE_THRESHOLD, min_cell_size or 0)


def protect(cubes: Sequence[Cube], *, min_cell_size: int | None = None) -> Release:
    """Apply the module's rules to the tables of one release, together."""
    threshold = threshold_for(min_cell_size)
    system = _System(cubes)
    hidden = system.suppress(BASE_THRESHOLD, frozenset())
    if threshold > BASE_THRESHOLD:
        hidden = system.suppress(threshold, hidden)
    tables = []
    for cube, index in zip(cubes, system.indexes, strict=True):
        figures = {
            coords: _published(system.values[i], i in hidden, cube.is_rounded(coords)) for coords, i in index.items()
        }
        tables.append(ProtectedTable(cube, figures))
    return Release(threshold, tuple(tables))


def round_half_up(value: int, base: int = ROUNDING_BASE) -> int:
    """Nearest multiple of ``base``, halves up: DfE's rounding of regional and national figures."""
    return (value + base // 2) // base * base


def percentage(numerator: Published, denominator: Published) -> Published:
    """A whole-number share that reveals nothing its numerator and denominator do not (rule 6)."""
    if isinstance(numerator, Symbol):
        return numerator
    if isinstance(denominator, Symbol):
        return denominator if denominator in (Symbol.unavailable, Symbol.not_applicable) else Symbol.confidential
    if denominator == 0:
        return Symbol.not_applicable
    share = (200 * numerator + denominator) // (2 * denominator)
    return Symbol.low if share == 0 and numerator > 0 else share


def render(figure: Published) -> str:
    """A figure as the text a tidy file carries."""
    return str(figure) if isinstance(figure, int) else figure.value


def _published(value: int, hidden: bool, rounded: bool) -> Published:
    if hidden:
        return Symbol.confidential
    if not rounded:
        return value
    shown = round_half_up(value)
    return Symbol.low if shown == 0 and value > 0 else shown


_FigureKey = tuple[str, frozenset[tuple[str, str]]]


class _System:
    """The equations of a release over its figures; a figure shared by tables is one unknown."""

    def __init__(self, cubes: Sequence[Cube]) -> None:
        self.values: list[int] = []
        self.indexes: list[dict[tuple[str, ...], int]] = []
        self.lines: list[tuple[int, tuple[int, ...]]] = []
        keys: dict[_FigureKey, int] = {}
        dimensions: dict[tuple[str, str], Dimension] = {}
        seen_lines: set[tuple[int, tuple[int, ...]]] = set()
        for cube in cubes:
            for d in cube.dimensions:
                if dimensions.setdefault((cube.measure, d.name), d) != d:
                    raise ValueError(f"tables of measure {cube.measure!r} disagree on dimension {d.name!r}")
            index: dict[tuple[str, ...], int] = {}
            for coords, value in cube.margins().items():
                key = (cube.measure, frozenset(
                    (d.name, c) for d, c in zip(cube.dimensions, coords, strict=True) if c != d.total
                ))  # fmt: skip
                i = keys.setdefault(key, len(self.values))
                if i == len(self.values):
                    self.values.append(value)
                elif self.values[i] != value:
                    raise ValueError(f"linked tables disagree: {cube.name!r} at {coords}")
                index[coords] = i
            self.indexes.append(index)
            for line in self._cube_lines(cube, index):
                if line not in seen_lines:
                    seen_lines.add(line)
                    self.lines.append(line)
        self.lines_of: list[list[int]] = [[] for _ in self.values]
        for n, (total, cells) in enumerate(self.lines):
            for member in (total, *cells):
                self.lines_of[member].append(n)

    @staticmethod
    def _cube_lines(cube: Cube, index: dict[tuple[str, ...], int]) -> Iterator[tuple[int, tuple[int, ...]]]:
        dims = cube.dimensions
        for p, d in enumerate(dims):
            if d.total is None:
                continue
            for rest in product(*(o.labels for o in dims[:p] + dims[p + 1 :])):
                total = index[(*rest[:p], d.total, *rest[p:])]
                cells = tuple(sorted(index[(*rest[:p], c, *rest[p:])] for c in d.categories))
                yield total, cells

    def suppress(self, threshold: int, seed: frozenset[int]) -> frozenset[int]:
        """Primary suppression at ``threshold`` on top of ``seed``, then secondary to the fixed point."""
        hidden = set(seed) | {i for i, v in enumerate(self.values) if 1 <= v <= threshold}
        while True:
            self._enforce_lines(hidden, threshold)
            determined = self._determined(hidden)
            if not determined:
                return frozenset(hidden)
            hidden.add(self._partner(determined[0], hidden))

    def _enforce_lines(self, hidden: set[int], threshold: int) -> None:
        queue = deque(range(len(self.lines)))
        queued = [True] * len(self.lines)
        while queue:
            n = queue.popleft()
            queued[n] = False
            pick = self._repair(n, hidden, threshold)
            if pick is None:
                continue
            hidden.add(pick)
            for m in self.lines_of[pick]:
                if not queued[m]:
                    queued[m] = True
                    queue.append(m)

    def _repair(self, n: int, hidden: set[int], threshold: int) -> int | None:
        """The figure to suppress next for equation ``n`` (rules 2a and 2b), or None if it is safe."""
        total, cells = self.lines[n]
        hidden_cells = [c for c in cells if c in hidden]
        count = len(hidden_cells) + (total in hidden)
        values = self.values
        if count == 1:
            candidates = [m for m in (total, *cells) if m not in hidden]
        elif count and total not in hidden and sum(values[c] for c in hidden_cells) <= threshold:
            candidates = [c for c in cells if c not in hidden and values[c] > 0] or [total]
        else:
            return None
        nonzero = [m for m in candidates if values[m] > 0] or candidates
        return min(nonzero, key=lambda m: (self._new_lone(m, n, hidden), values[m], m))

    def _new_lone(self, figure: int, line: int, hidden: set[int]) -> int:
        """How many other equations suppressing ``figure`` would leave with a lone suppressed figure:
        choosing where that is fewest keeps secondary suppression from cascading across the table."""
        lone = 0
        for n in self.lines_of[figure]:
            if n != line:
                total, cells = self.lines[n]
                lone += total not in hidden and not any(c in hidden for c in cells)
        return lone

    def _determined(self, hidden: set[int]) -> list[int]:
        """Suppressed figures fixed by the equations (rule 2c): unit rows of the reduced row echelon form."""
        pivots: dict[int, dict[int, int]] = {}
        for total, cells in self.lines:
            row = {c: -1 for c in cells if c in hidden}
            if total in hidden:
                row[total] = 1
            if len(row) < 2:  # empty, or already refused by rule 2a
                continue
            for col in [c for c in row if c in pivots]:
                row = _eliminate(row, pivots[col], col)
            if not row:
                continue
            col = min(row)
            row = _normalise(row, col)
            for pc, prow in pivots.items():
                if col in prow:
                    pivots[pc] = _normalise(_eliminate(prow, row, col), pc)
            pivots[col] = row
        return sorted(col for col, row in pivots.items() if len(row) == 1)

    def _partner(self, figure: int, hidden: set[int]) -> int:
        """What to suppress so ``figure`` is no longer determined: the smallest published non-zero figure
        in an equation with it, or failing that, with the suppressed figures it is linked to."""
        visited = {figure}
        frontier = [figure]
        fallback: list[int] = []
        while frontier:
            members = {m for f in frontier for n in self.lines_of[f] for m in (self.lines[n][0], *self.lines[n][1])}
            published = [m for m in members if m not in hidden]
            nonzero = [m for m in published if self.values[m] > 0]
            if nonzero:
                return min(nonzero, key=lambda m: (self.values[m], m))
            fallback.extend(published)
            frontier = sorted(m for m in members if m in hidden and m not in visited)
            visited.update(frontier)
        if not fallback:
            raise RuntimeError("a determined figure has no published figure linked to it")
        return min(fallback)


def _eliminate(row: dict[int, int], pivot_row: dict[int, int], col: int) -> dict[int, int]:
    a, b = pivot_row[col], row[col]
    out = {k: v * a for k, v in row.items()}
    for k, v in pivot_row.items():
        out[k] = out.get(k, 0) - v * b
    return {k: v for k, v in out.items() if v}


def _normalise(row: dict[int, int], col: int) -> dict[int, int]:
    g = 0
    for v in row.values():
        g = gcd(g, v)
    if row[col] < 0:
        g = -g
    return {k: v // g for k, v in row.items()}
