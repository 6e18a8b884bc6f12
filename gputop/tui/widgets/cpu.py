"""The host: every core as a cell coloured by load, busy cores as a count, RAM and package power;
the cores a launched job ran on over the last interval are marked (``job_cores``)."""

from __future__ import annotations

from textual.reactive import reactive

from gputop import format as fmt
from gputop.model import CpuSample
from gputop.tui.widgets.panel import Item, Line, Panel, Piece, Rows, item, pack

LEVELS = "▁▂▃▄▅▆▇█"
WIDE_CELL = 4  # " 97%" or "3.1G"


class CpuPanel(Panel):
    """Per-core cells (utilization, or frequency when ``show_freq``), then the totals."""

    sample: reactive[CpuSample | None] = reactive(None, repaint=False)  # changed lines repaint
    show_freq: reactive[bool] = reactive(False, layout=True)
    max_grid_rows: reactive[int] = reactive(6, layout=True)
    job_cores: reactive[frozenset[int]] = reactive(frozenset())
    COMPONENT_CLASSES = {"cpu--job"}

    def on_mount(self) -> None:
        self.border_title = "CPU"

    def watch_sample(self) -> None:
        self.update_lines()

    def watch_show_freq(self, show: bool) -> None:
        self.border_subtitle = "core MHz (f)" if show else "core load (f: MHz)"

    def watch_job_cores(self) -> None:
        self.update_lines()

    def render_key(self) -> tuple:
        return (self.sample, self.show_freq, self.max_grid_rows, self.job_cores)

    def build(self, width: int) -> list[Line]:
        cpu = self.sample
        if cpu is None:
            return [item(("waiting for the first sample", self.style_of("panel--dim")))]
        width = max(width, 10)
        f = self.item
        n = len(cpu.core_util_pct)
        busy = item((f"{cpu.busy_cores:.1f} of {n} cores busy", self.style_of("panel--value")),
                    f" ({fmt.pct(cpu.cpu_util_pct)})")
        first = [busy, f("load", fmt.num(cpu.load1, 2))]
        if self.job_cores:
            first.append(item(("job's cores underlined", self.style_of("cpu--job"))))
        if self.show_freq:
            known = [m for m in cpu.core_freq_mhz if m is not None]
            first.append(f("avg freq", fmt.mhz(sum(known) / len(known) if known else None)))
        blocks: list[list[Item] | Rows] = [
            first,
            self._grid(cpu, width),
            [f("RAM", fmt.used_total(cpu.ram_used_bytes, cpu.ram_total_bytes)),
             f("package power", fmt.watts(cpu.cpu_power_w))],
        ]
        return pack(blocks, width)

    def _grid(self, cpu: CpuSample, width: int) -> Rows:
        """Four-column cells while they fit in ``max_grid_rows``; else one block glyph per core."""
        n = len(cpu.core_util_pct)
        per_row = max(1, (width + 1) // (WIDE_CELL + 1))
        wide = -(-n // per_row) <= self.max_grid_rows
        cells: list[Piece] = []
        job = self.job_cores
        mark = self.style_of("cpu--job") if job else None
        for core, (util, mhz) in enumerate(zip(cpu.core_util_pct, cpu.core_freq_mhz)):
            style = self.load_style(util)
            if mark is not None and core in job:
                style = style + mark
            if wide:
                label = fmt.ghz_cell(mhz) if self.show_freq else f"{util:3.0f}%"
                cells.append((f"{label:>{WIDE_CELL}}", style))
            else:
                level = LEVELS[min(len(LEVELS) - 1, int(util / 100 * len(LEVELS)))]
                cells.append((level, style))
        if not wide:
            per_row = width
        sep = (" ", None)
        rows: list[Line] = []
        for i in range(0, n, per_row):
            row = cells[i:i + per_row]
            rows.append(item(*(p for cell in row for p in (sep, cell)))[1:] if wide else item(*row))
        return Rows(rows)
