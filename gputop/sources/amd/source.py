"""AmdSource: every AMD GPU amdsmi can see, probed once and read per tick.

What each reading means, and when it is n/a (None):

- ``gpu_util_pct``: ``gfx_activity`` (the compute units' engine busy share; "CUs" where NVIDIA
  says SMs); ``mem_busy_pct``: ``umc_activity``, the memory controllers' busy share (the
  bandwidth signal on AMD: a busy share, not GPM's DRAM bandwidth, which stays n/a). An
  activity above 100 or all ones is n/a.
- ``power_w``: ``socket_power`` (W; MI300X reports ``average_socket_power`` as N/A), else the
  average, else the current one; 0 W is a die that does not report (MI250X: only the even die
  of a package reports, and its figure is the package's) and is n/a.
- ``power_limit_w``: ``power_info``'s ``power_limit`` (W), else ``power_cap_info``'s
  ``power_cap`` (uW: the units differ call to call).
- ``energy_j``: ``energy_accumulator`` x ``counter_resolution`` (uJ).
- ``mem_used_bytes``/``mem_total_bytes``: ``amdsmi_get_gpu_memory_usage/total`` (bytes; not
  ``amdsmi_get_gpu_vram_usage``, which is in MB).
- clocks: GFX and MEM (MHz); temperatures: edge (``temp_c``; MI300X has no edge sensor),
  hotspot and VRAM/HBM (degrees C); ``fan_pct``: speed over its maximum (Radeon; none on
  Instinct).
- temperatures, fan and violation status are read every ``SLOW_INTERVAL_S`` at most.
- ``clock_event_reasons``: the violation status's active flags in words (power, socket thermal,
  HBM thermal, VR thermal, PROCHOT); n/a where the card has no violation status (Radeon).
- XGMI: the metrics table's per-link read/write accumulators (KB) as rates over the ticks.
- processes: ``amdsmi_get_gpu_process_list`` (one call into a fixed buffer): VRAM, and the GFX
  engine time's delta over the wall time between two reads as ``sm_util_pct``.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from types import ModuleType
from typing import Any, Callable, Mapping

from gputop.model import GpuInfo, GpuProcess, GpuSample
from gputop.sources.amd.info import static_info
from gputop.sources.amd.library import DRIVER_TIME, AmdUnavailable, import_amdsmi, known, package, query, reason

log = logging.getLogger("gputop.sources.amd")
Clock = Callable[[], float]
KB = 1024
# temperatures, the fan and the violation status change slowly: read this often at most (as
# NVML's slow tier), the activities, memory, power, energy and clocks every GPU read
SLOW_INTERVAL_S = 0.5
SLOW_FIELDS = ("temp_c", "temp_hotspot_c", "temp_mem_c", "fan_pct", "clock_event_reasons")

# violation status flag -> clock event reason (words in gputop.format)
_VIOLATIONS = (
    ("active_ppt_pwr", "amd_power"),
    ("active_socket_thrm", "amd_socket_thermal"),
    ("active_hbm_thrm", "amd_hbm_thermal"),
    ("active_vr_thrm", "amd_vr_thermal"),
    ("active_prochot_thrm", "amd_prochot"),
)


def _pct(value: Any) -> float | None:
    v = known(value, 32)
    return float(v) if v is not None and v <= 100 else None


def _celsius(value: Any) -> float | None:
    if not isinstance(value, int) or isinstance(value, bool) or value <= 0 or value >= (1 << 63) - 1:
        return None
    return value / 1000.0 if value >= 1000 else float(value)  # (millidegrees where a library gives those)


class _Device:
    """One GPU: its handle, its static info and what rates need from the last tick."""

    def __init__(self, amdsmi: ModuleType, index: int, handle: Any, info: GpuInfo, clock: Clock) -> None:
        self.smi = amdsmi
        self.index = index
        self.handle = handle
        self.info = info
        self.clock = clock
        self.mem_total: int | None = None
        self.cap_w: float | None = None
        self.last_xgmi: tuple[float, int, int] | None = None
        self.last_gfx_ns: dict[int, tuple[float, int]] = {}
        self.slow_at: float | None = None
        self.slow_values: dict[str, Any] = {}
        s, h = amdsmi, handle
        self.vram = s.AmdSmiMemoryType.VRAM
        self.gfx_clk, self.mem_clk = s.AmdSmiClkType.GFX, s.AmdSmiClkType.MEM
        current = s.AmdSmiTemperatureMetric.CURRENT
        self.temps = (
            ("temp_c", s.AmdSmiTemperatureType.EDGE, current),
            ("temp_hotspot_c", s.AmdSmiTemperatureType.HOTSPOT, current),
            ("temp_mem_c", s.AmdSmiTemperatureType.VRAM, current),
        )
        self.mem_total = known(query(s.amdsmi_get_gpu_memory_total, h, self.vram), 64)
        # the energy counter, probed once: True where it answers (never integrated here: else n/a)
        self.info = dataclasses.replace(info, energy_counter=True if self._energy() is not None else None)
        cap = query(s.amdsmi_get_power_cap_info, h) or {}
        cap_uw = known(cap.get("power_cap"), 64)
        self.cap_w = cap_uw / 1e6 if cap_uw else None

    def read(self) -> dict[str, Any]:
        s, h = self.smi, self.handle
        values: dict[str, Any] = {"mem_total_bytes": self.mem_total}
        activity = query(s.amdsmi_get_gpu_activity, h) or {}
        values["gpu_util_pct"] = _pct(activity.get("gfx_activity"))
        values["mem_busy_pct"] = _pct(activity.get("umc_activity"))
        values["mem_used_bytes"] = known(query(s.amdsmi_get_gpu_memory_usage, h, self.vram), 64)
        values.update(self._power())
        values["energy_j"] = self._energy()
        for field, kind in (("sm_clock_mhz", self.gfx_clk), ("mem_clock_mhz", self.mem_clk)):
            clock = query(s.amdsmi_get_clock_info, h, kind) or {}
            values[field] = known(clock.get("clk"), 32) or None
        now = self.clock()
        if self.slow_at is None or now - self.slow_at >= SLOW_INTERVAL_S:
            self.slow_values, self.slow_at = self._slow(), now
        values.update(self.slow_values)
        values.update(self._xgmi())
        return values

    def _slow(self) -> dict[str, Any]:
        s, h = self.smi, self.handle
        values: dict[str, Any] = {
            field: _celsius(query(s.amdsmi_get_temp_metric, h, sensor, metric)) for field, sensor, metric in self.temps
        }
        values["fan_pct"] = self._fan()
        values["clock_event_reasons"] = self._violations()
        return values

    def _power(self) -> dict[str, float | None]:
        info = query(self.smi.amdsmi_get_power_info, self.handle) or {}
        watts = None
        for key, bits in (("socket_power", 64), ("average_socket_power", 32), ("current_socket_power", 32)):
            watts = known(info.get(key), bits) or None  # 0 W: this die does not report
            if watts is not None:
                break
        limit = known(info.get("power_limit"), 32) or None
        return {"power_w": None if watts is None else float(watts), "power_limit_w": float(limit) if limit else self.cap_w}

    def _energy(self) -> float | None:
        energy = query(self.smi.amdsmi_get_energy_count, self.handle)
        if not energy:
            return None
        count, resolution = known(energy.get("energy_accumulator"), 64), energy.get("counter_resolution")
        if count is None or not isinstance(resolution, float) or resolution <= 0:
            return None
        return count * resolution / 1e6

    def _fan(self) -> float | None:
        speed = query(self.smi.amdsmi_get_gpu_fan_speed, self.handle, 0)
        top = query(self.smi.amdsmi_get_gpu_fan_speed_max, self.handle, 0)
        if not isinstance(speed, int) or not isinstance(top, int) or speed < 0 or top <= 0 or speed > top:
            return None
        return 100.0 * speed / top

    def _violations(self) -> tuple[str, ...] | None:
        status = query(self.smi.amdsmi_get_violation_status, self.handle)
        if not status:
            return None
        flags = [(status.get(key), word) for key, word in _VIOLATIONS]
        if not any(isinstance(flag, bool) for flag, _ in flags):
            return None  # every flag N/A: the card has no violation status
        return tuple(word for flag, word in flags if flag is True)

    def _xgmi(self) -> dict[str, float | None]:
        rates: dict[str, float | None] = {"xgmi_read_bytes_per_s": None, "xgmi_write_bytes_per_s": None}
        metrics = query(self.smi.amdsmi_get_gpu_metrics_info, self.handle) or {}
        reads, writes = _links(metrics.get("xgmi_read_data_acc")), _links(metrics.get("xgmi_write_data_acc"))
        now = self.clock()
        if reads is None or writes is None:
            self.last_xgmi = None
            return rates
        last, self.last_xgmi = self.last_xgmi, (now, reads, writes)
        if last is not None and now > last[0] and reads >= last[1] and writes >= last[2]:
            rates["xgmi_read_bytes_per_s"] = (reads - last[1]) * KB / (now - last[0])
            rates["xgmi_write_bytes_per_s"] = (writes - last[2]) * KB / (now - last[0])
        return rates

    def processes(self) -> tuple[GpuProcess, ...] | None:
        procs = query(self.smi.amdsmi_get_gpu_process_list, self.handle)
        if procs is None:
            return None
        now = self.clock()
        seen: dict[int, tuple[float, int]] = {}
        result = []
        for p in procs:
            pid = p.get("pid")
            if not isinstance(pid, int):
                continue
            usage = p.get("memory_usage") or {}
            gfx_ns = known((p.get("engine_usage") or {}).get("gfx"), 64)
            util = None
            if gfx_ns is not None:
                seen[pid] = (now, gfx_ns)
                last = self.last_gfx_ns.get(pid)
                if last is not None and now > last[0] and gfx_ns >= last[1]:
                    util = min(100.0, 100.0 * (gfx_ns - last[1]) / ((now - last[0]) * 1e9))
            vram = known(usage.get("vram_mem"), 64)
            result.append(GpuProcess(pid=pid, gpu_index=self.index, kind="compute", gpu_mem_bytes=vram, sm_util_pct=util))
        self.last_gfx_ns = seen
        return tuple(sorted(result, key=lambda p: p.pid))


def _links(values: Any) -> int | None:
    """The sum over links of a per-link accumulator; None where no link reports."""
    if not isinstance(values, list):
        return None
    known_values = [v for v in (known(v, 64) for v in values) if v is not None]
    return sum(known_values) if known_values else None


class AmdSource:
    """Every AMD GPU amdsmi can see. Build with ``AmdSource.open()``; ``close()`` when done."""

    def __init__(self, amdsmi: ModuleType, devices: list[_Device]) -> None:
        self._smi = amdsmi
        self._devices = devices
        self.devices: tuple[GpuInfo, ...] = tuple(d.info for d in devices)
        self._closed = False

    @classmethod
    def open(cls, first_index: int = 0, clock: Clock = time.monotonic) -> AmdSource:
        """Start amdsmi and probe every GPU once, numbered from ``first_index`` (after another
        vendor's); AmdUnavailable says why there is nothing to show."""
        amdsmi = import_amdsmi()
        try:
            amdsmi.amdsmi_init(amdsmi.AmdSmiInitFlags.INIT_AMD_GPUS)
        except Exception as err:
            raise AmdUnavailable(reason(err)) from None
        try:
            handles = amdsmi.amdsmi_get_processor_handles()
            devices = [_Device(amdsmi, first_index + i, h, static_info(amdsmi, first_index + i, h), clock) for i, h in enumerate(handles)]
        except Exception as err:
            query(amdsmi.amdsmi_shut_down)
            raise AmdUnavailable(reason(err)) from None
        if not devices:
            query(amdsmi.amdsmi_shut_down)
            raise AmdUnavailable("no AMD GPU found")
        log.debug("amdsmi: %d GPU(s); amdsmi package %s; libamd_smi %s", len(devices), package(amdsmi), _lib_version(amdsmi))
        return cls(amdsmi, devices)

    def sample(self, processes: Mapping[int, tuple[GpuProcess, ...] | None] | None = None) -> tuple[GpuSample, ...]:
        if self._closed:
            raise RuntimeError("AmdSource is closed")
        table = processes or {}
        return tuple(GpuSample(d.info, processes=table.get(d.index), **d.read()) for d in self._devices)

    def processes(self) -> dict[int, tuple[GpuProcess, ...] | None]:
        if self._closed:
            raise RuntimeError("AmdSource is closed")
        return {d.index: d.processes() for d in self._devices}

    def read_intervals(self) -> dict[str, float]:
        """The readings of the slow tier, every SLOW_INTERVAL_S at most."""
        return dict.fromkeys(SLOW_FIELDS, SLOW_INTERVAL_S)

    @staticmethod
    def driver_time() -> tuple[int, int]:
        """This process's time in amdsmi calls so far (ns) and how many."""
        return DRIVER_TIME.read()

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            query(self._smi.amdsmi_shut_down)


def _lib_version(amdsmi: ModuleType) -> str:
    """major.minor.release (the wrapper's "build" is one character of the real one: left out)."""
    v = query(amdsmi.amdsmi_get_lib_version) or {}
    return ".".join(str(v.get(k, "?")) for k in ("major", "minor", "release"))
