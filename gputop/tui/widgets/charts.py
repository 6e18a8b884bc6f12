"""History charts: CPU vs GPU activity, DRAM bandwidth and power, over the last minutes.

Braille line charts drawn straight into Strips (Textual's line API): two points per column, as
many as the chart is wide, asked of the history each frame. A plotext chart of the same size cost
~25 ms a tick (build, ANSI parse and one styled segment per cell); a full replot of these ~0.6 ms a
chart, and a frame scrolls the plot instead (see dotplot). CPU series are one colour and GPU
series another in every chart, both set in gputop.tcss (chart--cpu, chart--gpu).
"""

from __future__ import annotations

import math
from typing import Any, Callable, NamedTuple

from rich.segment import Segment
from rich.style import Style
from textual.app import ComposeResult
from textual.containers import Horizontal
from textual.filter import ANSIToTruecolor
from textual.geometry import Region
from textual.reactive import reactive
from textual.strip import Strip

from gputop.tui.widgets.dotplot import DotPlot
from gputop.tui.widgets.panel import KeptLines, StyleMemo
from gputop.view.history import History, cpu_key, gpu_key


def unscaled(value: float) -> float:
    return value


def gigabytes(value: float) -> float:
    return value / 1e9


class Series(NamedTuple):
    name: str  # history series
    label: str
    kind: str  # "cpu" or "gpu": the colour
    scale: Callable[[float], float] = unscaled  # (this one: the history's own list, not a copy)


Drawn = tuple[Series, list[float | None]]  # a series and its points, scaled


def nice_ceiling(value: float) -> float:
    """1, 2, 2.5 or 5 x 10^k at or above ``value`` (a y axis top that reads well)."""
    if value <= 0:
        return 1.0
    power = 10.0 ** math.floor(math.log10(value))
    for step in (1, 1.5, 2, 2.5, 3, 4, 5, 6, 8, 10):
        if value <= step * power + 1e-12:
            return step * power
    return 10 * power


def axis_number(value: float) -> str:
    if value >= 10_000:
        return f"{value / 1000:.0f}k"
    if value >= 1000:
        return f"{value / 1000:.1f}k"
    return f"{value:.0f}" if value >= 10 or value == 0 else f"{value:.1f}"


class Chart(StyleMemo):
    """One braille line chart over the newest points of some history series."""

    COMPONENT_CLASSES = {"chart--title", "chart--axis", "chart--cpu", "chart--gpu", "chart--dim"}

    def __init__(self, title: str, unit: str, ylim: tuple[float, float] | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.title, self.unit, self.ylim = title, unit, ylim
        self.series: list[Series] = []
        self.history: History | None = None
        self.note = ""  # said instead of a plot where there is nothing to draw
        self.now_label = "now"  # the right edge of the x axis ("cursor" in a replay)
        self._lines: list[Strip] = []
        self._rows: list[tuple[tuple, Strip]] = []  # each plot row's drawing and its strip
        self._plot: tuple[tuple, int, DotPlot] | None = None  # what it plots, at which push, the plot
        self._made: dict[str, tuple[tuple, Strip]] = {}  # title and x axis: what each was made of
        self._plain: str | None = None  # see render_lines

    def on_resize(self) -> None:
        self.replot()

    def notify_style_update(self) -> None:
        super().notify_style_update()
        self._plain = None
        self._rows = []
        self._made = {}
        self.replot()  # a theme change re-colours the cached lines

    def render_line(self, y: int) -> Strip:
        if y < len(self._lines):
            return self._lines[y]
        return Strip.blank(self.size.width, self._style(None))

    def render_lines(self, crop: Region) -> list[Strip]:
        """The lines as ``render_line`` gives them, through the app's line filters: what
        Textual's styles cache gives for a widget without border, padding, outline, tint, hatch
        or opacity (the charts' styles), which it makes anew, a strip each, and filters, for
        every repainted line (~40 us a line, and the plot scrolls: ~8 rows a chart a frame).
        The ANSI-to-truecolor filter is left out where every style the lines are made of is
        truecolor and not dim already: it returns such a segment as it is."""
        if self._plain is None:
            self._plain = self._plain_styles()
        if not self._plain:
            return super().render_lines(crop)
        skip = ANSIToTruecolor if self._plain == "truecolor" else ()
        filters = [f for f in self.get_line_filters() if not isinstance(f, skip)]
        background = self.background_colors[1]
        width, pad = self.size.width, Style(bgcolor=background.rich_color)  # (as Textual pads)
        strips = []
        for y in crop.line_range:
            strip = self.render_line(y)
            if strip.cell_length != width:  # drawn for another width: a paint between the
                strip = strip.adjust_cell_length(width, pad)  # resize and the replot
            for line_filter in filters:
                strip = strip.apply_filter(line_filter, background)
            strips.append(strip)
        x1, x2 = crop.column_span
        if (x1, x2) != (0, self.size.width):
            strips = [strip.crop(x1, x2) for strip in strips]
        return strips

    def _plain_styles(self) -> str:
        """ "" where Textual must draw the lines itself (a border, padding...), "truecolor" where
        every style they are made of is truecolor and not dim, else "plain"."""
        styles = self.styles
        if (
            any(styles.gutter)
            or any(edge for edge, _ in styles.outline)
            or styles.tint.a
            or styles.text_opacity != 1.0
            or self.opacity != 1.0
            or self.BLANK
            or (styles.has_rule("hatch") and styles.hatch != "none")
        ):
            return ""  # (links: the lines have none, so no link hover style either)
        used = [self._style(None), *(self._style(name) for name in sorted(self.COMPONENT_CLASSES))]
        truecolor = all(
            (s.color is None or s.color.triplet is not None) and (s.bgcolor is None or s.bgcolor.triplet is not None) and not s.dim
            for s in used
        )
        return "truecolor" if truecolor else "plain"

    def _style(self, name: str | None) -> Style:
        """The widget's style, plus component class ``name`` (cached until the styles change:
        rich_style is slow, and a replot every tick would otherwise ask for it ~20 times). The full
        component style: only it resolves an auto or alpha colour against the background (see
        ``Panel.style_of``)."""
        return self.component_style(name) if name else self.rich_style

    def replot(self) -> None:
        width, height = self.size
        if width < 12 or height < 4 or not self.is_mounted:
            self._lines = []
            self.refresh()
            return
        history = self.history
        plot_h = height - 2
        values, top, bottom = self._values(history, width)
        y_labels = (axis_number(top), axis_number((top + bottom) / 2), axis_number(bottom))
        gutter = max(len(s) for s in y_labels) + 1
        plot_w = width - gutter
        plot = self._plot_of(history, values, plot_w, plot_h, top, bottom)

        lines = [self._title_line(width, values)]
        axis = self._style("chart--axis")
        style_of: dict[str | None, Style] = {None: self._style(None)}
        style_of.update((k, self._style(f"chart--{k}")) for k in plot.kinds)
        rows, before = [], self._rows
        prefixes: dict[str, Segment] = {}
        labels = [""] * plot_h
        if plot_h > 2:
            labels[plot_h // 2] = y_labels[1]
        labels[-1], labels[0] = y_labels[2], y_labels[0]
        for row, label in enumerate(labels):
            drawn = (width, gutter, label, plot.kinds, bytes(plot.rows[row]))
            if row < len(before) and before[row][0] == drawn:  # as last time: the same strip
                strip = before[row][1]
            else:
                prefix = prefixes.get(label)
                if prefix is None:
                    prefix = prefixes[label] = Segment(f"{label:>{gutter - 1}}" + ("┤" if label else "│"), axis)
                strip = Strip([prefix, *plot.row_segments(row, style_of)], width)
            rows.append((drawn, strip))
            lines.append(strip)
        self._rows = rows
        lines.append(self._x_axis(width, gutter, history, plot_w))
        old, self._lines = self._lines, lines
        # only the rows that changed: a line that moves repaints its few rows, the blank ones
        # above and below it, the title and the axes stay as they are. A line that reads as it
        # did is the same strip (above, and ``_made_of``): no need to compare them
        if len(old) != len(lines):
            self.refresh()
        else:
            changed = [Region(0, y, width, 1) for y, (a, b) in enumerate(zip(old, lines)) if a is not b]
            if changed:
                self.refresh(*changed)

    def _plot_of(self, history: History | None, values: list[Drawn], plot_w: int, plot_h: int, top: float, bottom: float) -> DotPlot:
        """The plot of ``values``: the last one scrolled by the points pushed since, where it
        was drawn from the same history, at the same size and scale, of the same series; else
        drawn anew (a replay's seek hands down another history: always drawn anew)."""
        key = (history, plot_w, plot_h, top, bottom, tuple(s for s, _ in values))
        pushes = history.pushes if history is not None else 0
        kept = self._plot
        if kept is not None and kept[0] == key:
            plot, new = kept[2], pushes - kept[1]
            if new == 0:
                return plot
            if 0 < new < plot.dots_w and all(len(points) >= new for _, points in values):
                plot.advance([points[-new:] for _, points in values])
                self._plot = (key, pushes, plot)
                return plot
        plot = DotPlot(plot_w, plot_h, top, bottom, [s.kind for s, _ in values])
        plot.fill([points for _, points in values])
        self._plot = (key, pushes, plot)
        return plot

    def _values(self, history: History | None, width: int) -> tuple[list[Drawn], float, float]:
        """Each series' newest points (2 per column), scaled; and the y range to draw them in."""
        n = 2 * width
        values: list[Drawn] = []
        if history is not None and len(history) > 1:
            for s in self.series:
                points = history.last(s.name, n)
                if s.scale is not unscaled:
                    points = [None if v is None else s.scale(v) for v in points]
                if len(points) - points.count(None) > 1:
                    values.append((s, points))
        if self.ylim:
            bottom, top = self.ylim
        else:
            peak = max((max([p for p in pts if p is not None]) for _, pts in values), default=0.0)
            bottom, top = 0.0, nice_ceiling(peak * 1.05)
        return values, top, bottom

    def _run(self, chars: str, kind: str | None) -> Segment:
        return Segment(chars, self._style(f"chart--{kind}" if kind else None))

    def _made_of(self, name: str, key: tuple, make: Callable[[], Strip]) -> Strip:
        """The strip ``make`` gives, made again only when ``key`` changes: the same object, which
        ``refresh_changed`` skips without comparing (title and axis change rarely, not per tick)."""
        made = self._made.get(name)
        if made is None or made[0] != key:
            made = self._made[name] = (key, make())
        return made[1]

    def _title_line(self, width: int, values: list[Drawn]) -> Strip:
        drawn = {s.label for s, _ in values}
        key = (width, tuple(sorted(drawn)), tuple((s.label, s.kind) for s in self.series), self.note, self.title, self.unit)
        return self._made_of("title", key, lambda: self._make_title(width, drawn))

    def _make_title(self, width: int, drawn: set[str]) -> Strip:
        legend: list[Segment] = []
        for s in self.series:
            if s.label in drawn:
                legend += [Segment("  ━ ", self._style(f"chart--{s.kind}")), Segment(s.label, self._style(None))]
        if not drawn:
            legend.append(Segment("  " + (self.note or "no data yet"), self._style("chart--dim")))
        title = f"{self.title}, {self.unit}"
        if len(title) + Segment.get_line_length(legend) > width:  # the legend says more than the unit
            title = self.title
        segments = [Segment(title, self._style("chart--title")), *legend]
        return Strip(segments).crop_extend(0, width, self._style(None))

    def _x_axis(self, width: int, gutter: int, history: History | None, plot_w: int) -> Strip:
        label, column = "", 0
        if history is not None and len(history) > 1:
            stamps = history.timestamps(2 * plot_w)
            label = age_text((stamps[-1] - stamps[0]) / 1e9)
            column = max(0, (2 * plot_w - len(stamps)) // 2)  # the oldest point drawn
        key = (width, gutter, plot_w, label, column, self.now_label)
        return self._made_of(
            "axis",
            key,
            lambda: Strip(
                [
                    Segment(
                        (" " * gutter + time_axis(plot_w, label, column, self.now_label))[:width].ljust(width), self._style("chart--axis")
                    )
                ],
                width,
            ),
        )


AXIS_GAP = 2  # spaces at least between the oldest point's age and the right edge's label


def age_text(seconds: float) -> str:
    """How long ago the oldest point drawn was: -8.5 s, -85 s, -12 min, -2.5 h."""
    if seconds < 9.95:
        return f"-{seconds:.1f} s"
    if seconds < 119.5:
        return f"-{seconds:.0f} s"
    minutes = seconds / 60
    if minutes < 119.5:
        return f"-{minutes:.0f} min"
    hours = minutes / 60
    return f"-{hours:.1f} h" if hours < 9.95 else f"-{hours:.0f} h"


def time_axis(plot_w: int, label: str, column: int, right: str) -> str:
    """The x axis under a plot ``plot_w`` wide: ``right`` ("now") at the right edge, ``label``
    from ``column`` (where the oldest point is), moved left to keep AXIS_GAP before ``right``,
    and left out where it cannot; never a cut or run-together label."""
    right = right[:plot_w]
    line = [" "] * (plot_w - len(right)) + list(right)
    limit = plot_w - len(right) - AXIS_GAP  # the label must end by here
    start = min(column, limit - len(label))
    if label and start >= 0:
        line[start : start + len(label)] = label
    return "".join(line)


class HistoryCharts(Horizontal, KeptLines):
    """Three charts that follow the selected GPU; the app hands down the history and a tick."""

    tick: reactive[int] = reactive(0, always_update=True, repaint=False)  # the charts replot themselves
    gpu_index: reactive[int | None] = reactive(None)

    def __init__(self, history: History, now_label: str = "now", **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.history = history
        self.now_label = now_label
        self._cpu_power_seen = False  # with no GPU, the power chart shows only once the CPU's has a value

    def compose(self) -> ComposeResult:
        yield Chart("activity", "% of capacity", (0, 100), id="chart-activity")
        yield Chart("DRAM bandwidth", "GB/s", id="chart-bandwidth")
        yield Chart("power", "W", id="chart-power")

    def on_mount(self) -> None:
        self.use_history(self.history)

    def use_history(self, history: History) -> None:
        """Draw from ``history`` from now on (a replay rebuilds its history when the cursor jumps)."""
        self.history = history
        self._cpu_power_seen = any(v is not None for v in history.series(cpu_key("cpu_power_w")))
        for chart in self.query(Chart):
            chart.history = history
            chart.now_label = self.now_label
        self._configure()

    def watch_gpu_index(self) -> None:
        if self.is_mounted:
            self._configure()

    def watch_tick(self) -> None:
        if self.is_mounted:
            self._configure()

    def _configure(self) -> None:
        i = self.gpu_index
        activity = self.query_one("#chart-activity", Chart)
        activity.series = [Series(cpu_key("cpu_util_pct"), "CPU cores", "cpu")]
        if i is not None:
            sm = gpu_key(i, "sm_active_pct")
            activity.series.append(
                Series(sm, f"GPU{i} SMs", "gpu")
                if self.history.latest(sm) is not None
                else Series(gpu_key(i, "gpu_util_pct"), f"GPU{i} util", "gpu")
            )
        bandwidth = self.query_one("#chart-bandwidth", Chart)
        bandwidth.series = [] if i is None else [Series(gpu_key(i, "dram_bw_bytes_per_s"), f"GPU{i}", "gpu", gigabytes)]
        early = len(self.history) < 2  # nothing is drawn before two points: "no data yet"
        bandwidth.note = "no GPU" if i is None else "" if early else "n/a (no GPM reading)"
        power = self.query_one("#chart-power", Chart)
        power.series = [Series(cpu_key("cpu_power_w"), "CPU pkg", "cpu")]
        if i is not None:
            power.series.append(Series(gpu_key(i, "power_w"), f"GPU{i}", "gpu"))
        power.note = "" if early else "n/a"
        # no GPU and no RAPL: no empty "power, W n/a" half of the screen; the activity chart takes it
        self._cpu_power_seen = self._cpu_power_seen or self.history.latest(cpu_key("cpu_power_w")) is not None
        power.display = i is not None or self._cpu_power_seen
        for chart in (activity, bandwidth, power):
            chart.replot()
