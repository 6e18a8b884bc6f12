"""Number formatting and thresholds, in one place for the TUI, the snapshot and the report.

Every formatter takes ``None`` and returns "n/a": a value the hardware does not give is never
shown as 0.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

NA = "n/a"

# Load thresholds shared by every view (a cell's CSS class, a snapshot's marker).
BUSY_PCT = 50.0
HOT_PCT = 90.0
# NVML util this high while SM activity is this low: kernels run, but on few SMs.
UTIL_TRAP_GPU_PCT = 90.0
UTIL_TRAP_SM_PCT = 50.0


def text(value: object | None) -> str:
    return NA if value is None else str(value)


def num(value: float | None, digits: int = 1) -> str:
    return NA if value is None else f"{value:.{digits}f}"


def count(value: int | None) -> str:
    """A whole number, thousands separated as the bundled workloads print theirs: 18,347."""
    return NA if value is None else f"{value:,}"


def amount(value: float | None) -> str:
    """A rate or quantity with the digits that matter, thousands separated: 18,347 (from 100
    on, no decimals), 19.1, 0.0371 (a slow CPU's 0.04 steps/s is not "0.0")."""
    if value is None:
        return NA
    if abs(value) >= 100:
        return f"{value:,.0f}"
    if abs(value) >= 1:
        return f"{value:.1f}"
    return _three_digits(value)


def _three_digits(value: float) -> str:
    """Three significant digits, never in scientific notation: 0.0371, 0.00005 (not 5e-05)."""
    if value == 0:
        return "0"
    text = f"{value:.{2 - math.floor(math.log10(abs(value)))}f}"
    return text.rstrip("0").rstrip(".") if "." in text else text


def ms_per_s(value: float | None) -> str:
    """Time spent per second of wall time (gputop's own driver time): 3.2 ms/s."""
    return NA if value is None else f"{value:.1f} ms/s"


def pct(value: float | None, digits: int = 0) -> str:
    return NA if value is None else f"{value:.{digits}f} %"


def small_pct(value: float | None) -> str:
    """A percentage that may be tiny (MFU of a CPU run): 18.5 %, 0.042 %, never "0.0 %"."""
    if value is None:
        return NA
    return f"{value:.1f} %" if abs(value) >= 1 or value == 0 else f"{value:.2g} %"


def _scaled(value: float, units: tuple[str, ...], step: float) -> str:
    for unit in units[:-1]:
        if abs(value) < step:
            return f"{value:.3g} {unit}" if abs(value) < 100 else f"{value:.0f} {unit}"
        value /= step
    return f"{value:.3g} {units[-1]}" if abs(value) < 100 else f"{value:.0f} {units[-1]}"


def bytes_(value: float | None) -> str:
    """Binary units, as memory sizes are: 79.6 GiB."""
    if value is None:
        return NA
    return _scaled(float(value), ("B", "KiB", "MiB", "GiB", "TiB", "PiB"), 1024.0)


def rate(value: float | None) -> str:
    """Decimal units, as bandwidths are quoted: 3.35 TB/s."""
    if value is None:
        return NA
    return _scaled(float(value), ("B/s", "kB/s", "MB/s", "GB/s", "TB/s", "PB/s"), 1000.0)


def used_total(used: float | None, total: float | None) -> str:
    return f"{bytes_(used)} / {bytes_(total)}"


def watts(value: float | None) -> str:
    return NA if value is None else f"{value:.0f} W"


def joules(value: float | None) -> str:
    if value is None:
        return NA
    return _scaled(float(value), ("J", "kJ", "MJ", "GJ"), 1000.0)


def tflops(value: float | None) -> str:
    """TFLOP/s with the digits that matter: 183.2, 8.24, 0.0371 (a CPU's 0.04 is not "0.0")."""
    if value is None:
        return NA
    if abs(value) >= 100:
        return f"{value:.1f}"
    if abs(value) >= 1:
        return f"{value:.2f}"
    return _three_digits(value)


def mhz(value: float | None) -> str:
    return NA if value is None else f"{value:.0f} MHz"


def celsius(value: float | None) -> str:
    return NA if value is None else f"{value:.0f} °C"


def load_class(value: float | None) -> str:
    """CSS class for a load cell: colour lives in the stylesheet, state is a class."""
    if value is None:
        return "-na"
    if value >= HOT_PCT:
        return "-hot"
    if value >= BUSY_PCT:
        return "-busy"
    return "-idle" if value < 5 else "-light"


def util_trap(gpu_util_pct: float | None, sm_active_pct: float | None) -> bool:
    """NVML says the GPU is busy while most SMs sit idle: the classic misreading of 'util'."""
    if gpu_util_pct is None or sm_active_pct is None:
        return False
    return gpu_util_pct >= UTIL_TRAP_GPU_PCT and sm_active_pct < UTIL_TRAP_SM_PCT


# nvidia-smi's clock event labels (what gputop.sources.nvml reports) in plain words.
_REASON_WORDS = {
    "idle": "idle",
    "applications_clocks_setting": "application clocks set",
    "sw_power_cap": "power cap",
    "hw_slowdown": "hardware slowdown",
    "sync_boost": "sync boost",
    "sw_thermal_slowdown": "too hot (software)",
    "hw_thermal_slowdown": "too hot (hardware)",
    "hw_power_brake_slowdown": "power brake",
    "display_clock_setting": "display clocks",
    "board_limit": "board limit",
    "reliability": "reliability limit",
    # AMD's violation status (gputop.sources.amd)
    "amd_power": "power limit (PPT)",
    "amd_socket_thermal": "too hot (socket)",
    "amd_hbm_thermal": "HBM too hot",
    "amd_vr_thermal": "voltage regulator too hot",
    "amd_prochot": "PROCHOT (too hot)",
}


def reasons(value: tuple[str, ...] | None) -> str:
    """Why clocks are held down, in words: "power cap, too hot (hardware)"; "none" when nothing."""
    if value is None:
        return NA
    if not value:
        return "none"
    return ", ".join(_REASON_WORDS.get(r, r.replace("_", " ")) for r in value)


def ratio(part: float | None, whole: float | None) -> float | None:
    """``part`` as a percentage of ``whole``; None where either is unknown or the whole is 0."""
    if part is None or not whole:
        return None
    return 100.0 * part / whole


def ghz_cell(value: float | None) -> str:
    """A core frequency in four columns for the CPU grid: "3.1G"; "n/a" where unknown."""
    return NA if value is None else f"{value / 1000:.1f}G"


_PRE_GPM_ARCHITECTURES = frozenset({"Kepler", "Maxwell", "Pascal", "Volta", "Turing", "Ampere", "Ada"})


def sm_gap(architecture: str | None, gpm_supported: bool, mig_enabled: bool) -> str:
    """Why SM activity (GPM) reads n/a on a device, in a few words for after the "n/a"."""
    if mig_enabled:
        return "not read on a MIG-enabled device"
    if gpm_supported:
        return "first GPM reading pending"
    if architecture in _PRE_GPM_ARCHITECTURES:
        return "needs GPM: Hopper or newer"
    if architecture is None:
        return "GPM not supported on this device"
    return "GPM not available from this driver"  # Hopper or newer, but the driver lacks GPM


NOT_VISIBLE = "(not visible from this pid namespace: a container, or another host's process)"


def command(command_line: str | None, name: str | None) -> str:
    """A GPU process's command; a pid this namespace cannot see says so (not "n/a")."""
    return command_line or name or NOT_VISIBLE


def ended(status: str, stopped_by: str | None = None) -> str:
    """How a workload's process ended, in the words every view uses: ``finished``, ``failed``,
    ``stopped by gputop`` (``at --duration``, ``on SIGTERM`` where it is known what asked)."""
    if status == "ok":
        return "finished"
    if status == "stopped":
        if not stopped_by:
            return "stopped by gputop"
        return f"stopped by gputop {'at' if stopped_by.startswith('--') else 'on'} {stopped_by}"
    return status  # "failed", "running"


def step_time(seconds: float | None) -> str:
    """A step time: "68.1 ms", "1.08 s"."""
    if seconds is None:
        return NA
    if seconds >= 100:  # 1,234 s, not 1.23e+03 s
        return f"{seconds:,.0f} s"
    return f"{seconds:.3g} s" if seconds >= 1 else f"{seconds * 1e3:.3g} ms"


def core_ranges(cores: Iterable[int]) -> str:
    """{0, 1, 2, 5} as "0-2,5"."""
    runs: list[list[int]] = []
    for c in sorted(cores):
        if runs and c == runs[-1][-1] + 1:
            runs[-1].append(c)
        else:
            runs.append([c])
    return ",".join(f"{r[0]}-{r[-1]}" if len(r) > 2 else ",".join(map(str, r)) for r in runs)


def pcie_link(gen: int | None, width: int | None) -> str:
    """A PCIe link as "5x16" (generation x lanes); n/a where NVML gave neither."""
    if gen is None and width is None:
        return NA
    return f"{NA if gen is None else gen}x{NA if width is None else width}"


def pcie_links(gen: int | None, width: int | None, gen_max: int | None, width_max: int | None) -> str:
    """The link now and, where it trained below it, its most: "5x16", "1x16 (max 4x16)"."""
    now, most = pcie_link(gen, width), pcie_link(gen_max, width_max)
    return now if most in (now, NA) else f"{now} (max {most})"
