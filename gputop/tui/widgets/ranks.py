"""A distributed job's ranks: a row each (pid, GPU, steps, steps/s, step p50, data wait, its GPU's
SM %, state), the rank that stopped and the straggler with its reason under them. Hidden until the
job has ranks: a single-process job's view is unchanged.

What it shows comes from the ``WorkloadState`` the app hands down (``ranks``, ``straggler``,
``rank_stall``: gputop.workload.ranks) and the GPUs of the latest sample; the text is built by
gputop.view.lines.ranks_lines.
"""

from __future__ import annotations

from textual.reactive import reactive

from gputop.model import GpuSample, WorkloadState
from gputop.tui.widgets.panel import Panel
from gputop.view.lines import Line, ranks_lines


class RanksPanel(Panel):
    """The ranks table (``state``: the workload's; ``gpus``: the sample's devices)."""

    state: reactive[WorkloadState | None] = reactive(None)
    gpus: reactive[tuple[GpuSample, ...]] = reactive(())

    def on_mount(self) -> None:
        self.border_title = "ranks"
        self.display = False

    def watch_state(self, state: WorkloadState | None) -> None:
        shown = state is not None and bool(state.ranks)
        if shown != self.display:
            self.display = shown
        self.relayout_if_resized()

    def render_key(self) -> tuple:
        state = self.state
        if state is None:
            return ()
        return (state.ranks, state.straggler, state.rank_stall, self.gpus)

    def build(self, width: int) -> list[Line]:
        state = self.state
        if state is None or not state.ranks:
            return []
        return ranks_lines(state.ranks, state.straggler, state.rank_stall, self.gpus, self)
