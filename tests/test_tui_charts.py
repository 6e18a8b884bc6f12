"""The history charts: the time axis (well-formed labels at any history length and width), and
the plot kept as dot columns, scrolled, drawing what a plot drawn anew draws."""

from __future__ import annotations

import random
import re

import pytest
from rich.segment import Segment
from rich.style import Style
from textual.geometry import Region
from textual.widget import Widget

from gputop.tui.app import GputopApp
from gputop.tui.widgets.charts import Chart, HistoryCharts, age_text, time_axis
from gputop.tui.widgets.dotplot import DotPlot
from gputop.view.feed import ReplayFeed
from tui_fixtures import FakeSampler, frozen_self_cpu, make_app, make_sample, screen_text

AGE = r"-\d+(\.\d)? (s|min|h)"
# a plot's axis: an optional age label, then at least two spaces, then the right edge's label
AXIS = re.compile(rf" *(?:{AGE}  +)?(now|cursor)")


@pytest.mark.unit
def test_ages_read_in_seconds_minutes_then_hours():
    assert [age_text(s) for s in (0.0, 1.04, 9.94, 9.96, 14.2, 119.4, 119.6, 754, 7200, 9 * 3600, 40000)] == [
        "-0.0 s",
        "-1.0 s",
        "-9.9 s",
        "-10 s",
        "-14 s",
        "-119 s",
        "-2 min",
        "-13 min",
        "-2.0 h",
        "-9.0 h",
        "-11 h",
    ]


@pytest.mark.unit
@pytest.mark.parametrize("right", ["now", "cursor"])
def test_the_axis_is_well_formed_at_every_width_and_history_length(right):
    seconds = (0.0, 0.5, 8.0, 14.0, 59.9, 125.0, 4000.0, 50000.0)
    for plot_w in range(7, 160):
        for points in sorted({1, 2, 3, 5, 8, 13, 21, plot_w, 2 * plot_w - 3, 2 * plot_w}):
            column = max(0, (2 * plot_w - points) // 2)
            for s in seconds:
                line = time_axis(plot_w, age_text(s), column, right)
                assert len(line) == plot_w and AXIS.fullmatch(line), (plot_w, points, s, line)
                if plot_w >= 20:  # room for both: the age is shown
                    assert age_text(s) in line, (plot_w, points, s, line)


@pytest.mark.unit
def test_the_age_sits_under_the_oldest_point_when_it_fits():
    line = time_axis(40, "-14 s", 20, "now")
    assert line.index("-14 s") == 20 and line.endswith("now")
    assert time_axis(40, "-2.0 s", 39, "now").endswith("-2.0 s  now")  # moved left, not cut


@pytest.mark.tui
async def test_the_charts_axis_reads_well_from_the_first_samples_on():
    """The first seconds used to read "-now", "-8now", "-14 snow"."""
    app = make_app(FakeSampler(lambda t: make_sample(1, t)), paused=True)
    async with app.run_test(size=(120, 40)) as pilot:
        for t in range(40):
            app.ingest(make_sample(1, t))
            await pilot.pause()
            axis = next(line for line in screen_text(app).splitlines() if line.rstrip().endswith("now"))
            assert re.fullmatch(rf"(?: *(?:{AGE}  +)?now)+ *", axis), (t, axis)
            if t >= 1:
                assert axis.count(age_text(float(t))) == 3, (t, axis)  # one per chart


# -- the plot ------------------------------------------------------------------------------------

_DOT = ((0x01, 0x02, 0x04, 0x40), (0x08, 0x10, 0x20, 0x80))


def drawn_cell_by_cell(series, kinds, plot_w, plot_h, top, bottom):
    """The plot as the charts drew it before dot columns (a cell grid filled point by point):
    each row's runs of cells drawn last by one kind of series, (text, kind)."""
    cells = [[0] * plot_w for _ in range(plot_h)]
    owner = [[None] * plot_w for _ in range(plot_h)]
    dots_w, last, span = 2 * plot_w, 4 * plot_h - 1, (top - bottom) or 1.0
    for kind, points in zip(kinds, series):
        prev = None
        for x, value in enumerate(points, start=dots_w - len(points)):
            if value is None or x < 0:
                prev = None
                continue
            y = round((1 - (min(max(value, bottom), top) - bottom) / span) * last)
            col, half = divmod(x, 2)
            for yy in range(min(prev if prev is not None else y, y), max(prev if prev is not None else y, y) + 1):
                cells[yy >> 2][col] |= _DOT[half][yy & 3]
                owner[yy >> 2][col] = kind
            prev = y
    rows = []
    for bits, who in zip(cells, owner):
        text = "".join(chr(0x2800 + b) if b else " " for b in bits)
        cuts = [i for i in range(1, plot_w) if who[i] != who[i - 1]]
        rows.append([(text[a:b], who[a]) for a, b in zip([0, *cuts], [*cuts, plot_w])])
    return rows


STYLES = {None: Style(color="white"), "cpu": Style(color="blue"), "gpu": Style(color="green")}


@pytest.mark.unit
def test_a_plot_scrolled_point_by_point_draws_what_one_drawn_anew_draws():
    """Many random series (gaps, steps, values past the scale), scrolled by random numbers of
    points (1, as at 1 Hz; 5, as at 10 Hz; more): every row, run for run and segment for
    segment, as a plot filled with the same points, and as the cell grid the charts drew."""
    rng = random.Random(14)
    scrolled = reused = 0
    for trial in range(120):
        plot_w, plot_h = rng.randint(1, 50), rng.randint(1, 12)
        top, bottom = rng.choice([(100.0, 0.0), (2500.0, 0.0), (1.0, 0.0), (5.0, 5.0)])
        kinds = rng.choice([("cpu",), ("gpu",), ("cpu", "gpu"), ("gpu", "gpu"), ("cpu", "gpu", "cpu")])

        def point(top: float = top) -> float | None:
            if rng.random() < 0.05:
                return None
            level = top * rng.choice([0.1, 0.5, 0.9]) if rng.random() < 0.7 else rng.uniform(-0.2, 1.2) * top
            return level + rng.uniform(-0.02, 0.02) * top

        series = [[point() for _ in range(rng.randint(0, 3 * plot_w))] for _ in kinds]
        plot = DotPlot(plot_w, plot_h, top, bottom, kinds)
        plot.fill(series)
        for _ in range(30):
            k = rng.choice([1, 1, 1, 2, 5, rng.randint(1, 2 * plot_w)])
            if k >= 2 * plot_w:
                continue
            new = [[point() for _ in range(k)] for _ in kinds]
            series = [points + more for points, more in zip(series, new)]
            plot.advance(new)
            scrolled += 1
            anew = DotPlot(plot_w, plot_h, top, bottom, kinds)
            anew.fill(series)
            assert plot.rows == anew.rows, (trial, k)
            cell_by_cell = drawn_cell_by_cell(series, kinds, plot_w, plot_h, top, bottom)
            for r in range(plot_h):
                segments = plot.row_segments(r, STYLES)
                reused += any(s is t for s in segments for t in plot._made[r][0].segments) if len(plot._made[r]) > 1 else 0
                assert segments == anew.row_segments(r, STYLES), (trial, k, r)
                assert [(s.text, s.style) for s in segments] == [(t, STYLES[kind]) for t, kind in cell_by_cell[r]]
    assert scrolled > 3000 and reused > 1000  # the scrolled path and the moved segments ran


@pytest.mark.unit
def test_a_plot_takes_the_same_number_of_new_points_a_series():
    plot = DotPlot(10, 4, 100.0, 0.0, ("cpu", "gpu"))
    with pytest.raises(ValueError):
        plot.advance([[1.0], [1.0, 2.0]])
    with pytest.raises(ValueError):
        plot.advance([[1.0] * 20, [1.0] * 20])  # a whole plot of new points: fill it instead


# -- the charts in the app ---------------------------------------------------------------------


def lines_of(chart: Chart) -> list[list[Segment]]:
    return [list(strip) for strip in chart._lines]


def drawn_anew(chart: Chart) -> list[list[Segment]]:
    """The chart's lines from a replot with nothing kept (the state it keeps put back after)."""
    kept = chart._plot, chart._rows, chart._made, chart._lines
    chart._plot, chart._rows, chart._made = None, [], {}
    chart.replot()
    lines = lines_of(chart)
    chart._plot, chart._rows, chart._made, chart._lines = kept
    return lines


@pytest.mark.tui
async def test_the_charts_scrolled_tick_by_tick_read_as_drawn_anew():
    """Random values, 1 to 7 samples between frames, spikes that move the autoscaled charts'
    tops as they come in and scroll out: after every frame each chart reads, segment for
    segment, as a replot from scratch of the same history."""
    rng = random.Random(7)
    app = make_app(FakeSampler(lambda t: make_sample(1, t)), paused=True)
    async with app.run_test(size=(160, 50)) as pilot:
        app.ingest(make_sample(1, 0))
        await pilot.pause()
        charts = list(app.query(Chart))
        history, tops, kept = app.history, {c.id: set() for c in charts}, 0
        ts = history.timestamps()[-1]
        for frame in range(150):
            for _ in range(rng.choice([1, 1, 1, 5, 7])):
                ts += 100_000_000
                spike = rng.random() < 0.03
                history.record(
                    ts,
                    {
                        "cpu.cpu_util_pct": rng.choice([5.0, 50.0, 95.0]) + rng.uniform(-2, 2),
                        "cpu.cpu_power_w": rng.uniform(30, 60) * (8 if spike else 1),
                        "gpu0.sm_active_pct": None if rng.random() < 0.05 else rng.uniform(0, 100),
                        "gpu0.dram_bw_bytes_per_s": rng.uniform(0.5e12, 2e12) * (1.6 if spike else 1),
                        "gpu0.power_w": rng.uniform(200, 650) * (1.6 if spike else 1),
                    },
                )
            before = {c.id: c._plot[2] for c in charts}
            app.query_one(HistoryCharts).tick += 1
            await pilot.pause()
            for chart in charts:
                assert lines_of(chart) == drawn_anew(chart), (frame, chart.id)
                tops[chart.id].add(chart._plot[2].top)
                kept += chart._plot[2] is before[chart.id]
        assert kept > 300  # most frames scrolled the plot they had
        assert len(tops["chart-power"]) > 1 and len(tops["chart-bandwidth"]) > 1  # and the scale moved


@pytest.mark.tui
async def test_the_charts_lines_are_what_textual_would_draw():
    """``Chart.render_lines`` skips Textual's styles cache: the same strips, line for line."""
    app = make_app(FakeSampler(lambda t: make_sample(1, t)), paused=True)
    async with app.run_test(size=(160, 50)) as pilot:
        for t in range(60):
            app.ingest(make_sample(1, t))
            await pilot.pause()
            for chart in app.query(Chart):
                region = Region(0, 0, *chart.size)
                chart._styles_cache.clear()
                assert chart.render_lines(region) == Widget.render_lines(chart, region)
                part = Region(3, 2, chart.size.width - 5, 4)
                assert chart.render_lines(part) == Widget.render_lines(chart, part)


@pytest.mark.tui
async def test_lines_still_of_the_old_width_are_fitted_as_textual_would():
    """Textual paints right after a reflow, before the chart's Resize handler replots: lines of
    the old width are cut or padded as Textual's styles cache does, not drawn as they are."""
    from textual.strip import Strip

    app = make_app(FakeSampler(lambda t: make_sample(1, t)), paused=True)
    async with app.run_test(size=(160, 50)) as pilot:
        for t in range(5):
            app.ingest(make_sample(1, t))
            await pilot.pause()
        chart = app.query(Chart).first()
        region = Region(0, 0, *chart.size)
        for delta in (-7, 9):  # the plot as it was at another width
            chart._lines = [Strip(list(line), line.cell_length).adjust_cell_length(chart.size.width + delta) for line in chart._lines]
            chart._styles_cache.clear()
            drawn = chart.render_lines(region)
            assert all(line.cell_length == chart.size.width for line in drawn)
            assert drawn == Widget.render_lines(chart, region)


@pytest.mark.tui
async def test_a_replay_seek_draws_the_charts_anew():
    """Stepping back rebuilds the replay's history (as long as it was, at another time): the
    charts must draw it anew, not scroll the plot they had."""
    samples = [make_sample(1, t) for t in range(400)]
    app = GputopApp(ReplayFeed(samples, host="vm", playing=False, history_points=200), self_cpu=frozen_self_cpu(), frame_s=0.0)
    async with app.run_test(size=(160, 50)) as pilot:
        charts = list(app.query(Chart))
        await pilot.press("end")
        await pilot.pause()
        seen = set()
        for key in ["left", "left", "right", "home", *["right"] * 30, "end", "left", "left"]:
            plots, history, before = [c._plot[2] for c in charts], app.history, [lines_of(c) for c in charts]
            await pilot.press(key)
            await pilot.pause()
            rebuilt = app.history is not history  # back, or far ahead
            assert rebuilt == (key in ("left", "home", "end")), key
            seen.add(rebuilt)
            for chart, plot in zip(charts, plots):
                assert chart.history is app.history
                assert lines_of(chart) == drawn_anew(chart), (key, chart.id)
                if rebuilt:
                    assert chart._plot[2] is not plot
            assert [lines_of(c) for c in charts] != before, key  # another window of the recording
        assert seen == {True, False}  # seeks that rebuilt the history, steps that added to it
