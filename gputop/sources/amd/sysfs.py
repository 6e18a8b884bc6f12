"""AMD GPUs without ROCm: what the amdgpu driver alone gives in sysfs (Radeon desktops).

Each ``/sys/class/drm/cardN/device`` whose driver is amdgpu is one GPU. Per tick:
``gpu_busy_percent`` (the GFX engine's busy share: ``gpu_util_pct``), ``mem_busy_percent`` (the
memory controllers': ``mem_busy_pct``), ``mem_info_vram_used``/``_total`` (bytes), and from its
hwmon folder ``power1_average`` (else ``power1_input``; microwatts), ``power1_cap`` (the limit),
``temp1_input``..``temp3_input`` by their labels (edge, junction, mem; millidegrees),
``freq1_input``/``freq2_input`` (sclk, mclk; Hz), the fan's ``pwm1`` over ``pwm1_max``. Energy is
power integrated from the first reading (the driver keeps no counter here). A file that is not
there, or unreadable, is n/a. Processes are n/a (no library to ask).
"""

from __future__ import annotations

import os
import time
from typing import Any, Callable, Mapping

from gputop.model import GpuInfo, GpuProcess, GpuSample
from gputop.sources.amd.info import cpu_list, node_cpus
from gputop.sources.amd.library import AmdUnavailable
from gputop.sources.gpu import DriverTime

DRM = "/sys/class/drm"
AMD_VENDOR = "0x1002"
Clock = Callable[[], float]
_TEMPS = {"edge": "temp_c", "junction": "temp_hotspot_c", "mem": "temp_mem_c"}
_CLOCKS = {"sclk": "sm_clock_mhz", "mclk": "mem_clock_mhz"}
DRIVER_TIME = DriverTime()  # reads of the driver's files (each one a call into amdgpu)


def _text(path: str) -> str | None:
    start = time.perf_counter_ns()
    try:
        with open(path) as f:
            return f.read().strip()
    except OSError:  # absent, or the driver refused (a GPU asleep answers EBUSY/EPERM)
        return None
    finally:
        DRIVER_TIME.add(time.perf_counter_ns() - start)


def _int(path: str) -> int | None:
    text = _text(path)
    try:
        return int(text) if text is not None else None
    except ValueError:
        return None


def _link_gen(text: str | None) -> int | None:
    """ "16.0 GT/s PCIe" -> 4."""
    if not text:
        return None
    rate = {"2.5": 1, "5.0": 2, "8.0": 3, "16.0": 4, "32.0": 5, "64.0": 6}
    return rate.get(text.split()[0])


class _Card:
    def __init__(self, index: int, device: str, clock: Clock) -> None:
        self.device = device
        self.clock = clock
        hwmons = sorted(os.listdir(os.path.join(device, "hwmon"))) if os.path.isdir(os.path.join(device, "hwmon")) else []
        self.hwmon = os.path.join(device, "hwmon", hwmons[0]) if hwmons else None
        self.energy_j: float | None = None
        self.last_power: tuple[float, float] | None = None
        self.info = self._info(index)

    def _info(self, index: int) -> GpuInfo:
        d = self.device
        product = _text(os.path.join(d, "product_name"))
        device_id = _text(os.path.join(d, "device"))
        return GpuInfo(
            index=index,
            name=product or f"AMD GPU {device_id or ''} (amdgpu)".replace("  ", " "),
            uuid=_text(os.path.join(d, "unique_id")) or None,
            pci_bus_id=os.path.basename(os.path.realpath(d)),
            architecture=None,
            sm_count=None,
            mem_bus_width_bits=None,
            max_mem_clock_mhz=None,
            peak_dram_bw_bytes_per_s=None,
            driver_version=_text("/sys/module/amdgpu/version") or None,
            cuda_version=None,
            pcie_link_gen=_link_gen(_text(os.path.join(d, "current_link_speed"))),
            pcie_link_width=_int(os.path.join(d, "current_link_width")),
            pcie_link_gen_max=_link_gen(_text(os.path.join(d, "max_link_speed"))),
            pcie_link_width_max=_int(os.path.join(d, "max_link_width")),
            cpu_affinity=cpu_list(_text(os.path.join(d, "local_cpulist"))) or node_cpus(_int(os.path.join(d, "numa_node"))),
            vendor="amd",
            energy_counter=False,  # power integrated from gputop's start
        )

    def read(self) -> dict[str, Any]:
        d = self.device
        values: dict[str, float | int | None] = {
            "gpu_util_pct": _pct(_int(os.path.join(d, "gpu_busy_percent"))),
            "mem_busy_pct": _pct(_int(os.path.join(d, "mem_busy_percent"))),
            "mem_used_bytes": _int(os.path.join(d, "mem_info_vram_used")),
            "mem_total_bytes": _int(os.path.join(d, "mem_info_vram_total")),
        }
        if self.hwmon is not None:
            values.update(self._hwmon(self.hwmon))
        values["energy_j"] = self._integrate(values.get("power_w"))
        return values

    def _hwmon(self, h: str) -> dict[str, float | int | None]:
        values: dict[str, float | int | None] = {}
        micro = _int(os.path.join(h, "power1_average"))
        micro = micro if micro is not None else _int(os.path.join(h, "power1_input"))
        values["power_w"] = micro / 1e6 if micro else None  # 0 W: not a reading
        cap = _int(os.path.join(h, "power1_cap"))
        values["power_limit_w"] = cap / 1e6 if cap else None
        for n in (1, 2, 3):
            field = _TEMPS.get(_text(os.path.join(h, f"temp{n}_label")) or "")
            milli = _int(os.path.join(h, f"temp{n}_input"))
            if field is not None:
                values[field] = milli / 1000.0 if milli is not None else None
        for n in (1, 2):
            field = _CLOCKS.get(_text(os.path.join(h, f"freq{n}_label")) or "")
            hz = _int(os.path.join(h, f"freq{n}_input"))
            if field is not None:
                values[field] = round(hz / 1e6) if hz else None
        pwm, top = _int(os.path.join(h, "pwm1")), _int(os.path.join(h, "pwm1_max"))
        values["fan_pct"] = 100.0 * pwm / top if pwm is not None and top else None
        return values

    def _integrate(self, power_w: float | int | None) -> float | None:
        if power_w is None:
            return self.energy_j
        now = self.clock()
        if self.last_power is None:
            self.energy_j = 0.0
        else:
            then, last = self.last_power
            self.energy_j = (self.energy_j or 0.0) + (last + float(power_w)) / 2.0 * (now - then)
        self.last_power = (now, float(power_w))
        return self.energy_j


def _pct(value: int | None) -> float | None:
    return float(value) if value is not None and 0 <= value <= 100 else None


def amdgpu_devices(drm: str) -> list[str]:
    """The device folders of the DRM cards the amdgpu driver runs, in card order."""
    found = []
    try:
        cards = sorted((n for n in os.listdir(drm) if n.startswith("card") and n[4:].isdigit()), key=lambda n: int(n[4:]))
    except OSError:
        return []
    for card in cards:
        device = os.path.join(drm, card, "device")
        driver = os.path.basename(os.path.realpath(os.path.join(device, "driver")))
        if _text(os.path.join(device, "vendor")) == AMD_VENDOR and driver == "amdgpu":
            found.append(device)
    return found


class SysfsSource:
    """AMD GPUs read from the amdgpu driver's sysfs files (no ROCm). ``open()``; ``close()``."""

    def __init__(self, cards: list[_Card]) -> None:
        self._cards = cards
        self.devices: tuple[GpuInfo, ...] = tuple(c.info for c in cards)

    @classmethod
    def open(cls, first_index: int = 0, drm: str | None = None, clock: Clock = time.monotonic) -> SysfsSource:
        devices = amdgpu_devices(DRM if drm is None else drm)
        if not devices:
            raise AmdUnavailable("no GPU of the amdgpu driver in sysfs", library_found=False)
        return cls([_Card(first_index + i, d, clock) for i, d in enumerate(devices)])

    def sample(self, processes: Mapping[int, tuple[GpuProcess, ...] | None] | None = None) -> tuple[GpuSample, ...]:
        return tuple(GpuSample(c.info, processes=None, **c.read()) for c in self._cards)

    def processes(self) -> dict[int, tuple[GpuProcess, ...] | None]:
        return {c.info.index: None for c in self._cards}

    def read_intervals(self) -> dict[str, float]:
        return {}  # every file every GPU read

    @staticmethod
    def driver_time() -> tuple[int, int]:
        return DRIVER_TIME.read()

    def close(self) -> None:
        pass
