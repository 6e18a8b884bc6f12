"""GPU processes across every device: a sortable table whose cursor row is the kill target.

Rows of a launched workload's processes are marked (a class style and a leading marker on the
command). An empty table says why it is empty: no GPU, no GPU processes, or not readable.
"""

from __future__ import annotations

from typing import Any, Callable, NamedTuple

from rich.segment import Segment
from rich.style import Style
from rich.text import Text
from textual.reactive import reactive
from textual.strip import Strip
from textual.widgets import DataTable
from textual.widgets.data_table import ColumnKey, RowKey

from gputop import format as fmt
from gputop.model import GpuProcess, Sample
from gputop.tui.widgets.panel import StyleMemo


class Column(NamedTuple):
    key: str
    label: str
    sort: Callable[[GpuProcess], Any]  # a key sorted() can compare
    descending: bool
    right: bool = False


def _num(value: float | None) -> float:
    return -1.0 if value is None else value  # n/a sorts below every real value


COLUMNS = (
    Column("pid", "pid", lambda p: p.pid, False, True),
    Column("user", "user", lambda p: p.user or "", False),
    Column("gpu", "GPU", lambda p: p.gpu_index, False, True),
    Column("mem", "GPU mem", lambda p: _num(p.gpu_mem_bytes), True, True),
    Column("sm", "SM %", lambda p: _num(p.sm_util_pct), True, True),
    Column("cpu", "CPU %", lambda p: _num(p.cpu_pct), True, True),
    Column("command", "command", lambda p: p.command or p.name or "", False),
)
SORT_CYCLE = ("mem", "sm", "cpu", "pid", "user", "gpu", "command")
WORKLOAD_MARK = "▶ "


def empty_reason(sample: Sample) -> str:
    """Why no process row is shown for ``sample``."""
    if not sample.gpus:
        return f"no GPU: {sample.gpu_unavailable or 'no NVIDIA GPU found'}"
    live = [g for g in sample.gpus if not g.lost]
    if not live:
        return "no GPU processes: every GPU is lost"
    if all(g.processes is None for g in live):
        return "no GPU processes shown: the driver does not list them here"
    return "no GPU processes"


def _same_processes(a: Sample, b: Sample) -> bool:
    """Whether ``b`` holds the very process tuples ``a`` did, on devices lost or not as before."""
    return (a.gpu_unavailable == b.gpu_unavailable and len(a.gpus) == len(b.gpus)
            and all(x.lost == y.lost and x.processes is y.processes for x, y in zip(a.gpus, b.gpus)))


def row_key(proc: GpuProcess) -> str:
    return f"{proc.gpu_index}:{proc.pid}"


class ProcessTable(DataTable, StyleMemo):  # (DataTable first: Textual reads CSS and component classes along the first bases)
    """Rows are rebuilt when the processes were scanned again (the sampler carries the same
    tuples in between); the cursor stays on the same process while it lives."""

    COMPONENT_CLASSES = {"processes--workload", "processes--empty"}

    sample: reactive[Sample | None] = reactive(None, always_update=True, repaint=False)  # changed cells repaint
    sort_key: reactive[str] = reactive("mem")
    workload_pids: reactive[frozenset[int]] = reactive(frozenset())
    # said instead of "no GPU processes..." while some GPU is there (a replay has no process list)
    empty_note: reactive[str | None] = reactive(None)

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(cursor_type="row", zebra_stripes=True, **kwargs)
        self._procs: dict[str, GpuProcess] = {}
        self.empty_text = "waiting for the first sample"
        self._shown: Sample | None = None  # the sample the rows were last built from

    @property
    def message(self) -> str | None:
        """What the empty table says (None while it has rows)."""
        return None if self.row_count else self.empty_text

    def render_line(self, y: int) -> Strip:
        if self.row_count or y != 1 or not self.show_header:
            return super().render_line(y)
        style = self.get_component_rich_style("processes--empty")  # full: resolves $text-muted
        return Strip([Segment(" " + self.empty_text, style)]).crop_extend(0, self.size.width, self.rich_style)

    def on_mount(self) -> None:
        for col in COLUMNS:
            self.add_column(col.label + "  ", key=col.key)  # room for the sort arrow
        self._relabel()

    @property
    def sort_label(self) -> str:
        return next(c.label for c in COLUMNS if c.key == self.sort_key)

    @property
    def selected_process(self) -> GpuProcess | None:
        if not self.row_count:
            return None
        key = self.coordinate_to_cell_key(self.cursor_coordinate).row_key.value
        return None if key is None else self._procs.get(key)

    def cycle_sort(self) -> None:
        self.sort_key = SORT_CYCLE[(SORT_CYCLE.index(self.sort_key) + 1) % len(SORT_CYCLE)]

    def watch_sort_key(self) -> None:
        self._relabel()
        self._rebuild()

    def watch_sample(self, sample: Sample | None) -> None:
        # The process table is scanned every few seconds and the very same tuples are carried
        # in between: a sample whose devices hold the same ones (and are lost or not as before)
        # changes no row, and rebuilding every cell to find that out cost a frame ~0.3 ms.
        last, self._shown = self._shown, sample
        if sample is not None and last is not None and _same_processes(last, sample):
            return
        self._rebuild()

    def notify_style_update(self) -> None:
        super().notify_style_update()
        self._shown = None  # a theme changes the workload rows' colour: rebuild at the next sample

    def watch_workload_pids(self) -> None:
        self._rebuild()

    def watch_empty_note(self) -> None:
        self._rebuild()

    def on_data_table_header_selected(self, event: DataTable.HeaderSelected) -> None:
        """Clicking a column header sorts by it (the event bubbles on, so the app sees it too)."""
        if event.column_key.value is not None:
            self.sort_key = event.column_key.value

    def _relabel(self) -> None:
        if not self.columns:
            return
        for col in COLUMNS:
            label = col.label + (" ▼" if col.descending else " ▲") if col.key == self.sort_key else col.label
            self.columns[ColumnKey(col.key)].label = Text(label, justify="right" if col.right else "left")
        self.refresh()

    def _rebuild(self) -> None:
        sample = self.sample
        if sample is None or not self.columns:
            return
        procs = [p for g in sample.gpus if not g.lost and g.processes for p in g.processes]
        live = [g for g in sample.gpus if not g.lost]
        empty_text = (self.empty_note if live and self.empty_note else None) or empty_reason(sample)
        if empty_text != self.empty_text:
            self.empty_text = empty_text
            self.refresh()
        col = next(c for c in COLUMNS if c.key == self.sort_key)
        procs.sort(key=col.sort, reverse=col.descending)
        keep = self.selected_process
        keys = [row_key(p) for p in procs]
        same_rows = keys == list(self._procs)
        self._procs = dict(zip(keys, procs))
        mark = self.get_component_rich_style("processes--workload", partial=True)
        cells = [self._cells(p, mark) for p in procs]
        if same_rows:  # the usual tick: update changed cells in place, keep caches and cursor
            for index, (key, row) in enumerate(zip(keys, cells)):
                changed = False
                for col, cell in zip(COLUMNS, row):
                    old = self.get_cell(key, col.key)
                    if str(old) != str(cell) or old.style != cell.style:
                        self._set_cell(key, col.key, cell)
                        changed = True
                if changed:
                    self.refresh_row(index)
            return
        self.clear()
        for key, row in zip(keys, cells):
            self.add_row(*row, key=key)
        if keep is not None and row_key(keep) in self._procs:
            self.move_cursor(row=self.get_row_index(row_key(keep)), animate=False, scroll=False)

    def _set_cell(self, key: str, column: str, value: Text) -> None:
        """``update_cell`` without its repaint of the whole table (header, every row, the blank
        lines below them): the caller repaints the rows that changed (``refresh_row``). Caches
        are keyed by ``_update_count``, so the next full repaint, if any, draws the new value."""
        self._data[RowKey(key)][ColumnKey(column)] = value
        self._update_count += 1

    def _cells(self, p: GpuProcess, mark: Style | str) -> tuple[Text, ...]:
        ours = p.pid in self.workload_pids
        style = mark if ours else ""
        command = (WORKLOAD_MARK if ours else "") + fmt.command(p.command, p.name)
        return (Text(str(p.pid), style=style, justify="right"), Text(fmt.text(p.user), style=style),
                Text(str(p.gpu_index), style=style, justify="right"),
                Text(fmt.bytes_(p.gpu_mem_bytes), style=style, justify="right"),
                Text(fmt.pct(p.sm_util_pct), style=style, justify="right"),
                Text(fmt.pct(p.cpu_pct), style=style, justify="right"), Text(command, style=style))
