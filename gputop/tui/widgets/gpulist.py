"""Every GPU, as full panels or (many GPUs, short terminal) compact rows; or why there is none.

In compact mode with room to spare (``detail``), the selected GPU's full panel follows the rows.
"""

from __future__ import annotations

from typing import Any

from textual.containers import VerticalScroll
from textual.reactive import reactive

from gputop.model import Sample
from gputop.tui.widgets.gpu import GpuPanel, GpuRow, NoGpuPanel
from gputop.tui.widgets.panel import KeptLines
from gputop.view.lines import NO_GPU_FOUND


class GpuList(VerticalScroll, KeptLines):
    """Reconciles one child per GPU with each sample; rebuilds only when the set or mode changes."""

    sample: reactive[Sample | None] = reactive(None, always_update=True, repaint=False)  # children repaint
    selected: reactive[int | None] = reactive(None)
    compact: reactive[bool] = reactive(False)
    detail: reactive[bool] = reactive(False)

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.energy_j: dict[int, float | None] = {}  # per GPU, since gputop started (set by the app)
        self._shape: tuple | None = None
        self._rows: list[GpuRow | GpuPanel] = []
        self._detail: GpuPanel | None = None
        self._none: NoGpuPanel | None = None

    def watch_compact(self, compact: bool) -> None:
        self.set_class(compact, "-compact")
        self._sync()

    def watch_sample(self) -> None:
        self._sync()

    def watch_detail(self) -> None:
        self._sync()

    def watch_selected(self) -> None:
        self._sync()

    def _sync(self) -> None:
        sample = self.sample
        if sample is None:
            return
        indices = tuple(g.info.index for g in sample.gpus)
        detail = bool(indices) and self.compact and self.detail
        shape = (indices, self.compact, detail)
        if shape != self._shape:
            self._shape = shape
            self._rebuild(indices, detail)
        if self._none is not None:
            self._none.reason = sample.gpu_unavailable or NO_GPU_FOUND
            return
        title = (f"{len(indices)} GPU" + ("s" if len(indices) != 1 else "")) if self.compact else ""
        if title != self.border_title:  # setting it repaints the whole list, even unchanged
            self.border_title = title
        for gpu, child in zip(sample.gpus, self._rows):
            child.energy_j = self.energy_j.get(gpu.info.index)
            child.sample = gpu
            selected = gpu.info.index == self.selected
            if child.selected != selected:  # (setting a reactive costs even when unchanged)
                child.selected = selected
        if self._detail is not None:
            chosen = next((g for g in sample.gpus if g.info.index == self.selected), sample.gpus[0])
            self._detail.index = chosen.info.index
            self._detail.energy_j = self.energy_j.get(chosen.info.index)
            self._detail.sample = chosen

    def _rebuild(self, indices: tuple[int, ...], detail: bool) -> None:
        self.remove_children()
        self._none = self._detail = None
        if not indices:
            self._rows = []
            self._none = NoGpuPanel(classes="gpu")
            self.mount(self._none)
            return
        kind = GpuRow if self.compact else GpuPanel
        self._rows = [kind(i, classes="gpu") for i in indices]
        self.mount_all(self._rows)
        if detail:
            self._detail = GpuPanel(indices[0], classes="detail")
            self.mount(self._detail)
