"""NVIDIA GPUs through NVML (pynvml). With gpm.py, the only place that imports pynvml.

Every NVML call goes through ``_query``, the one choke point: a query the device or driver can't
answer (not supported, no permission, function missing from an older driver) gives ``None``, never
0; a lost GPU raises ``_GpuLost``, which marks that device lost while the others go on.

What a device supports is probed once, in ``NvmlSource.open``: each per-tick query that answered
becomes a ``_Reader`` (which call, with which arguments, into which fields), choosing the newest
variant the driver has (memory info v2 or v1, GetTemperatureV or GetTemperature, clocks event or
throttle reasons, process queries v3 or v2). A tick then calls only what answered.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any, Callable, Mapping

import pynvml

from gputop.model import GpuInfo, GpuProcess, GpuSample
from gputop.sources.gpm import Gpm

log = logging.getLogger(__name__)
Clock = Callable[[], float]

# Errors that mean "this device or driver will not answer this query": None, and not asked again.
_UNANSWERABLE = frozenset({
    pynvml.NVML_ERROR_NOT_SUPPORTED,
    pynvml.NVML_ERROR_NO_PERMISSION,
    pynvml.NVML_ERROR_FUNCTION_NOT_FOUND,
})
# Errors that mean the device stopped answering altogether (fell off the bus, needs a reset).
# NVML_ERROR_UNKNOWN is not among them: drivers return it for transient trouble too, so it gives
# None for that tick only.
_LOST = frozenset({pynvml.NVML_ERROR_GPU_IS_LOST, pynvml.NVML_ERROR_RESET_REQUIRED})
# Expected answers that need no log line (NOT_FOUND: no process samples since the last look).
_QUIET = frozenset({pynvml.NVML_ERROR_NOT_FOUND})

_OPEN_REASONS = {
    pynvml.NVML_ERROR_LIBRARY_NOT_FOUND: "libnvidia-ml.so.1 not found (no NVIDIA driver installed)",
    pynvml.NVML_ERROR_DRIVER_NOT_LOADED: "NVIDIA driver not loaded",
    pynvml.NVML_ERROR_NO_PERMISSION: "no permission to open the NVIDIA driver",
    pynvml.NVML_ERROR_LIB_RM_VERSION_MISMATCH:
        "NVIDIA driver and libnvidia-ml versions differ (reboot after a driver update?)",
    pynvml.NVML_ERROR_FUNCTION_NOT_FOUND: "NVIDIA driver too old for nvidia-ml-py",
    pynvml.NVML_ERROR_OPERATING_SYSTEM: "the operating system blocked access to the NVIDIA driver",
}

_ARCHITECTURES = {
    pynvml.NVML_DEVICE_ARCH_KEPLER: "Kepler",
    pynvml.NVML_DEVICE_ARCH_MAXWELL: "Maxwell",
    pynvml.NVML_DEVICE_ARCH_PASCAL: "Pascal",
    pynvml.NVML_DEVICE_ARCH_VOLTA: "Volta",
    pynvml.NVML_DEVICE_ARCH_TURING: "Turing",
    pynvml.NVML_DEVICE_ARCH_AMPERE: "Ampere",
    pynvml.NVML_DEVICE_ARCH_ADA: "Ada",
    pynvml.NVML_DEVICE_ARCH_HOPPER: "Hopper",
    pynvml.NVML_DEVICE_ARCH_BLACKWELL: "Blackwell",
}
# FP32 cores per SM, by compute capability (major, minor), then by major alone.
_CORES_PER_SM_BY_CC = {(6, 0): 64, (8, 0): 64,  # GP100, GA100
                       3: 192, 5: 128, 6: 128, 7: 64, 8: 128, 9: 128, 10: 128, 12: 128}
_CORES_PER_SM_BY_ARCH = {"Kepler": 192, "Maxwell": 128, "Pascal": 128, "Volta": 64, "Turing": 64,
                         "Ampere": 128, "Ada": 128, "Hopper": 128, "Blackwell": 128}

# Clock event (formerly throttle) reason bits, named after nvidia-smi's labels.
_REASON_WORDS = (
    (0x001, "idle"), (0x002, "applications_clocks_setting"), (0x004, "sw_power_cap"),
    (0x008, "hw_slowdown"), (0x010, "sync_boost"), (0x020, "sw_thermal_slowdown"),
    (0x040, "hw_thermal_slowdown"), (0x080, "hw_power_brake_slowdown"),
    (0x100, "display_clock_setting"), (0x200, "board_limit"), (0x400, "reliability"),
)
_KNOWN_REASON_BITS = sum(bit for bit, _ in _REASON_WORDS)

_ALL_LINKS = 0xFFFFFFFF  # field value scope: the sum over every NVLink
_FIELD_VALUE_MEMBER = {
    pynvml.NVML_VALUE_TYPE_DOUBLE: "dVal", pynvml.NVML_VALUE_TYPE_UNSIGNED_INT: "uiVal",
    pynvml.NVML_VALUE_TYPE_UNSIGNED_LONG: "ulVal", pynvml.NVML_VALUE_TYPE_UNSIGNED_LONG_LONG: "ullVal",
    pynvml.NVML_VALUE_TYPE_SIGNED_LONG_LONG: "sllVal", pynvml.NVML_VALUE_TYPE_SIGNED_INT: "siVal",
    pynvml.NVML_VALUE_TYPE_UNSIGNED_SHORT: "usVal",
}
_NOT_AVAILABLE = {2**64 - 1, 2**32 - 1}  # NVML_VALUE_NOT_AVAILABLE as unsigned long long / unsigned int


class GpuUnavailable(Exception):
    """No GPU can be monitored; ``reason`` is one line for the user."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class _GpuLost(Exception):
    """The device stopped answering; raised by ``_query``, caught per device."""


class _Unanswerable:
    def __repr__(self) -> str:
        return "UNANSWERABLE"


UNANSWERABLE = _Unanswerable()  # what a probe gets back for a query the device will never answer
_logged: set[tuple[str, int]] = set()


def _query(fn: Callable[..., Any], *args: Any, unanswerable: Any = None) -> Any:
    """Call one NVML function: its value, or None (``unanswerable`` where it never will answer).

    Raises ``_GpuLost`` where the device is gone. ``NVMLLibraryMismatchError`` (not an NVMLError:
    pynvml raises it from an unversioned wrapper whose symbol the driver lacks) counts as a
    missing function.
    """
    try:
        return fn(*args)
    except pynvml.NVMLError as err:
        code = err.value
        if code in _LOST:
            raise _GpuLost(str(err)) from err
        _log_once(fn, code, err)
        return unanswerable if code in _UNANSWERABLE else None
    except pynvml.NVMLLibraryMismatchError as err:
        _log_once(fn, pynvml.NVML_ERROR_FUNCTION_NOT_FOUND, err)
        return unanswerable


def _log_once(fn: Callable[..., Any], code: int, err: Exception) -> None:
    name = getattr(fn, "__name__", repr(fn))
    if code in _QUIET or (name, code) in _logged:
        return
    _logged.add((name, code))
    if code == pynvml.NVML_ERROR_FUNCTION_NOT_FOUND:
        log.debug("NVML: %s is not in this driver's libnvidia-ml", name)
    else:
        log.debug("NVML: %s failed: %s", name, err)


# ---------------------------------------------------------------------------- per-tick readers

def _milli(value: int) -> tuple[float]:
    return (value / 1000.0,)


def _as_int(value: int) -> tuple[int]:
    return (int(value),)


def _as_float(value: float) -> tuple[float]:
    return (float(value),)


def _kib_per_s(value: int) -> tuple[float]:
    return (value * 1024.0,)


def _utilization(util: Any) -> tuple[float, float]:
    return (float(util.gpu), float(util.memory))


def _memory(mem: Any) -> tuple[int, int]:
    return (int(mem.used), int(mem.total))


def _pstate(value: int) -> tuple[int | None]:
    return (None if value == pynvml.NVML_PSTATE_UNKNOWN else int(value),)


_reason_cache: dict[int, tuple[str, ...]] = {}


def _reasons(bits: int) -> tuple[tuple[str, ...]]:
    words = _reason_cache.get(bits)
    if words is None:
        words = tuple(word for bit, word in _REASON_WORDS if bits & bit)
        unknown = bits & ~_KNOWN_REASON_BITS
        words += tuple(f"0x{1 << i:x}" for i in range(64) if unknown >> i & 1)
        _reason_cache[bits] = words
    return (words,)


@dataclass(frozen=True, slots=True)
class _Reader:
    fields: tuple[str, ...]
    fn: Callable[..., Any]
    args: tuple[Any, ...]  # the device handle first
    convert: Callable[[Any], tuple[Any, ...]]


_GPU = pynvml.NVML_TEMPERATURE_GPU
# (fields, variants newest first as (pynvml wrapper name, extra args), conversion)
_TICK_QUERIES = (
    (("gpu_util_pct", "mem_busy_pct"), (("nvmlDeviceGetUtilizationRates", ()),), _utilization),
    (("mem_used_bytes", "mem_total_bytes"),
     (("nvmlDeviceGetMemoryInfo", (getattr(pynvml, "nvmlMemory_v2", None),)),
      ("nvmlDeviceGetMemoryInfo", ())), _memory),
    (("power_w",), (("nvmlDeviceGetPowerUsage", ()),), _milli),
    (("power_limit_w",), (("nvmlDeviceGetEnforcedPowerLimit", ()),), _milli),
    (("sm_clock_mhz",), (("nvmlDeviceGetClockInfo", (pynvml.NVML_CLOCK_SM,)),), _as_int),
    (("mem_clock_mhz",), (("nvmlDeviceGetClockInfo", (pynvml.NVML_CLOCK_MEM,)),), _as_int),
    (("temp_c",), (("nvmlDeviceGetTemperatureV", (_GPU,)), ("nvmlDeviceGetTemperature", (_GPU,))), _as_float),
    (("fan_pct",), (("nvmlDeviceGetFanSpeed", ()),), _as_float),
    (("pstate",), (("nvmlDeviceGetPerformanceState", ()), ("nvmlDeviceGetPowerState", ())), _pstate),
    (("clock_event_reasons",), (("nvmlDeviceGetCurrentClocksEventReasons", ()),
                                ("nvmlDeviceGetCurrentClocksThrottleReasons", ())), _reasons),
    (("energy_j",), (("nvmlDeviceGetTotalEnergyConsumption", ()),), _milli),
)
# Fields that move on a scale of seconds: read at most every SLOW_INTERVAL_S and carried in
# between, so a 100 Hz recording does not pay for them a hundred times a second.
_SLOW_FIELDS = frozenset({"power_limit_w", "temp_c", "fan_pct", "pstate"})
SLOW_INTERVAL_S = 0.5
# Cumulative counters read in one nvmlDeviceGetFieldValues call; rates come from deltas.
# (field, field id, scope id, bytes per unit); PCIe byte counters are newer than GetPcieThroughput
# (which falls back in their place, and blocks 20 ms in the driver per call).
_COUNTERS = (
    ("nvlink_tx_bytes_per_s", pynvml.NVML_FI_DEV_NVLINK_THROUGHPUT_DATA_TX, _ALL_LINKS, 1024),
    ("nvlink_rx_bytes_per_s", pynvml.NVML_FI_DEV_NVLINK_THROUGHPUT_DATA_RX, _ALL_LINKS, 1024),
    ("pcie_tx_bytes_per_s", getattr(pynvml, "NVML_FI_DEV_PCIE_COUNT_TX_BYTES", None), 0, 1),
    ("pcie_rx_bytes_per_s", getattr(pynvml, "NVML_FI_DEV_PCIE_COUNT_RX_BYTES", None), 0, 1),
)
_PCIE_THROUGHPUT = (
    ("pcie_tx_bytes_per_s", (("nvmlDeviceGetPcieThroughput", (pynvml.NVML_PCIE_UTIL_TX_BYTES,)),)),
    ("pcie_rx_bytes_per_s", (("nvmlDeviceGetPcieThroughput", (pynvml.NVML_PCIE_UTIL_RX_BYTES,)),)),
)
_PROCESS_QUERIES = (  # (kind, variants newest first)
    ("compute", ("nvmlDeviceGetComputeRunningProcesses_v3", "nvmlDeviceGetComputeRunningProcesses_v2")),
    ("graphics", ("nvmlDeviceGetGraphicsRunningProcesses_v3", "nvmlDeviceGetGraphicsRunningProcesses_v2")),
)


def _read_all(readers: list[_Reader]) -> dict[str, Any]:
    values: dict[str, Any] = {}
    for reader in readers:
        value = _query(reader.fn, *reader.args)
        if value is not None:
            values.update(zip(reader.fields, reader.convert(value)))
    return values


def _field_value(fv: Any) -> float | int | None:
    if fv.nvmlReturn != pynvml.NVML_SUCCESS:
        return None
    member = _FIELD_VALUE_MEMBER.get(fv.valueType)
    return None if member is None else getattr(fv.value, member)


def _first_answering(handle: Any, variants: tuple[tuple[str, tuple], ...]) -> tuple[Any, tuple] | None:
    """(wrapper, args) of the first variant the device answers, asked once at probe time.
    A wrapper this nvidia-ml-py lacks counts as a function the driver lacks."""
    for name, args in variants:
        fn = getattr(pynvml, name, None)
        if fn is not None and _query(fn, handle, *args, unanswerable=UNANSWERABLE) is not UNANSWERABLE:
            return fn, args
    return None


# ---------------------------------------------------------------------------- one device

class _Device:
    """One GPU: its handle, what it answered at probe time, and what rates need from last tick."""

    def __init__(self, index: int, handle: Any, info: GpuInfo, clock: Clock = time.monotonic) -> None:
        self.index = index
        self.clock = clock
        self.handle = handle
        self.info = info
        self.lost_sample = GpuSample(info, lost=True)
        self.lost = False
        self.readers: list[_Reader] = []
        self.slow_readers: list[_Reader] = []
        self.slow_at: float | None = None
        self.slow_values: dict[str, Any] = {}
        self.slow_field_count = 0
        self.gpm: Gpm | None = None
        self.energy_counter = False
        self.energy_j: float | None = None  # integrated from power where there is no counter
        self.last_power: tuple[float, float] | None = None  # (monotonic s, W)
        self.counters: list[tuple[str, Any, int]] = []  # (field, (id, scope), bytes per unit)
        self.last_counts: tuple[float, list[Any]] | None = None
        self.process_fns: list[tuple[str, Callable[..., Any]]] = []
        self.process_util = False
        self.last_seen_us = 0

    # -- probe, once
    def probe(self) -> None:
        h = self.handle
        for fields, variants, convert in _TICK_QUERIES:
            found = _first_answering(h, variants)
            if found:
                slow = _SLOW_FIELDS.issuperset(fields)
                (self.slow_readers if slow else self.readers).append(
                    _Reader(fields, found[0], (h, *found[1]), convert))
        self.slow_field_count = sum(len(r.fields) for r in self.slow_readers)
        self.energy_counter = any(r.fields == ("energy_j",) for r in self.readers)
        self._probe_counters()
        if self.info.gpm_supported:
            self.gpm = Gpm.open(h, _query)
        for kind, names in _PROCESS_QUERIES:
            found = _first_answering(h, tuple((name, ()) for name in names))
            if found:
                self.process_fns.append((kind, found[0]))
        self.process_util = _query(pynvml.nvmlDeviceGetProcessUtilization, h, 0,
                                   unanswerable=UNANSWERABLE) is not UNANSWERABLE

    def _probe_counters(self) -> None:
        h = self.handle
        wanted = [c for c in _COUNTERS if c[1] is not None]
        ids = [(fid, scope) for _, fid, scope, _ in wanted] + [(pynvml.NVML_FI_DEV_NVLINK_LINK_COUNT, 0)]
        values = _query(pynvml.nvmlDeviceGetFieldValues, h, ids)
        answered = [_field_value(v) for v in values] if values is not None else [None] * len(ids)
        no_links = answered[-1] == 0
        for (name, fid, scope, scale), value in zip(wanted, answered):
            if value is not None and not (no_links and name.startswith("nvlink")):
                self.counters.append((name, (fid, scope), scale))
        have = {name for name, _, _ in self.counters}
        for name, variants in _PCIE_THROUGHPUT:
            found = None if name in have else _first_answering(h, variants)
            if found:
                self.readers.append(_Reader((name,), found[0], (h, *found[1]), _kib_per_s))

    # -- every tick
    def read(self) -> dict[str, Any]:
        now = self.clock()
        stale = self.slow_at is None or now - self.slow_at >= SLOW_INTERVAL_S
        if stale or len(self.slow_values) < self.slow_field_count:  # a failed read is retried next tick
            self.slow_values, self.slow_at = _read_all(self.slow_readers), now
        values = _read_all(self.readers)
        values.update(self.slow_values)
        if not self.energy_counter:
            values["energy_j"] = self._integrate_power(now, values.get("power_w"))
        if self.counters:
            values.update(self._rates())
        if self.gpm is not None:
            values.update(self.gpm.read(now))
            util, peak = values["dram_bw_util_pct"], self.info.peak_dram_bw_bytes_per_s
            if util is not None and peak is not None:
                values["dram_bw_bytes_per_s"] = util / 100.0 * peak
        return values

    def _integrate_power(self, now: float, power_w: float | None) -> float | None:
        """Energy where the driver keeps no counter: power integrated (trapezoids) from the first reading."""
        if power_w is not None:
            if self.last_power is None:
                self.energy_j = 0.0
            else:
                then, last_w = self.last_power
                self.energy_j += (last_w + power_w) / 2.0 * (now - then)
            self.last_power = (now, power_w)
        return self.energy_j

    def _rates(self) -> dict[str, float | None]:
        now = self.clock()
        values = _query(pynvml.nvmlDeviceGetFieldValues, self.handle, [c[1] for c in self.counters])
        counts = [_field_value(v) for v in values] if values is not None else [None] * len(self.counters)
        rates: dict[str, float | None] = {}
        last = self.last_counts
        for i, (name, _, scale) in enumerate(self.counters):
            count, rates[name] = counts[i], None
            if last is not None and count is not None and last[1][i] is not None and now > last[0]:
                delta = count - last[1][i]
                if delta >= 0:  # a counter that went backwards wrapped or was reset: no rate this tick
                    rates[name] = delta * scale / (now - last[0])
        self.last_counts = (now, counts)
        return rates

    def processes(self) -> tuple[GpuProcess, ...] | None:
        merged: dict[int, tuple[list[str], int | None]] = {}
        answered = False
        for kind, fn in self.process_fns:
            procs = _query(fn, self.handle)
            if procs is None:
                continue
            answered = True
            for p in procs:
                mem = p.usedGpuMemory if p.usedGpuMemory not in _NOT_AVAILABLE else None
                kinds, known = merged.get(p.pid, ([], None))
                kinds.append(kind)
                merged[p.pid] = (kinds, known if mem is None else max(mem, known or 0))
        if not answered:
            return None
        util = self._process_utilization() if merged else {}
        return tuple(
            GpuProcess(pid=pid, gpu_index=self.index, kind="+".join(dict.fromkeys(kinds)),
                       gpu_mem_bytes=mem, sm_util_pct=util.get(pid, (None, None))[0],
                       mem_util_pct=util.get(pid, (None, None))[1])
            for pid, (kinds, mem) in sorted(merged.items())
        )

    def _process_utilization(self) -> dict[int, tuple[float, float]]:
        """SM and memory utilization per pid from samples newer than the last look."""
        if not self.process_util:
            return {}
        samples = _query(pynvml.nvmlDeviceGetProcessUtilization, self.handle, self.last_seen_us)
        if not samples:  # NOT_FOUND: no samples since the last look
            return {}
        newest: dict[int, Any] = {}
        for s in samples:
            if s.pid not in newest or s.timeStamp > newest[s.pid].timeStamp:
                newest[s.pid] = s
        self.last_seen_us = max(self.last_seen_us, max(s.timeStamp for s in samples))
        return {pid: (float(s.smUtil), float(s.memUtil)) for pid, s in newest.items()}

    @classmethod
    def lost_at_open(cls, index: int, info: GpuInfo) -> _Device:
        log.warning("GPU %d is lost", index)
        device = cls(index, None, info)
        device.lost = True
        return device

    def close(self) -> None:
        if self.gpm is not None:
            try:
                self.gpm.close()
            except _GpuLost:
                pass  # a lost device's buffers go with the driver state at shutdown
            self.gpm = None


# ---------------------------------------------------------------------------- static info

def _cores_per_sm(arch: str | None, cc: tuple[int, int] | None, name: str) -> int | None:
    if cc is not None:
        per_sm = _CORES_PER_SM_BY_CC.get(cc) or _CORES_PER_SM_BY_CC.get(cc[0])
        if per_sm:
            return per_sm
    if arch == "Ampere" and ("A100" in name or "A30" in name):
        return 64  # GA100
    if arch == "Pascal" and "P100" in name:
        return 64  # GP100
    return _CORES_PER_SM_BY_ARCH.get(arch) if arch else None


def _cuda_version() -> str | None:
    version = None
    for name in ("nvmlSystemGetCudaDriverVersion_v2", "nvmlSystemGetCudaDriverVersion"):
        fn = getattr(pynvml, name, None)
        version = version or (_query(fn) if fn else None)
    return None if not version else f"{version // 1000}.{version % 1000 // 10}"


def _text(value: Any) -> str | None:
    if value is None:
        return None
    return value.decode(errors="replace") if isinstance(value, bytes) else str(value)


def _static_info(index: int, h: Any, driver: str | None, cuda: str | None) -> GpuInfo:
    name = _text(_query(pynvml.nvmlDeviceGetName, h)) or f"GPU {index}"
    pci = _query(pynvml.nvmlDeviceGetPciInfo, h)
    arch = _ARCHITECTURES.get(_query(pynvml.nvmlDeviceGetArchitecture, h))
    cores = _query(pynvml.nvmlDeviceGetNumGpuCores, h)
    cc = _query(pynvml.nvmlDeviceGetCudaComputeCapability, h)
    per_sm = _cores_per_sm(arch, tuple(cc) if cc else None, name)
    sm_count = cores // per_sm if cores and per_sm and cores % per_sm == 0 else None
    bus_bits = _query(pynvml.nvmlDeviceGetMemoryBusWidth, h)
    max_mem_mhz = _query(pynvml.nvmlDeviceGetMaxClockInfo, h, pynvml.NVML_CLOCK_MEM)
    peak = 2.0 * max_mem_mhz * 1e6 * bus_bits / 8.0 if bus_bits and max_mem_mhz else None
    mig = _query(pynvml.nvmlDeviceGetMigMode, h)
    mig_enabled = bool(mig) and mig[0] == pynvml.NVML_DEVICE_MIG_ENABLE
    # GPM over a whole MIG-partitioned device would need per-instance samples; not done here.
    gpm = _query(pynvml.nvmlGpmQueryDeviceSupport, h)
    gpm_supported = bool(gpm and gpm.isSupportedDevice) and not mig_enabled
    return GpuInfo(
        index=index, name=name, uuid=_text(_query(pynvml.nvmlDeviceGetUUID, h)),
        pci_bus_id=_text(pci.busId) if pci is not None else None, architecture=arch,
        sm_count=sm_count, mem_bus_width_bits=bus_bits or None, max_mem_clock_mhz=max_mem_mhz or None,
        peak_dram_bw_bytes_per_s=peak, driver_version=driver, cuda_version=cuda,
        gpm_supported=gpm_supported, mig_enabled=mig_enabled,
    )


def _lost_info(index: int, driver: str | None, cuda: str | None) -> GpuInfo:
    return GpuInfo(index=index, name=f"GPU {index}", uuid=None, pci_bus_id=None, architecture=None,
                   sm_count=None, mem_bus_width_bits=None, max_mem_clock_mhz=None,
                   peak_dram_bw_bytes_per_s=None, driver_version=driver, cuda_version=cuda)


def _reason(err: Exception) -> str:
    if isinstance(err, pynvml.NVMLError):
        return _OPEN_REASONS.get(err.value, f"NVML failed to start: {err}")
    return f"libnvidia-ml does not match nvidia-ml-py: {err}"


# ---------------------------------------------------------------------------- the source

class NvmlSource:
    """Every NVIDIA GPU NVML can see. Build with ``NvmlSource.open()``; ``close()`` when done."""

    def __init__(self, devices: list[_Device]) -> None:
        self._devices = devices
        self.devices: tuple[GpuInfo, ...] = tuple(d.info for d in devices)
        self._closed = False

    @classmethod
    def open(cls, clock: Clock = time.monotonic) -> NvmlSource:
        """Start NVML and probe every device once; GpuUnavailable says why there is nothing to show.

        ``clock`` (seconds, monotonic) times rates and GPM sample pairs; tests pass a fake one.
        """
        try:
            pynvml.nvmlInit()
        except (pynvml.NVMLError, pynvml.NVMLLibraryMismatchError) as err:
            raise GpuUnavailable(_reason(err)) from None
        try:
            return cls(_probe_all(clock))
        except BaseException:
            _query(pynvml.nvmlShutdown)
            raise

    def sample(self, processes: Mapping[int, tuple[GpuProcess, ...] | None] | None = None
               ) -> tuple[GpuSample, ...]:
        """One GpuSample per device, with its entry of ``processes`` (a table from
        ``processes()``, joined with the host's view by the Sampler; None where not given)."""
        if self._closed:
            raise RuntimeError("NvmlSource is closed")
        table = processes or {}
        return tuple(self._sample(d, table.get(d.index)) for d in self._devices)

    @staticmethod
    def _sample(device: _Device, processes: tuple[GpuProcess, ...] | None) -> GpuSample:
        if not device.lost:
            try:
                return GpuSample(device.info, processes=processes, **device.read())
            except _GpuLost as err:
                log.warning("GPU %d (%s) lost: %s", device.index, device.info.name, err)
                device.lost = True
        return device.lost_sample

    def processes(self) -> dict[int, tuple[GpuProcess, ...] | None]:
        """Per device index, the processes holding a context there (host fields left None);
        None for a device whose processes can't be read."""
        if self._closed:
            raise RuntimeError("NvmlSource is closed")
        result: dict[int, tuple[GpuProcess, ...] | None] = {}
        for device in self._devices:
            result[device.index] = None
            if not device.lost:
                try:
                    result[device.index] = device.processes() if device.process_fns else None
                except _GpuLost as err:
                    log.warning("GPU %d (%s) lost: %s", device.index, device.info.name, err)
                    device.lost = True
        return result

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        for device in self._devices:
            device.close()
        _query(pynvml.nvmlShutdown)


def _probe_all(clock: Clock) -> list[_Device]:
    try:
        count = pynvml.nvmlDeviceGetCount()
    except pynvml.NVMLError as err:
        raise GpuUnavailable(_reason(err)) from None
    driver = _text(_query(pynvml.nvmlSystemGetDriverVersion))
    cuda = _cuda_version()
    devices = []
    for index in range(count):
        try:
            handle = pynvml.nvmlDeviceGetHandleByIndex(index)
        except pynvml.NVMLError as err:
            if err.value in _LOST:
                devices.append(_Device.lost_at_open(index, _lost_info(index, driver, cuda)))
            else:  # e.g. a device this container may not open
                log.info("GPU %d skipped: %s", index, err)
            continue
        device = None
        try:
            device = _Device(index, handle, _static_info(index, handle, driver, cuda), clock)
            device.probe()
        except _GpuLost:
            if device is not None:
                device.close()
            info = device.info if device is not None else _lost_info(index, driver, cuda)
            device = _Device.lost_at_open(index, info)
        devices.append(device)
    if not devices:
        raise GpuUnavailable("no NVIDIA GPU found" if count == 0 else "no NVIDIA GPU can be opened")
    return devices
