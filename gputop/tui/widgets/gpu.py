"""One GPU: a full panel (SM grid and every metric) or a compact one-line row for many GPUs."""

from __future__ import annotations

from typing import Any

from textual import events
from textual.markup import escape
from textual.message import Message
from textual.reactive import reactive

from gputop import format as fmt
from gputop.model import GpuInfo, GpuSample
from gputop.tui.widgets.panel import Panel
from gputop.view.lines import (
    LOST,
    NO_GPU_FOUND,
    Line,
    cells,
    gpu_lines,
    gpu_title,
    item,
    load_style,
    no_gpu_lines,
    panel_subtitle,
    short_name,
    trap_warning,
)

BAR_BLOCKS = " ▏▎▍▌▋▊▉█"
__all__ = ["GpuPanel", "GpuRow", "GpuSelected", "NoGpuPanel", "bar", "panel_subtitle", "trap_warning"]


class GpuSelected(Message):
    """The user clicked a GPU: the app makes it the selected device."""

    def __init__(self, index: int) -> None:
        super().__init__()
        self.index = index


class _GpuWidget(Panel):
    """What the full panel and the compact row share: data in, click out, state as classes."""

    sample: reactive[GpuSample | None] = reactive(None, repaint=False)  # changed lines repaint
    selected: reactive[bool] = reactive(False)

    def __init__(self, index: int, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.index = index
        self.energy_j: float | None = None  # since gputop started; set (by GpuList) before sample
        self._state: tuple[bool, bool] | None = None  # (-lost, -trap) as last set
        self._titled: GpuInfo | None = None  # the device the border's title and subtitle are of

    def watch_sample(self, gpu: GpuSample | None) -> None:
        self.update_lines()
        state = (gpu is not None and gpu.lost, gpu is not None and trap_warning(gpu) is not None)
        if state != self._state:  # (set_class walks the classes and the styles even unchanged)
            self._state = state
            self.set_class(state[0], "-lost")
            self.set_class(state[1], "-trap")

    def watch_selected(self, selected: bool) -> None:
        self.set_class(selected, "-selected")

    def on_click(self, event: events.Click) -> None:
        self.post_message(GpuSelected(self.index))


class GpuPanel(_GpuWidget):
    """Every metric of one GPU, with its SMs drawn as a grid of cells."""

    def watch_sample(self, gpu: GpuSample | None) -> None:
        super().watch_sample(gpu)
        if gpu is not None and gpu.info is not self._titled:  # (the same object every sample)
            self._titled = gpu.info
            title = escape(gpu_title(gpu))  # a name is text, not markup
            if title != self.border_title:  # setting it repaints the whole panel, even unchanged
                self.border_title = title
            subtitle = panel_subtitle(gpu)
            if subtitle != self.border_subtitle:  # static: set once, not every frame
                self.border_subtitle = subtitle

    def render_key(self) -> tuple:
        return (self.sample, self.energy_j)

    def build(self, width: int) -> list[Line]:
        return gpu_lines(self.sample, width, self, self.energy_j)


def bar(pct: float | None, width: int) -> str:
    """A fractional block bar, ``width`` cells: "█████▌    "."""
    if pct is None:
        return "?" * width
    eighths = round(max(0.0, min(pct, 100.0)) / 100 * width * 8)
    full, part = divmod(eighths, 8)
    return ("█" * full + (BAR_BLOCKS[part] if part else "")).ljust(width)


class GpuRow(_GpuWidget):
    """One line per GPU: the fields that fit, most telling first."""

    def render_key(self) -> tuple:
        return (self.sample,)

    def build(self, width: int) -> list[Line]:
        gpu = self.sample
        st = self.style_of
        if gpu is None:
            return [item((f"GPU{self.index} waiting", st("panel--dim")))]
        name_width = 16 if width < 110 else 28  # room for "H100 80GB HBM3 (simulated)" when wide
        name = short_name(gpu.info.name)
        name = name if len(name) <= name_width else name[: name_width - 1] + "…"
        line = item((f"{gpu.info.index} ", st("panel--value")), (f"{name:<{name_width}}", st("panel--label")))
        if gpu.lost:
            return [line + item(("  " + LOST, st("panel--lost")))]
        n = gpu.sms_active
        activity = gpu.sm_active_pct if n is not None else gpu.gpu_util_pct
        line += item(" ", (bar(activity, 10), load_style(self, activity)))
        sms = f"{n:>3.0f}/{gpu.info.sm_count} SMs" if n is not None else "SMs n/a   "
        f = self.item
        fields = [
            item((sms, st("panel--value"))),
            f("util", fmt.pct(gpu.gpu_util_pct)),
            f("bw", fmt.pct(gpu.dram_bw_util_pct)),
            f("mem", fmt.bytes_(gpu.mem_used_bytes), f"/{fmt.bytes_(gpu.mem_total_bytes)}"),
            f("", fmt.watts(gpu.power_w), f"/{fmt.watts(gpu.power_limit_w)}"),
            f("", fmt.celsius(gpu.temp_c)),
            f("", "n/a" if gpu.pstate is None else f"P{gpu.pstate}"),
        ]
        if gpu.info.vendor == "amd":  # AMD's own words: CUs busy (GFX activity), UMC activity, hotspot
            fields = [
                f("CUs busy", fmt.pct(gpu.gpu_util_pct)),
                f("UMC", fmt.pct(gpu.mem_busy_pct)),
                fields[4],  # power
                f("hotspot", fmt.celsius(gpu.temp_hotspot_c)),
                fields[3],  # memory
            ]
        if trap_warning(gpu):
            fields.insert(1, item(("⚠ few SMs busy", st("panel--warn"))))
        used = cells(line)
        for field in fields:
            n_cells = cells(field)
            if used + 2 + n_cells > width:
                break
            line += (("  ", None), *field)
            used += 2 + n_cells
        return [line]

    def watch_sample(self, gpu: GpuSample | None) -> None:
        super().watch_sample(gpu)
        if gpu is not None:
            self.tooltip = trap_warning(gpu)


class NoGpuPanel(Panel):
    """Why no GPU is shown: a plain statement, not an error screen."""

    reason: reactive[str] = reactive(NO_GPU_FOUND)

    def render_key(self) -> tuple:
        return (self.reason,)

    def build(self, width: int) -> list[Line]:
        return no_gpu_lines(self.reason, width, self)
