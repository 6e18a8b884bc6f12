"""ClusterApp: the fleet view of ``gputop cluster``, one row per node, drawn from a ClusterFeed.

Attributes down: the app owns the refresh loop and hands each ClusterSample to the widgets (a
header of fleet totals, a DataTable of nodes, the selected node's GPUs with their history), which
only render. Every query runs in a thread worker, never on the event loop; a refresh that fails
keeps the last table and turns the header into "stale since HH:MM:SS" with the one-line reason.
Reuses the live view's Panel base, its number formats (gputop.format) and its help screen.
"""

from __future__ import annotations

import time
from typing import Callable, Protocol

from rich.text import Text
from textual import work
from textual.app import App, ComposeResult
from textual.binding import Binding
from textual.coordinate import Coordinate
from textual.driver import Driver
from textual.reactive import reactive, var
from textual.widgets import DataTable, Footer

from gputop import format as fmt
from gputop.cluster.fleet import ClusterError, NodeHistory
from gputop.cluster.nodes import ClusterGpu, ClusterJob, ClusterNode, ClusterSample, held_by, labels, stale_note
from gputop.tui.compat import ErrorsNoted
from gputop.tui.screens.help import HelpScreen
from gputop.tui.terminal import QUIT_KEY, SUSPEND, repaint_on_resume, settle_heap, terminal_driver
from gputop.tui.widgets.panel import Panel

BARS = "▁▂▃▄▅▆▇█"
SORTS = ("node", "power", "idle GPUs")
KEYS = (
    ("↑ ↓", "select a node: its GPUs and their recent history below"),
    ("s", "sort by node, power (highest first), idle GPUs (most first)"),
    ("r", "refresh now"),
    ("q / ctrl+c", "quit"),
)


class SupportsFeed(Protocol):
    """What the view needs of its feed (``gputop.cluster.fleet.ClusterFeed``)."""

    def refresh(self) -> ClusterSample: ...

    def history(self, node: ClusterNode) -> NodeHistory: ...


def clock(ts: float | None) -> str:
    return fmt.NA if ts is None else time.strftime("%H:%M:%S", time.localtime(ts))


def bar(pct: float | None) -> str:
    """One cell for a GPU's activity: a block as tall as its share, "·" where unknown."""
    if pct is None:
        return "·"
    return BARS[min(len(BARS) - 1, max(0, round(pct / 100 * (len(BARS) - 1))))]


def sparkline(points: tuple[tuple[float, float | None], ...], width: int, top: float | None = None) -> str:
    """The last ``width`` points as blocks scaled to ``top`` (their maximum if None)."""
    values = [v for _, v in points[-width:]]
    known = [v for v in values if v is not None]
    ceiling = top if top is not None else (max(known) if known else 0.0)
    if not ceiling:
        ceiling = 1.0
    return "".join(" " if v is None else bar(100.0 * v / ceiling) for v in values)


def activity(g: ClusterGpu) -> str:
    return f"SMs {fmt.pct(g.sm_active_pct)}" if g.sm_active_pct is not None else f"util {fmt.pct(g.gpu_util_pct)}"


def flags(node: ClusterNode) -> list[str]:
    """What wastes a cluster, in words."""
    out = []
    if node.stale:
        out.append(f"stale since {clock(node.stale_since)}")
    held = sum(1 for g in node.gpus if g.idle_with_memory)
    if held:
        out.append(f"{held} idle holding memory")
    trap = sum(1 for g in node.gpus if g.util_trap)
    if trap:
        out.append(f"{trap} util high, SMs idle")
    return out


def sort_nodes(nodes: tuple[ClusterNode, ...], by: str) -> list[ClusterNode]:
    if by == "power":
        return sorted(nodes, key=lambda n: (n.power_w is None, -(n.power_w or 0.0), n.host))
    if by == "idle GPUs":
        return sorted(nodes, key=lambda n: (-n.idle_gpus, n.host))
    return sorted(nodes, key=lambda n: (n.label, n.host))


class ClusterHeader(Panel):
    """Fleet totals, the refresh pace, and whether the data is fresh."""

    sample: reactive[ClusterSample | None] = reactive(None)
    error: reactive[str | None] = reactive(None)
    stale_since: reactive[float | None] = reactive(None)
    sort_label: reactive[str] = reactive(SORTS[0])
    interval_s: reactive[float] = reactive(5.0)
    source: reactive[str] = reactive("")

    def render_key(self) -> tuple:
        return (self.sample, self.error, self.stale_since, self.sort_label, self.interval_s, self.source)

    def watch_error(self, error: str | None) -> None:
        self.set_class(error is not None, "-stale")

    def build(self, width: int) -> Text:
        """One line: a part that does not fit the width is left out (the ones after it may still
        fit); the failed refresh's reason is cut to what is left rather than wrapping."""
        f = self.field
        text = Text.assemble(("gputop cluster", self.style_of("panel--value")), " ", (self.source, self.style_of("panel--label")))
        parts = []
        if self.error is not None:
            when = "no data yet" if self.stale_since is None else f"stale since {clock(self.stale_since)}"
            reason = Text(f"{when}: {self.error}", style=self.style_of("panel--warn"))
            reason.truncate(max(len(when), width - text.cell_len - 3), overflow="ellipsis")
            parts.append(reason)
        t = self.sample.totals if self.sample is not None else None
        if t is not None:
            parts += [
                f("nodes", str(t.nodes), f" ({stale_note(t)})" if t.stale_nodes else ""),
                f("GPUs busy", f"{t.busy_gpus} of {t.gpus}"),
                f("idle holding memory", str(t.idle_with_memory)),
                f("power", fmt.watts(t.power_w)),
                f("cores busy", fmt.num(t.cores_busy), f" of {fmt.text(t.cores)}"),
            ]
        parts += [f("every", f"{self.interval_s:g} s"), f("sort", self.sort_label), Text("? help", style=self.style_of("panel--dim"))]
        for part in parts:
            if text.cell_len + 3 + part.cell_len <= width:
                text.append("   ")
                text.append_text(part)
        return text


class NodeDetail(Panel):
    """The selected node: one line per GPU, its values and its recent history."""

    # layout=True: its height is auto, so a change of line count lays the screen out again (it
    # kept the one line of "no node selected" until a resize)
    node: reactive[ClusterNode | None] = reactive(None, layout=True)
    history: reactive[NodeHistory | None] = reactive(None, layout=True)

    def render_key(self) -> tuple:
        return (self.node, self.history)

    def build(self, width: int) -> Text:
        n = self.node
        if n is None:
            return Text("no node selected", style=self.style_of("panel--dim"))
        f = self.field
        text = Text.assemble(
            (n.label, self.style_of("panel--value")), (f"  {', '.join(n.instances)}  {fmt.text(n.source)}", self.style_of("panel--label"))
        )
        for w in flags(n):
            text.append(f"   {w}", style=self.style_of("panel--warn"))
        text.append("\n")
        text.append_text(f("cores busy", fmt.num(n.cores_busy), f" of {fmt.text(n.cores)}"))
        if not n.gpus:
            text.append("\nno GPU series from this node", style=self.style_of("panel--dim"))
        past = {} if self.history is None or self.history.host != n.host else {(g.index): g.series for g in self.history.gpus}
        # power sparklines share one scale, the node's highest: an idle GPU's reads low
        top_w = max((v or 0.0 for s in past.values() for _, v in s.get("power_w", ())), default=0.0) or None
        spark = max(8, (width - 118) // 2)  # what the fixed columns leave, shared by the two lines
        for g in n.gpus:
            series = past.get(g.index, {})
            key = "sm_active_pct" if g.sm_active_pct is not None or "sm_active_pct" in series else "gpu_util_pct"
            name = fmt.text(g.name).removeprefix("NVIDIA ")
            line = Text("\n")
            line.append_text(f("GPU", fmt.text(g.index), f" {name[:26]:<26}"))
            line.append("  ")
            line.append(f"{activity(g):<10}", style=self.load_style(g.activity_pct))
            line.append(sparkline(series.get(key, ()), spark, 100.0).rjust(spark), style=self.style_of("sm--on"))
            line.append_text(f("  power", f"{fmt.watts(g.power_w):>6}", " "))
            line.append(sparkline(series.get("power_w", ()), spark, top_w).rjust(spark), style=self.style_of("sm--on"))
            line.append_text(f("  mem", f"{fmt.used_total(g.mem_used_bytes, g.mem_total_bytes):<21}"))
            line.append_text(f(" ", f"{fmt.celsius(g.temp_c):>6}"))
            if g.idle_with_memory:
                line.append("  idle holding memory", style=self.style_of("panel--warn"))
            if g.util_trap:
                line.append("  util high, SMs idle", style=self.style_of("panel--warn"))
            text.append_text(line)
        if self.history is None and n.gpus:
            text.append("\nhistory: asking Prometheus...", style=self.style_of("panel--dim"))
        return text


class NodeTable(DataTable):
    """One row per node (its cells are text; a stale node's row carries the -stale style)."""

    COMPONENT_CLASSES = DataTable.COMPONENT_CLASSES | {"nodes--stale"}


COLUMNS = ("node", "GPUs", "SMs active per GPU", "memory", "power", "temp", "cores busy", "flags")


def row(n: ClusterNode, label: str) -> tuple:
    gpus = n.gpus
    used = sum(g.mem_used_bytes or 0 for g in gpus) if gpus else None
    total = sum(g.mem_total_bytes or 0 for g in gpus) if gpus else None
    temps = [g.temp_c for g in gpus if g.temp_c is not None]
    util_only = bool(gpus) and all(g.sm_active_pct is None for g in gpus)
    strip = "".join(bar(g.activity_pct) for g in gpus) + (" (util)" if util_only else "")
    return (
        label,
        f"{sum(g.busy for g in gpus)}/{len(gpus)} busy" if gpus else "-",
        strip or "-",
        fmt.used_total(used, total) if gpus else "-",
        fmt.watts(n.power_w),
        fmt.celsius(max(temps)) if temps else fmt.NA,
        f"{fmt.num(n.cores_busy)} of {fmt.text(n.cores)}",
        ", ".join(flags(n)),
    )


class JobTable(DataTable):
    """One row per job that ``gputop serve --run`` exports (hidden while there is none): which
    rank holds it back, and why."""


JOB_COLUMNS = ("run", "workload", "status", "ranks", "nodes", "samples/s", "held back by")


def job_row(j: ClusterJob) -> tuple:
    return (
        j.run,
        fmt.text(j.workload),
        fmt.text(j.status),
        str(len(j.ranks)),
        ", ".join(j.hosts),
        fmt.NA if j.samples_per_s is None else f"{j.samples_per_s:,.1f}",
        held_by(j),
    )


SETTLE_HEAP_S = 2.0  # the CLI's view: start-up's objects frozen out of collections this long after mount


class ClusterApp(ErrorsNoted, App):
    CSS_PATH = "cluster.tcss"
    TITLE = "gputop cluster"
    BINDINGS = [
        Binding("q", "quit", "quit"),
        QUIT_KEY,
        Binding("s", "cycle_sort", "sort"),
        Binding("r", "refresh_now", "refresh"),
        Binding("question_mark", "help", "help", key_display="?"),
        SUSPEND,
    ]

    sample: var[ClusterSample | None] = var(None)
    sort_by: var[str] = var(SORTS[0])
    selected: var[str | None] = var(None)  # host

    def __init__(
        self,
        feed: SupportsFeed,
        interval_s: float = 5.0,
        *,
        source: str = "",
        clock_fn: Callable[[], float] = time.time,
        settle_heap_s: float | None = None,
    ) -> None:
        super().__init__()
        self.feed = feed
        self.settle_heap_s = settle_heap_s  # the CLI's: settle_heap this long after mount (tests: never)
        self.interval_s = interval_s
        self.source = source or getattr(getattr(feed, "prom", None), "url", "")
        self.clock_fn = clock_fn
        self.last_ok: float | None = None
        self.error: str | None = None
        self.refreshes = 0

    def get_driver_class(self) -> type[Driver]:
        return terminal_driver(super().get_driver_class())  # see gputop.tui.terminal

    def compose(self) -> ComposeResult:
        yield ClusterHeader(id="cluster-header")
        table = NodeTable(id="nodes", cursor_type="row", zebra_stripes=True)
        table.add_columns(*COLUMNS)
        yield table
        jobs = JobTable(id="jobs", cursor_type="none", zebra_stripes=True)
        jobs.add_columns(*JOB_COLUMNS)
        jobs.display = False
        yield jobs
        yield NodeDetail(id="node-detail")
        yield Footer()

    def on_mount(self) -> None:
        repaint_on_resume(self)
        header = self.query_one(ClusterHeader)
        header.interval_s, header.source = self.interval_s, self.source
        self.set_interval(self.interval_s, self.action_refresh_now)
        self.action_refresh_now()
        if self.settle_heap_s is not None:  # (after mount, not the first answer: that may take a timeout)
            self.set_timer(self.settle_heap_s, settle_heap)

    # ---- fetching, in threads
    def action_refresh_now(self) -> None:
        self._fetch()

    @work(thread=True, exclusive=True, group="refresh")
    def _fetch(self) -> None:
        try:
            result: ClusterSample | ClusterError = self.feed.refresh()
        except ClusterError as exc:
            result = exc
        self.call_from_thread(self._arrived, result)

    @work(thread=True, exclusive=True, group="history")
    def _fetch_history(self, node: ClusterNode) -> None:
        try:
            history: NodeHistory | None = self.feed.history(node)
        except ClusterError:
            history = None  # the header already says when a refresh fails; keep the old one
        if history is not None:
            self.call_from_thread(self._history_arrived, history)

    # ---- drawing, on the event loop
    def _arrived(self, result: ClusterSample | ClusterError) -> None:
        header = self.query_one(ClusterHeader)
        if isinstance(result, ClusterError):
            self.error = str(result)
            header.error, header.stale_since = self.error, self.last_ok
            return
        self.refreshes += 1
        self.error = None
        self.last_ok = self.clock_fn()
        header.error, header.stale_since = None, self.last_ok
        self.sample = result

    def watch_sample(self, sample: ClusterSample | None) -> None:
        if sample is None:
            return
        self.query_one(ClusterHeader).sample = sample
        self._fill_table()
        self._fill_jobs(sample.jobs)
        node = self._node(self.selected)
        if node is not None:
            self.query_one(NodeDetail).node = node
            self._fetch_history(node)

    def _node(self, host: str | None) -> ClusterNode | None:
        if self.sample is None or host is None:
            return None
        return next((n for n in self.sample.nodes if n.host == host), None)

    def _fill_table(self) -> None:
        table = self.query_one(NodeTable)
        if self.sample is None:
            return
        keep = self.selected
        stale = table.get_component_rich_style("nodes--stale", partial=True)
        table.clear()
        names = labels(self.sample.nodes)
        for n in sort_nodes(self.sample.nodes, self.sort_by):
            cells = row(n, names[n.host])
            table.add_row(*(Text(c, style=stale) if n.stale else c for c in cells), key=n.host)
        if keep is not None and self._node(keep) is not None:
            table.move_cursor(row=table.get_row_index(keep), animate=False)
        elif table.row_count:
            table.move_cursor(row=0, animate=False)

    def _fill_jobs(self, jobs: tuple[ClusterJob, ...]) -> None:
        table = self.query_one(JobTable)
        table.clear()
        for j in jobs:
            table.add_row(*job_row(j), key=j.run)
        table.display = bool(jobs)

    def on_data_table_row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        if not isinstance(event.data_table, NodeTable):  # (the jobs table selects nothing)
            return
        host = event.row_key.value if event.row_key is not None else None
        if host == self.selected:
            return
        self.selected = host
        node = self._node(host)
        detail = self.query_one(NodeDetail)
        detail.history = None
        detail.node = node
        if node is not None:
            self._fetch_history(node)

    def _history_arrived(self, history: NodeHistory) -> None:
        if history.host == self.selected:
            self.query_one(NodeDetail).history = history

    def action_cycle_sort(self) -> None:
        self.sort_by = SORTS[(SORTS.index(self.sort_by) + 1) % len(SORTS)]
        self.query_one(ClusterHeader).sort_label = self.sort_by
        self._fill_table()

    def action_help(self) -> None:
        self.push_screen(HelpScreen(KEYS, title="gputop cluster keys"))

    def row_hosts(self) -> list[str]:
        """The hosts in table order (for tests and screenshots)."""
        table = self.query_one(NodeTable)
        return [str(table.coordinate_to_cell_key(Coordinate(y, 0)).row_key.value) for y in range(table.row_count)]
