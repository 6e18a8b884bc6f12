"""One GPU: a full panel (SM grid and every metric) or a compact one-line row for many GPUs."""

from __future__ import annotations

import math
from typing import Any

from textual import events
from textual.markup import escape
from textual.message import Message
from textual.reactive import reactive

from gputop import format as fmt
from gputop.model import GpuInfo, GpuSample
from gputop.tui.widgets.panel import Item, Line, Panel, Rows, cells, item, pack

LOST = "lost (fell off the bus?)"
SM_ON, SM_OFF = "■", "·"
BAR_BLOCKS = " ▏▎▍▌▋▊▉█"


class GpuSelected(Message):
    """The user clicked a GPU: the app makes it the selected device."""

    def __init__(self, index: int) -> None:
        super().__init__()
        self.index = index


def short_name(name: str) -> str:
    return name.removeprefix("NVIDIA ").removeprefix("Tesla ")


def sms_active_text(gpu: GpuSample) -> str | None:
    """"118 of 132 SMs active", or None without GPM."""
    n = gpu.sms_active
    return None if n is None else f"{n:.0f} of {gpu.info.sm_count} SMs active"


def trap_warning(gpu: GpuSample) -> str | None:
    """The plain-words warning when NVML util and SM activity disagree."""
    if not fmt.util_trap(gpu.gpu_util_pct, gpu.sm_active_pct):
        return None
    busy = gpu.sms_active
    of = f"{busy:.0f} of {gpu.info.sm_count} SMs" if busy is not None else fmt.pct(gpu.sm_active_pct) + " of SMs"
    return f"util {fmt.pct(gpu.gpu_util_pct)} but only {of} busy: kernels are small or stalled"


def panel_subtitle(gpu: GpuSample) -> str:
    """What the device is, under its panel: "Hopper · PCIe 5x16" (the link as at start; with
    its most where it had trained below it: "PCIe 1x16 (max 4x16)")."""
    info = gpu.info
    link = fmt.pcie_links(info.pcie_link_gen, info.pcie_link_width, info.pcie_link_gen_max,
                          info.pcie_link_width_max)
    parts = [info.architecture or "", "" if link == fmt.NA else f"PCIe {link}"]
    return " · ".join(p for p in parts if p)


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
            info = self._titled = gpu.info
            title = f"GPU{info.index} {escape(short_name(info.name))}"  # a name is text, not markup
            if title != self.border_title:  # setting it repaints the whole panel, even unchanged
                self.border_title = title
            subtitle = panel_subtitle(gpu)
            if subtitle != self.border_subtitle:  # static: set once, not every frame
                self.border_subtitle = subtitle

    def render_key(self) -> tuple:
        return (self.sample, self.energy_j)

    def build(self, width: int) -> list[Line]:
        gpu = self.sample
        if gpu is None:
            return [item(("waiting for the first sample", self.style_of("panel--dim")))]
        if gpu.lost:
            return [item((LOST, self.style_of("panel--lost")))]
        width = max(width, 20)
        return pack(self._blocks(gpu, width), width)

    def _blocks(self, gpu: GpuSample, width: int) -> list[list[Item] | Rows]:
        f, st = self.item, self.style_of
        sms = sms_active_text(gpu)
        head = (item((sms, st("panel--value")), f" ({fmt.pct(gpu.sm_active_pct)})") if sms
                else f("SM activity", "n/a", (f" ({_sm_gap(gpu)})", st("panel--dim"))))
        blocks: list[list[Item] | Rows] = [[head, f("NVML util", fmt.pct(gpu.gpu_util_pct)),
                                            f("tensor", fmt.pct(gpu.tensor_active_pct))]]
        grid = self._sm_grid(gpu, width)
        if grid is not None:
            blocks.append(grid)
        warning = trap_warning(gpu)
        if warning:
            blocks.append([item(("⚠ " + warning, st("panel--warn")))])
        peak = gpu.info.peak_dram_bw_bytes_per_s
        mem_pct = fmt.ratio(gpu.mem_used_bytes, gpu.mem_total_bytes)
        power_pct = fmt.ratio(gpu.power_w, gpu.power_limit_w)
        blocks += [
            [f("DRAM", fmt.rate(gpu.dram_bw_bytes_per_s), f" {fmt.pct(gpu.dram_bw_util_pct)} of {fmt.rate(peak)}"),
             f("memory", fmt.used_total(gpu.mem_used_bytes, gpu.mem_total_bytes), f" ({fmt.pct(mem_pct)})")],
            [f("power", fmt.watts(gpu.power_w), f" of {fmt.watts(gpu.power_limit_w)} ({fmt.pct(power_pct)})"),
             f("energy", fmt.joules(self.energy_j), " since start")],
            [f("clocks SM", fmt.mhz(gpu.sm_clock_mhz), f", mem {fmt.mhz(gpu.mem_clock_mhz)}"),
             f("temp", fmt.celsius(gpu.temp_c)), f("fan", fmt.pct(gpu.fan_pct)),
             f("pstate", "n/a" if gpu.pstate is None else f"P{gpu.pstate}")],
            [f("throttle", fmt.reasons(gpu.clock_event_reasons))],
            [f("PCIe", f"↑{fmt.rate(gpu.pcie_tx_bytes_per_s)} ↓{fmt.rate(gpu.pcie_rx_bytes_per_s)}"),
             f("NVLink", f"↑{fmt.rate(gpu.nvlink_tx_bytes_per_s)} ↓{fmt.rate(gpu.nvlink_rx_bytes_per_s)}")],
        ]
        return blocks

    def _sm_grid(self, gpu: GpuSample, width: int) -> Rows | None:
        """One cell per SM, ceil(active) of them filled; rows as wide as the panel."""
        count, active = gpu.info.sm_count, gpu.sms_active
        if not count or active is None:
            return None
        on = min(count, math.ceil(active - 1e-9))
        rows = -(-count // width)
        per_row = -(-count // rows)  # balanced rows: 2 x 66 rather than 92 + 40
        sm_on, sm_off = self.style_of("sm--on"), self.style_of("sm--off")
        lines = []
        for start in range(0, count, per_row):
            end = min(start + per_row, count)
            lines.append(item((SM_ON * (max(0, min(on, end) - start)), sm_on),
                              (SM_OFF * (end - max(on, start) if end > on else 0), sm_off)))
        return Rows(lines)


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
        name = name if len(name) <= name_width else name[:name_width - 1] + "…"
        line = item((f"{gpu.info.index} ", st("panel--value")), (f"{name:<{name_width}}", st("panel--label")))
        if gpu.lost:
            return [line + item(("  " + LOST, st("panel--lost")))]
        n = gpu.sms_active
        activity = gpu.sm_active_pct if n is not None else gpu.gpu_util_pct
        line += item(" ", (bar(activity, 10), self.load_style(activity)))
        sms = (f"{n:>3.0f}/{gpu.info.sm_count} SMs" if n is not None else "SMs n/a   ")
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

    reason: reactive[str] = reactive("no NVIDIA GPU found")

    def render_key(self) -> tuple:
        return (self.reason,)

    def build(self, width: int) -> list[Line]:
        lead = "No GPU shown: "
        if len(lead) + len(self.reason) > width:  # one line where the short form fits (40 columns)
            lead = "No GPU: "
        return [item((lead, self.style_of("panel--label")), (self.reason, self.style_of("panel--value")))]


def _sm_gap(gpu: GpuSample) -> str:
    i = gpu.info
    return fmt.sm_gap(i.architecture, i.gpm_supported, i.mig_enabled)
