"""The history charts' time axis: always well-formed labels, at any history length and width."""

from __future__ import annotations

import re

import pytest

from gputop.tui.widgets.charts import age_text, time_axis
from test_tui import make_app, screen_text
from tui_fixtures import FakeSampler, make_sample

AGE = r"-\d+(\.\d)? (s|min|h)"
# a plot's axis: an optional age label, then at least two spaces, then the right edge's label
AXIS = re.compile(rf" *(?:{AGE}  +)?(now|cursor)")


def test_ages_read_in_seconds_minutes_then_hours():
    assert [age_text(s) for s in (0.0, 1.04, 9.94, 9.96, 14.2, 119.4, 119.6, 754, 7200, 9 * 3600, 40000)] == [
        "-0.0 s", "-1.0 s", "-9.9 s", "-10 s", "-14 s", "-119 s", "-2 min", "-13 min", "-2.0 h", "-9.0 h",
        "-11 h"]


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


def test_the_age_sits_under_the_oldest_point_when_it_fits():
    line = time_axis(40, "-14 s", 20, "now")
    assert line.index("-14 s") == 20 and line.endswith("now")
    assert time_axis(40, "-2.0 s", 39, "now").endswith("-2.0 s  now")  # moved left, not cut


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
