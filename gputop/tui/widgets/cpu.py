"""The host: every core as a cell coloured by load, busy cores as a count, RAM and package power;
the cores a launched job ran on over the last interval are marked (``job_cores``)."""

from __future__ import annotations

from textual.reactive import reactive

from gputop.model import CpuSample
from gputop.tui.widgets.panel import Panel
from gputop.view.lines import GRID_ROWS, Line, cpu_lines, cpu_subtitle


class CpuPanel(Panel):
    """Per-core cells (utilization, or frequency when ``show_freq``), then the totals."""

    sample: reactive[CpuSample | None] = reactive(None, repaint=False)  # changed lines repaint
    show_freq: reactive[bool] = reactive(False, layout=True)
    max_grid_rows: reactive[int] = reactive(GRID_ROWS, layout=True)
    job_cores: reactive[frozenset[int]] = reactive(frozenset())
    COMPONENT_CLASSES = {"cpu--job"}

    def on_mount(self) -> None:
        self.border_title = "CPU"

    def watch_sample(self) -> None:
        self.update_lines()

    def watch_show_freq(self, show: bool) -> None:
        self.border_subtitle = cpu_subtitle(show)

    def watch_job_cores(self) -> None:
        self.update_lines()

    def render_key(self) -> tuple:
        return (self.sample, self.show_freq, self.max_grid_rows, self.job_cores)

    def build(self, width: int) -> list[Line]:
        return cpu_lines(self.sample, width, self, show_freq=self.show_freq, job_cores=self.job_cores, max_grid_rows=self.max_grid_rows)
