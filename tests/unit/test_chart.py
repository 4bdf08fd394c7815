"""The terminal line chart (trainform/cli/chart.py) that `runs metrics --chart` and
`runs compare --metric` draw: markers per series, the legend, what it leaves out (NaN, inf,
None), one point, flat series, long series, narrow terminals, huge values."""

from __future__ import annotations

import math

from trainform.cli.chart import MARKERS, SHARED, Series, line_chart, metric_series


def grid(text: str) -> list[str]:
    """The plot lines of a chart (between the title and the axis), without the y labels."""
    lines = text.splitlines()
    end = next(i for i, line in enumerate(lines) if line.lstrip().startswith("+"))
    return [line.split("|", 1)[1] for line in lines[1:end]]


def test_one_series_draws_one_marker_per_step_between_its_min_and_max() -> None:
    series = Series.of("loss", [(step, 1 / (step + 1)) for step in range(10)])
    text = line_chart("loss", [series]).plain
    lines = text.splitlines()
    assert lines[0] == "loss over 10 points (step 0 .. 9)", text
    rows = grid(text)
    assert len(rows) == 12
    assert all(len(row) == 10 for row in rows), text
    assert sum(row.count("*") for row in rows) == 10, text
    assert rows[0][0] == "*" and rows[-1][9] == "*", text  # decreasing: top left to bottom right
    assert lines[1].startswith("  1 |") and lines[12].startswith("0.1 |"), text
    assert "\n  *" not in text  # no legend for a lone series named as the chart


def test_several_series_have_their_own_marker_and_a_legend() -> None:
    up = Series.of("run-a (run.train)", [(s, float(s)) for s in range(21)])
    down = Series.of("run-b (run.train)", [(s, float(20 - s)) for s in range(21)])
    text = line_chart("loss", [up, down]).plain
    lines = text.splitlines()
    assert lines[0] == "loss over steps 0 .. 20", text
    rows = grid(text)
    assert rows[-1][0] == "*" and rows[0][-1] == "*", text
    assert rows[0][0] == "o" and rows[-1][-1] == "o", text
    assert "  * run-a (run.train) (21 points)" in lines, text
    assert "  o run-b (run.train) (21 points)" in lines, text
    # where the two lines cross (step 10), a cell shows that both are there
    assert [row.find(SHARED) for row in rows if SHARED in row] == [10], text
    assert f"  {SHARED} several series" in lines, text


def test_markers_are_coloured_but_the_text_is_the_same_without_colour() -> None:
    a = Series.of("a", [(0, 0.0), (1, 1.0)])
    b = Series.of("b", [(0, 1.0), (1, 0.0)])
    chart = line_chart("m", [a, b])
    styled = {chart.plain[span.start : span.end] for span in chart.spans}
    assert {"*", "o"} <= styled, chart.spans
    assert "*" in chart.plain and "o" in chart.plain


def test_nan_inf_and_none_are_left_out_and_counted() -> None:
    points = [(0, 1.0), (1, float("nan")), (2, None), (3, float("inf")), (4, 2.0), (None, 3.0)]
    series = Series.of("run-a", points)
    assert series.points == ((0.0, 1.0), (4.0, 2.0))
    assert series.skipped == 4
    text = line_chart("loss", [series, Series.of("run-b", [(0, 1.5)])]).plain
    assert "  * run-a (2 points, 4 not finite, left out)" in text, text
    assert "nan" not in text.lower() and "inf" not in text.lower(), text
    alone = line_chart("loss", [Series("loss", series.points, series.skipped)]).plain
    assert alone.splitlines()[0] == "loss over 2 points (step 0 .. 4); 4 not finite, left out"


def test_a_series_with_nothing_to_draw_is_named() -> None:
    empty = Series.of("run-b", [(0, float("nan"))])
    text = line_chart("loss", [Series.of("run-a", [(0, 1.0), (1, 2.0)]), empty]).plain
    assert "  o run-b (no finite values)" in text, text
    assert not any("o" in row for row in grid(text)), text
    nothing = line_chart("loss", [empty, empty]).plain
    assert nothing.splitlines()[0] == "loss: no finite values to draw", nothing
    assert nothing.count("(no finite values)") == 2, nothing


def test_one_point_and_a_flat_series() -> None:
    one = line_chart("acc", [Series.of("acc", [(5, 0.5)])]).plain
    assert one.splitlines()[0] == "acc over 1 points (step 5 .. 5)", one
    assert sum(row.count("*") for row in grid(one)) == 1, one

    flat = line_chart("acc", [Series.of("acc", [(s, 0.25) for s in range(30)])]).plain
    rows = grid(flat)
    assert rows[-1] == "*" * 30, flat  # every point on one line
    assert all(not row.strip() for row in rows[:-1]), flat
    assert flat.count("0.25 |") == 2, flat  # top and bottom labels are the value


def test_each_column_is_the_mean_of_its_points() -> None:
    # Two columns: steps 0 and 1 fall in the first, 2 and 3 in the second; each averages 5,
    # halfway between the extremes 0 and 10, which no single point is.
    series = Series.of("x", [(0, 0.0), (1, 10.0), (2, 0.0), (3, 10.0)])
    rows = grid(line_chart("x", [series], width=2, height=11).plain)
    assert [i for i, row in enumerate(rows) if "*" in row] == [5], rows
    assert rows[5] == "**", rows


def test_a_long_series_is_drawn_in_at_most_width_columns() -> None:
    long = Series.of("loss", [(s, math.exp(-s / 20_000)) for s in range(100_000)])
    short = Series.of("other", [(s * 1000, 0.5) for s in range(100)])
    text = line_chart("loss", [long, short], width=60).plain
    rows = grid(text)
    assert all(len(row) == 60 for row in rows), text
    assert all(row.count("*") + row.count(SHARED) <= 60 for row in rows)
    assert sum(row.count("*") + row.count(SHARED) for row in rows) == 60, text  # one per column
    assert rows[0][0] == "*", text  # starts at the top
    assert "(100000 points)" in text, text
    assert "99999" in text.splitlines()[len(rows) + 2], text  # the step range under the axis


def test_a_narrow_terminal_narrows_the_plot() -> None:
    series = Series.of("loss", [(s, float(s % 7)) for s in range(500)])
    text = line_chart("loss", [series], columns=20).plain
    plot = text.splitlines()[1:14]  # 12 rows and the axis
    assert all(len(line) <= 20 for line in plot), text
    tiny = line_chart("loss", [series], columns=3).plain
    assert all(len(row) == 1 for row in grid(tiny)), tiny  # never fewer than one column


def test_huge_values_and_steps_do_not_break_the_scale() -> None:
    series = Series.of("x", [(0, 1e308), (1, -1e308), (10**400, 5.0)])
    assert series.skipped == 1  # a step too large for a float
    rows = grid(line_chart("x", [series]).plain)
    assert rows[0] == "* " and rows[-1] == " *", rows


def test_metric_series_takes_steps_or_positions() -> None:
    points = [
        {"name": "loss", "step": 10, "value": 0.5},
        {"name": "acc", "step": 10, "value": 0.9},
        {"name": "loss", "step": None, "value": 0.4},
        {"name": "loss", "step": "late", "value": 0.3},
        {"name": "loss", "step": 30, "value": float("nan")},
    ]
    series = metric_series("run-a", points, "loss")
    assert series is not None
    assert series.points == ((10.0, 0.5), (1.0, 0.4), (2.0, 0.3))
    assert series.skipped == 1
    assert metric_series("run-a", points, "missing") is None


def test_more_series_than_markers_still_draws() -> None:
    many = [Series.of(f"run-{i}", [(0, float(i)), (1, float(i))]) for i in range(len(MARKERS) + 2)]
    text = line_chart("m", many).plain
    assert f"  {MARKERS[0]} run-{len(MARKERS)} " in text, text  # the markers start again
