"""An outside check of a protected release, written independently of registry.statistics.disclosure.

Figures are keyed and totalled from each cube's counts here, the equations are rebuilt from the tables'
shapes, and "can a suppressed figure be worked out" is answered by exact Gaussian elimination over
fractions.
"""

from fractions import Fraction
from itertools import product

from registry.statistics.disclosure import Cube, Release, Symbol

C = Symbol.confidential


def figure_key(cube: Cube, coords: tuple[str, ...]) -> tuple[str, frozenset[tuple[str, str]]]:
    return cube.measure, frozenset((d.name, c) for d, c in zip(cube.dimensions, coords, strict=True) if c != d.total)


def true_values(cube: Cube) -> dict[tuple[str, ...], int]:
    out = {}
    for coords in product(*(d.labels for d in cube.dimensions)):
        out[coords] = sum(
            v
            for cell, v in cube.counts.items()
            if all(c == d.total or c == x for d, c, x in zip(cube.dimensions, coords, cell, strict=True))
        )
    return out


def equations(cube: Cube) -> list[tuple[tuple[str, ...], list[tuple[str, ...]]]]:
    """(total, cells) for every line of the table along every dimension that has a published margin."""
    out = []
    for p, d in enumerate(cube.dimensions):
        if d.total is None:
            continue
        others = [o.labels for o in cube.dimensions[:p] + cube.dimensions[p + 1 :]]
        for rest in product(*others):
            total = (*rest[:p], d.total, *rest[p:])
            out.append((total, [(*rest[:p], c, *rest[p:]) for c in d.categories]))
    return out


def determined(rows: list[dict[object, Fraction]]) -> set[object]:
    """Unknowns fixed by the equations: those whose unit vector lies in the row space (exact arithmetic)."""
    pivots: dict[object, dict[object, Fraction]] = {}
    order = {}
    for row in rows:
        for k in row:
            order.setdefault(k, len(order))
    for row in rows:
        row = dict(row)
        for col, prow in pivots.items():
            if row.get(col):
                factor = row[col]
                for k, v in prow.items():
                    row[k] = row.get(k, Fraction(0)) - factor * v
                row = {k: v for k, v in row.items() if v}
        if not row:
            continue
        col = min(row, key=order.__getitem__)
        row = {k: v / row[col] for k, v in row.items()}
        for pc, prow in pivots.items():
            if prow.get(col):
                factor = prow[col]
                for k, v in row.items():
                    prow[k] = prow.get(k, Fraction(0)) - factor * v
                pivots[pc] = {k: v for k, v in prow.items() if v}
        pivots[col] = row
    return {col for col, row in pivots.items() if len(row) == 1}


def assert_safe(cubes: list[Cube], release: Release, threshold: int) -> None:
    """The release's guarantees, checked from the outside."""
    published: dict[object, object] = {}
    truth: dict[object, int] = {}
    lines: set[tuple[object, frozenset[object]]] = set()
    for cube, table in zip(cubes, release.tables, strict=True):
        values = true_values(cube)
        assert set(table.figures) == set(values)
        for coords, value in values.items():
            key = figure_key(cube, coords)
            shown = table.figures[coords]
            # one figure, one published value, in every table that prints it
            assert published.setdefault(key, shown) == shown, (cube.name, coords)
            truth[key] = value
            if 1 <= value <= threshold:
                assert shown == C
            rounded = any(d.rounded_total and c == d.total for d, c in zip(cube.dimensions, coords, strict=True))
            if shown != C:
                assert isinstance(shown, int)
                assert shown == (value + 5) // 10 * 10 if rounded else shown == value
            if value == 0:
                assert shown == 0  # c never hides a zero
        for total, cells in equations(cube):
            t_key, c_keys = figure_key(cube, total), [figure_key(cube, c) for c in cells]
            lines.add((t_key, frozenset(c_keys)))
    hidden = {k for k, v in published.items() if v == C}
    rows = []
    for t_key, c_keys in sorted(lines, key=repr):
        members = [t_key, *c_keys]
        n_hidden = sum(m in hidden for m in members)
        assert n_hidden != 1, "a lone suppressed figure is its line's total minus its published cells"
        if t_key not in hidden and n_hidden:
            remainder = truth[t_key] - sum(truth[c] for c in c_keys if c not in hidden)
            assert remainder > threshold, "suppressed cells may not add up to a small count"
        row = {m: Fraction(-1) for m in c_keys if m in hidden}
        if t_key in hidden:
            row[t_key] = Fraction(1)
        if row:
            rows.append(row)
    assert not determined(rows) & hidden, "a suppressed figure follows from the published ones"
