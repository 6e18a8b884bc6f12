"""GPU processes across every device: a sortable table whose cursor row is the kill target.

Rows of a launched workload's processes are marked (a class style and a leading marker on the
command). An empty table says why it is empty: no GPU, no GPU processes, or not readable.

The table draws its own lines (Textual's line API, see ``rows.py``) instead of being a
``DataTable``: that one re-rendered every cell of a changed row through Rich and, its caches
being keyed on one update counter, every line after any cell changed (~1.3 ms of a 1 Hz frame at 160x50).
Here a row's line is built from its cell strings once and kept until its values, the cursor,
the hover or a style change; a sample repaints only the rows whose values changed.
"""

from __future__ import annotations

from typing import Any, Callable, NamedTuple

from rich.segment import Segment
from rich.style import Style
from textual.message import Message
from textual.reactive import reactive
from textual.strip import Strip

from gputop import format as fmt
from gputop.model import GpuProcess, Sample
from gputop.tui.widgets.rows import RowTable


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
    return (
        a.gpu_unavailable == b.gpu_unavailable
        and len(a.gpus) == len(b.gpus)
        and all(x.lost == y.lost and x.processes is y.processes for x, y in zip(a.gpus, b.gpus))
    )


def row_key(proc: GpuProcess) -> str:
    return f"{proc.gpu_index}:{proc.pid}"


def cells(p: GpuProcess, ours: bool) -> tuple[str, ...]:
    """The seven cells of ``p``'s row as shown (``ours``: a launched workload's process)."""
    command = (WORKLOAD_MARK if ours else "") + fmt.command(p.command, p.name)
    return (
        str(p.pid),
        fmt.text(p.user),
        str(p.gpu_index),
        fmt.bytes_(p.gpu_mem_bytes),
        fmt.pct(p.sm_util_pct),
        fmt.pct(p.cpu_pct),
        command,
    )


class ProcessTable(RowTable):
    """Rows are rebuilt when the processes were scanned again (the sampler carries the same
    tuples in between); the cursor stays on the same process while it lives."""

    COMPONENT_CLASSES = RowTable.COMPONENT_CLASSES | {"processes--workload", "processes--empty"}
    RIGHT = tuple(c.right for c in COLUMNS)

    class HeaderSelected(Message):
        """A column's header was clicked: the table sorts by it (the app shows the new sort)."""

        def __init__(self, column_key: str) -> None:
            super().__init__()
            self.column_key = column_key

    sample: reactive[Sample | None] = reactive(None, always_update=True, repaint=False)  # changed rows repaint
    sort_key: reactive[str] = reactive("mem", repaint=False)
    workload_pids: reactive[frozenset[int]] = reactive(frozenset(), repaint=False)
    # said instead of "no GPU processes..." while some GPU is there (a replay has no process list)
    empty_note: reactive[str | None] = reactive(None, repaint=False)

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._procs: dict[str, GpuProcess] = {}
        self.empty_text = "waiting for the first sample"
        self._shown: Sample | None = None  # the sample the rows were last built from
        self._ours: list[bool] = []  # per row: a launched workload's process
        self._relabel()

    @property
    def message(self) -> str | None:
        """What the empty table says (None while it has rows)."""
        return None if self.row_count else self.empty_text

    @property
    def sort_label(self) -> str:
        return next(c.label for c in COLUMNS if c.key == self.sort_key)

    @property
    def selected_process(self) -> GpuProcess | None:
        if not self.row_count:
            return None
        return self._procs.get(self.row_keys[self.cursor_row])

    def cycle_sort(self) -> None:
        self.sort_key = SORT_CYCLE[(SORT_CYCLE.index(self.sort_key) + 1) % len(SORT_CYCLE)]

    def watch_sort_key(self) -> None:
        self._relabel()
        self._rebuild()

    def watch_sample(self, sample: Sample | None) -> None:
        # The process table is scanned every few seconds and the very same tuples are carried
        # in between: a sample whose devices hold the same ones (and are lost or not as before)
        # changes no row, and comparing every cell to find that out would cost a frame.
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

    def header_clicked(self, column: int) -> None:
        """Clicking a column header sorts by it and says so (the app shows the sort)."""
        self.sort_key = COLUMNS[column].key
        self.post_message(self.HeaderSelected(self.sort_key))

    def row_mark(self, index: int) -> Style | None:
        return self.component_style("processes--workload", partial=True) if self._ours[index] else None

    def render_line(self, y: int) -> Strip:
        if self.row_count or y != 1:
            return super().render_line(y)
        style = self.get_component_rich_style("processes--empty")  # full: resolves $text-muted
        return Strip([Segment(" " + self.empty_text, style)]).crop_extend(0, self.size.width, self.rich_style)

    def _relabel(self) -> None:
        self.set_header(
            tuple(c.label + (" ▼" if c.descending else " ▲") if c.key == self.sort_key else c.label for c in COLUMNS),
            tuple(len(c.label) + 2 for c in COLUMNS),
        )  # room for the sort arrow

    def _rebuild(self) -> None:
        sample = self.sample
        if sample is None:
            return
        procs = [p for g in sample.gpus if not g.lost and g.processes for p in g.processes]
        live = [g for g in sample.gpus if not g.lost]
        empty_text = (self.empty_note if live and self.empty_note else None) or empty_reason(sample)
        if empty_text != self.empty_text:
            self.empty_text = empty_text
            self.refresh()
        col = next(c for c in COLUMNS if c.key == self.sort_key)
        procs.sort(key=col.sort, reverse=col.descending)
        self._procs = {row_key(p): p for p in procs}
        self._ours = ours = [p.pid in self.workload_pids for p in procs]
        self.set_rows(list(self._procs), [cells(p, o) for p, o in zip(procs, ours)])
