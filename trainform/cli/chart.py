"""Terminal line charts of metric series: ``runs metrics --chart`` draws one metric of one
run, ``runs compare --metric`` one metric of several runs in the same chart.

A chart is a grid of characters, so it reads the same in colour, without colour
(``NO_COLOR``, ``--no-color``) and in a pipe: each series has its own marker (``*`` for the
first, then ``o``, ``+``, ...), and colour is only added on top. A cell that several series
reach shows ``&``. Each column shows the mean of the points whose steps fall in it, so a
series of any length costs one pass over its points, and the chart is never wider than asked.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from rich.text import Text

# The first marker is the one `runs metrics --chart` always drew.
MARKERS = "*o+x#@%=~^" + "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
SHARED = "&"  # a cell reached by more than one series
COLOURS = ("cyan", "magenta", "green", "yellow", "blue", "red")


@dataclass(frozen=True)
class Series:
    """One line of a chart: (x, y) points, x being the step. Points whose x or y is not a
    finite number are left out of the drawing and counted in ``skipped``."""

    label: str
    points: tuple[tuple[float, float], ...]
    skipped: int = 0

    @classmethod
    def of(cls, label: str, points: Iterable[tuple[Any, Any]]) -> Series:
        """A series from raw (x, y) pairs, keeping those whose x and y are finite numbers."""
        kept: list[tuple[float, float]] = []
        skipped = 0
        for x, y in points:
            fx, fy = finite(x), finite(y)
            if fx is None or fy is None:
                skipped += 1
            else:
                kept.append((fx, fy))
        return cls(label, tuple(kept), skipped)


def finite(value: Any) -> float | None:
    """``value`` as a float if it is a finite int or float (not a bool), else None."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    try:
        number = float(value)
    except OverflowError:  # an int too large for a float
        return None
    return number if math.isfinite(number) else None


def metric_series(label: str, points: Sequence[dict[str, Any]], name: str) -> Series | None:
    """The points of metric ``name`` among a run's metric points (as the state store returns
    them: name, step, value, ...) as a series over their steps; a point without a numeric
    step is placed at its position among the metric's points. None if the run has no point
    of that metric at all (a metric whose values are all NaN gives an empty series)."""
    mine = [p for p in points if p.get("name") == name]
    if not mine:
        return None
    return Series.of(
        label,
        [
            (p["step"] if finite(p.get("step")) is not None else i, p.get("value"))
            for i, p in enumerate(mine)
        ],
    )


def _number(x: float) -> str:
    return str(int(x)) if x.is_integer() and abs(x) < 1e15 else f"{x:.4g}"


def _fraction(v: float, lo: float, hi: float) -> float:
    """Where ``v`` lies between ``lo`` and ``hi`` (0 to 1); 0 when they are equal."""
    if hi == lo:
        return 0.0
    span = hi - lo
    if math.isfinite(span):
        return (v - lo) / span
    return (v / 2 - lo / 2) / (hi / 2 - lo / 2)  # the span of two huge values overflows


def line_chart(
    title: str,
    series: Sequence[Series],
    width: int = 60,
    height: int = 12,
    columns: int | None = None,
) -> Text:
    """A line chart of ``series`` (x = step, y = value), with the title on its first line,
    the y range at the left, the step range under the axis and, when there is more than one
    series or one labelled apart from the title, a legend naming each series' marker.

    ``width`` is the most plot columns; ``columns``, when given, the terminal's width, which
    the plot is narrowed to fit (down to one column). There are never more columns than
    distinct steps. Series without a drawable point are named in the legend as such; with
    none at all the chart is the title and that note. Pure: it prints nothing."""
    drawn = [s for s in series if s.points]
    legend = len(series) > 1 or any(s.label != title for s in series)
    if not drawn:
        out = Text(f"{title}: no finite values to draw")
        return _legend(out, series, shared=False) if legend else out
    values = [y for s in drawn for _, y in s.points]
    steps = [x for s in drawn for x, _ in s.points]
    lo, hi = min(values), max(values)
    x0, x1 = min(steps), max(steps)
    label_w = max(len(f"{hi:.4g}"), len(f"{lo:.4g}"))
    cols = min(width, len(set(steps)))
    if columns is not None:
        cols = min(cols, columns - label_w - 2)
    cols = max(cols, 1)
    height = max(height, 2)

    # grid[row][col]: index of the series drawn there, or -1 for several
    grid: list[list[int | None]] = [[None] * cols for _ in range(height)]
    for index, s in enumerate(series):
        if not s.points:
            continue
        sums = [0.0] * cols
        counts = [0] * cols
        for x, y in s.points:
            c = min(cols - 1, int(_fraction(x, x0, x1) * (cols - 1) + 0.5))
            sums[c] += y
            counts[c] += 1
        for c in range(cols):
            if counts[c]:
                mean = min(max(sums[c] / counts[c], lo), hi)  # a float sum may stray
                row = height - 1 - round(_fraction(mean, lo, hi) * (height - 1))
                cell = grid[row][c]
                grid[row][c] = index if cell is None or cell == index else -1

    if len(drawn) == 1 and not legend:
        s = drawn[0]
        head = f"{title} over {len(s.points)} points (step {_number(x0)} .. {_number(x1)})"
        if s.skipped:
            head += f"; {s.skipped} not finite, left out"
    else:
        head = f"{title} over steps {_number(x0)} .. {_number(x1)}"
    out = Text(head + "\n")
    for i, cells in enumerate(grid):
        label = f"{hi:.4g}" if i == 0 else f"{lo:.4g}" if i == height - 1 else ""
        out.append(f"{label.rjust(label_w)} |")
        for cell in cells:
            if cell is None:
                out.append(" ")
            elif cell < 0:
                out.append(SHARED, style="bold")
            else:
                out.append(marker(cell), style=colour(cell))
        out.append("\n")
    out.append(" " * label_w + " +" + "-" * cols + "\n")
    first, last = _number(x0), _number(x1)
    gap = cols - len(first) - len(last)
    out.append(" " * (label_w + 2) + (first + " " * gap + last if gap >= 1 else first))
    shared = any(cell == -1 for cells in grid for cell in cells)
    return _legend(out, series, shared) if legend else out


def _legend(out: Text, series: Sequence[Series], shared: bool) -> Text:
    """``out`` with a line per series (its marker, label and count of points) and, with
    ``shared`` (the chart has such a cell), one for the marker of cells several series reach."""
    for index, s in enumerate(series):
        out.append("\n  ")
        out.append(marker(index), style=colour(index))
        out.append(f" {s.label}")
        if not s.points:
            out.append(" (no finite values)")
        else:
            count = f"{len(s.points)} point" + ("s" if len(s.points) != 1 else "")
            skipped = f", {s.skipped} not finite, left out" if s.skipped else ""
            out.append(f" ({count}{skipped})")
    if shared:
        out.append(f"\n  {SHARED} several series")
    return out


def marker(index: int) -> str:
    return MARKERS[index % len(MARKERS)]


def colour(index: int) -> str:
    return COLOURS[index % len(COLOURS)]
