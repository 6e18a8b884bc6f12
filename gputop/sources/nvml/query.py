"""NVML's one choke point, and the tables of what a tick asks a device.

Every NVML call goes through ``query``: a query the device or driver can't answer (not
supported, no permission, function missing from an older driver) gives ``None``, never 0; a lost
GPU raises ``GpuLost``. A per-tick query that answered at probe time becomes a ``Reader``
(which call, with which arguments, into which fields), so a tick calls only what answered.
``query`` also times every call (``DRIVER_TIME``): gputop's own time inside NVML calls, shown
beside its own CPU. That is each call's wall time around pynvml's wrapper, every thread summed:
an upper bound of the driver's time on gputop's behalf, since it also holds pynvml's Python and
the waits for a CPU and for the GIL after the call. Timing only the C call would leave out
pynvml's part, measured at 1-8 % of the figure on the driver cost model (benchmarks/README.md),
and would need pynvml's private function-pointer cache: not done. A thread's CPU time would
leave out what the driver waits for (the GPU's firmware, a sampling window): not used.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Callable

import pynvml

from gputop.sources.gpu import DriverTime

log = logging.getLogger("gputop.sources.nvml")

# Errors that mean "this device or driver will not answer this query": None, and not asked again.
_UNANSWERABLE = frozenset(
    {
        pynvml.NVML_ERROR_NOT_SUPPORTED,
        pynvml.NVML_ERROR_NO_PERMISSION,
        pynvml.NVML_ERROR_FUNCTION_NOT_FOUND,
    }
)
# Errors that mean the device stopped answering altogether (fell off the bus, needs a reset).
# NVML_ERROR_UNKNOWN is not among them: drivers return it for transient trouble too, so it gives
# None for that tick only.
LOST = frozenset({pynvml.NVML_ERROR_GPU_IS_LOST, pynvml.NVML_ERROR_RESET_REQUIRED})
# Expected answers that need no log line (NOT_FOUND: no process samples since the last look).
_QUIET = frozenset({pynvml.NVML_ERROR_NOT_FOUND})

# Clock event (formerly throttle) reason bits, named after nvidia-smi's labels.
_REASON_WORDS = (
    (0x001, "idle"),
    (0x002, "applications_clocks_setting"),
    (0x004, "sw_power_cap"),
    (0x008, "hw_slowdown"),
    (0x010, "sync_boost"),
    (0x020, "sw_thermal_slowdown"),
    (0x040, "hw_thermal_slowdown"),
    (0x080, "hw_power_brake_slowdown"),
    (0x100, "display_clock_setting"),
    (0x200, "board_limit"),
    (0x400, "reliability"),
)
_KNOWN_REASON_BITS = sum(bit for bit, _ in _REASON_WORDS)

_ALL_LINKS = 0xFFFFFFFF  # field value scope: the sum over every NVLink
_FIELD_VALUE_MEMBER = {
    pynvml.NVML_VALUE_TYPE_DOUBLE: "dVal",
    pynvml.NVML_VALUE_TYPE_UNSIGNED_INT: "uiVal",
    pynvml.NVML_VALUE_TYPE_UNSIGNED_LONG: "ulVal",
    pynvml.NVML_VALUE_TYPE_UNSIGNED_LONG_LONG: "ullVal",
    pynvml.NVML_VALUE_TYPE_SIGNED_LONG_LONG: "sllVal",
    pynvml.NVML_VALUE_TYPE_SIGNED_INT: "siVal",
    pynvml.NVML_VALUE_TYPE_UNSIGNED_SHORT: "usVal",
}
NOT_AVAILABLE = {2**64 - 1, 2**32 - 1}  # NVML_VALUE_NOT_AVAILABLE as unsigned long long / unsigned int


class GpuUnavailable(Exception):
    """No GPU can be monitored; ``reason`` is one line for the user."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class GpuLost(Exception):
    """The device stopped answering; raised by ``query``, caught per device."""


class _Unanswerable:
    def __repr__(self) -> str:
        return "UNANSWERABLE"


UNANSWERABLE = _Unanswerable()  # what a probe gets back for a query the device will never answer
_logged: set[tuple[str, int]] = set()


DRIVER_TIME = DriverTime()


def query(fn: Callable[..., Any], *args: Any, unanswerable: Any = None) -> Any:
    """Call one NVML function: its value, or None (``unanswerable`` where it never will answer).

    Raises ``GpuLost`` where the device is gone. ``NVMLLibraryMismatchError`` (not an NVMLError:
    pynvml raises it from an unversioned wrapper whose symbol the driver lacks) counts as a
    missing function.
    """
    try:
        return DRIVER_TIME.call(fn, *args)
    except pynvml.NVMLError as err:
        code = err.value
        if code in LOST:
            raise GpuLost(str(err)) from err
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


def kib_per_s(value: int) -> tuple[float]:
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
class Reader:
    fields: tuple[str, ...]
    fn: Callable[..., Any]
    args: tuple[Any, ...]  # the device handle first
    convert: Callable[[Any], tuple[Any, ...]]


_GPU = pynvml.NVML_TEMPERATURE_GPU
# (fields, variants newest first as (pynvml wrapper name, extra args), conversion)
TICK_QUERIES = (
    (("gpu_util_pct", "mem_busy_pct"), (("nvmlDeviceGetUtilizationRates", ()),), _utilization),
    (
        ("mem_used_bytes", "mem_total_bytes"),
        (("nvmlDeviceGetMemoryInfo", (getattr(pynvml, "nvmlMemory_v2", None),)), ("nvmlDeviceGetMemoryInfo", ())),
        _memory,
    ),
    (("power_w",), (("nvmlDeviceGetPowerUsage", ()),), _milli),
    (("power_limit_w",), (("nvmlDeviceGetEnforcedPowerLimit", ()),), _milli),
    (("sm_clock_mhz",), (("nvmlDeviceGetClockInfo", (pynvml.NVML_CLOCK_SM,)),), _as_int),
    (("mem_clock_mhz",), (("nvmlDeviceGetClockInfo", (pynvml.NVML_CLOCK_MEM,)),), _as_int),
    (("temp_c",), (("nvmlDeviceGetTemperatureV", (_GPU,)), ("nvmlDeviceGetTemperature", (_GPU,))), _as_float),
    (("fan_pct",), (("nvmlDeviceGetFanSpeed", ()),), _as_float),
    (("pstate",), (("nvmlDeviceGetPerformanceState", ()), ("nvmlDeviceGetPowerState", ())), _pstate),
    (
        ("clock_event_reasons",),
        (("nvmlDeviceGetCurrentClocksEventReasons", ()), ("nvmlDeviceGetCurrentClocksThrottleReasons", ())),
        _reasons,
    ),
    (("energy_j",), (("nvmlDeviceGetTotalEnergyConsumption", ()),), _milli),
)
# Fields that move on a scale of seconds: read at most every SLOW_INTERVAL_S and carried in
# between, so a 100 Hz recording does not pay for them a hundred times a second.
# The memory clock moves with the performance state, not within one.
SLOW_FIELDS = frozenset({"power_limit_w", "temp_c", "fan_pct", "pstate", "mem_clock_mhz"})
SLOW_INTERVAL_S = 0.5
# Cumulative counters read in one nvmlDeviceGetFieldValues call; rates come from deltas.
# (field, field id, scope id, bytes per unit); PCIe byte counters are newer than GetPcieThroughput
# (which falls back in their place, and blocks 20 ms in the driver per call).
COUNTERS = (
    ("nvlink_tx_bytes_per_s", pynvml.NVML_FI_DEV_NVLINK_THROUGHPUT_DATA_TX, _ALL_LINKS, 1024),
    ("nvlink_rx_bytes_per_s", pynvml.NVML_FI_DEV_NVLINK_THROUGHPUT_DATA_RX, _ALL_LINKS, 1024),
    ("pcie_tx_bytes_per_s", getattr(pynvml, "NVML_FI_DEV_PCIE_COUNT_TX_BYTES", None), 0, 1),
    ("pcie_rx_bytes_per_s", getattr(pynvml, "NVML_FI_DEV_PCIE_COUNT_RX_BYTES", None), 0, 1),
)
PCIE_THROUGHPUT = (
    ("pcie_tx_bytes_per_s", (("nvmlDeviceGetPcieThroughput", (pynvml.NVML_PCIE_UTIL_TX_BYTES,)),)),
    ("pcie_rx_bytes_per_s", (("nvmlDeviceGetPcieThroughput", (pynvml.NVML_PCIE_UTIL_RX_BYTES,)),)),
)
PROCESS_QUERIES = (  # (kind, variants newest first)
    ("compute", ("nvmlDeviceGetComputeRunningProcesses_v3", "nvmlDeviceGetComputeRunningProcesses_v2")),
    ("graphics", ("nvmlDeviceGetGraphicsRunningProcesses_v3", "nvmlDeviceGetGraphicsRunningProcesses_v2")),
)


def read_all(readers: list[Reader]) -> dict[str, Any]:
    values: dict[str, Any] = {}
    for reader in readers:
        value = query(reader.fn, *reader.args)
        if value is not None:
            values.update(zip(reader.fields, reader.convert(value)))
    return values


def field_value(fv: Any) -> float | int | None:
    if fv.nvmlReturn != pynvml.NVML_SUCCESS:
        return None
    member = _FIELD_VALUE_MEMBER.get(fv.valueType)
    return None if member is None else getattr(fv.value, member)


def first_answering(handle: Any, variants: tuple[tuple[str, tuple[Any, ...]], ...]) -> tuple[Any, tuple[Any, ...]] | None:
    """(wrapper, args) of the first variant the device answers, asked once at probe time.
    A wrapper this nvidia-ml-py lacks counts as a function the driver lacks."""
    for name, args in variants:
        fn = getattr(pynvml, name, None)
        if fn is not None and query(fn, handle, *args, unanswerable=UNANSWERABLE) is not UNANSWERABLE:
            return fn, args
    return None
