"""A symbol-level fake of libnvidia-ml, for pynvml (nvidia-ml-py) to load in place of the driver.

pynvml reaches the C library only through ``_nvmlGetFunctionPointer(name)``, which does
``getattr(pynvml.nvmlLib, name)``. A ``FakeNvml`` is an object whose attributes are named after
exactly those C symbols, so once it is installed as ``pynvml.nvmlLib`` every real pynvml wrapper runs
unchanged: struct versions, the two-call size protocols, error codes mapped to NVMLError subclasses,
string buffers. A symbol the driver profile leaves out is simply absent (AttributeError), which pynvml
turns into ``NVMLError_FunctionNotFound`` -- how an old driver looks.

The symbols behave like C: arguments arrive as ctypes objects (``byref(x)``, pointers, arrays,
``c_uint(n)``), results are written into the caller's memory, and the return value is an
``nvmlReturn_t`` code. Versioned structs are checked the way the driver checks them (the ``version``
field, the element size of an array), and a wrong one gets NVML_ERROR_ARGUMENT_VERSION_MISMATCH.

Quick use (tests use the ``fake_nvml`` fixture in conftest.py, which undoes all of this)::

    fake = FakeNvml(devices=[H100_SXM, A100_SXM])
    install(fake)                       # pynvml.nvmlLib = fake, fresh function-pointer cache
    fake.fail("nvmlDeviceGetPowerUsage", NVML_ERROR_NOT_SUPPORTED, device=0)
    fake.advance(1.0)                   # manual clock: values move deterministically with time

Time: every time-varying value (utilization, power, energy, PCIe/NVLink counters, GPM counters,
process-utilization sample stamps) is a pure function of ``fake.now_ns``. With ``real_time=False``
(the default) the clock starts at ``START_NS`` and moves only by ``fake.advance(seconds)``; with
``real_time=True`` (what ``install_from_spec`` uses, for subprocess runs) it is ``time.time_ns()``,
and the waves start when the fake is made -- or at ``GPUTOP_FAKE_NVML_EPOCH_NS`` where that is set,
so that several processes share one phase.

Lost GPUs: a device with ``lost_after=N`` answers the first N calls of
``nvmlDeviceGetUtilizationRates`` (the "tick marker", ``TICK_SYMBOL``; every call counts, probes
included, whatever it returns) and from call N+1 on every call on that device -- including
``nvmlDeviceGetHandleByIndex`` -- returns NVML_ERROR_GPU_IS_LOST. ``lost_after=0`` is lost from the
start. ``fake.lose(index)`` loses a device at once.

Environment spec (``install_from_spec`` / ``install_from_env``, variable ``GPUTOP_FAKE_NVML``)::

    SPEC    := DEVICES [":" OPTION]...
    DEVICES := "none" | ITEM ("," ITEM)...
    ITEM    := PROFILE ["*" COUNT] ["+" FIELD "=" VALUE]...     e.g. H100_SXM*8, A100_SXM+lost_after=3
    OPTION  := "driver_not_loaded" | "no_permission" | "rm_version_mismatch" | "library_not_found"
             | DRIVER profile name (e.g. "old_driver", case-insensitive)
             | "simulated"    every device's name ends in " (simulated)" (screenshots, demos)
             | "cost"         the driver cost model on (see below)
             | "no_pcie_counters"  no PCIe byte-counter field ids (GetPcieThroughput is the way)

    "H100_SXM", "H100_SXM*2,A100_SXM", "CONSUMER:old_driver", "none:driver_not_loaded",
    "A100_SXM+mig_enabled=1", "none:library_not_found", "H100_SXM*8:simulated",
    "H100_SXM*8:cost:no_pcie_counters"

Driver cost model (off by default): the option ``cost`` (or ``DriverProfile(cost_model=True)``)
makes every call cost what the real driver's does, from the figures in ``COSTS`` (published ones,
and assumed ones classed with the nearest published call; see there). A call lasts its cost from
the moment it holds its lock, the fake's own Python inside it (what is left is busy-waited under
20 us, slept above; a call whose Python alone takes longer than its cost lasts that long),
holding the fake's driver lock (one lock per fake, so per process; the real driver's is one per
machine) for a process list, its device's lock for any other call on a device, none while a
call waits out a sampling window (``DRIVER_LOCKED``, ``UNLOCKED``). ``fake.cost_ns`` counts the
modelled time per symbol beside ``fake.calls``, and ``fake.wall_ns`` each call's own wall time
from its entry to its exit (its cost, a wait for its lock, a late wake-up on a loaded machine,
the fake's Python where longer than the cost: what a caller timing the call sees beyond it is
pynvml's Python and waits for the GIL); with ``GPUTOP_FAKE_NVML_STATS=DIR`` a cost-modelled fake
installed from a spec writes all three to ``DIR/<pid>.json`` four times a second and at exit
(``STATS_VARIABLE``), for a benchmark to read another process's driver time. The option ``no_pcie_counters`` is a driver
without the PCIe byte-counter field ids (they answer INVALID_ARGUMENT, as on older drivers).

Simulated names: ``simulated(profile)`` (or the ``simulated`` option) appends ``SIMULATED_SUFFIX``
to the name the fake reports through ``nvmlDeviceGetName``, so a picture or a terminal made over
the fake says so itself. Everything else about the device (UUID included) stays as it was.
"""

from __future__ import annotations

import contextlib
import ctypes
import dataclasses
import math
import os
import threading
import time
import uuid
from collections import Counter
from dataclasses import dataclass
from typing import Any, Callable, Iterable

import pynvml as N

# ------------------------------------------------------------------------------------------ consts

START_NS = 1_700_000_000 * 10**9  # the manual clock's epoch (a plausible wall-clock time)
PERIOD_S = 10.0  # every varying value is base + swing * sin(2 pi (t + phase) / PERIOD_S)
PHASE_PER_DEVICE_S = 1.25  # devices are out of step, so GPU 0 and GPU 1 differ
PROC_SAMPLE_PERIOD_NS = 100_000_000  # the driver's per-process utilization sampling interval
TICK_SYMBOL = "nvmlDeviceGetUtilizationRates"  # calls of this count towards ``lost_after``
SELF_PID = -1  # in a profile's process list: the pid of the process querying NVML
EPOCH_VARIABLE = "GPUTOP_FAKE_NVML_EPOCH_NS"  # a real-time fake's start, shared by processes
HIDDEN_PID = 4_000_000  # a pid no namespace on a test machine shows (pid_max is 4194304)

GiB = 1 << 30
MiB = 1 << 20
_UINT_MAX = 0xFFFFFFFF
_NOT_AVAILABLE_ULL = 0xFFFFFFFFFFFFFFFF

# ------------------------------------------------------------------------------ driver cost model

# Seconds a call spends in the driver. Published: MangoHud PR #2104 (per-call medians, RTX 4090
# laptop, driver 610.57.04): a running-process list 4491.4 us, the fan speed 137.1 us, memory
# info 11.6 us, utilization rates 2.5 us; NVML's API reference: nvmlDeviceGetPcieThroughput
# samples its counter over a 20 ms interval.
COST_PUBLISHED: dict[str, float] = {
    "nvmlDeviceGetComputeRunningProcesses_v3": 4491.4e-6,
    "nvmlDeviceGetComputeRunningProcesses_v2": 4491.4e-6,
    "nvmlDeviceGetGraphicsRunningProcesses_v3": 4491.4e-6,
    "nvmlDeviceGetGraphicsRunningProcesses_v2": 4491.4e-6,
    "nvmlDeviceGetFanSpeed": 137.1e-6,
    "nvmlDeviceGetMemoryInfo": 11.6e-6,
    "nvmlDeviceGetMemoryInfo_v2": 11.6e-6,
    "nvmlDeviceGetUtilizationRates": 2.5e-6,
    "nvmlDeviceGetPcieThroughput": 20e-3,
}
# Assumed, not published: each classed with the published call nearest in kind. Readings the
# driver asks the GPU's PMU/GSP for (power, energy, temperature, clocks and their reasons,
# performance state, power limit, field values, a GPM sample, the per-process utilization
# samples the driver keeps) cost what the fan speed does (MangoHud PR #1307: "these NVML calls
# ... need to talk to PMU and/or GSP"); everything else (static queries at open, GPM metrics
# computed in the library from two samples) costs what memory info does. nvmlInit, nvmlShutdown
# and nvmlErrorString: not modelled (0).
_PMU = 137.1e-6
COST_ASSUMED: dict[str, float] = {
    "nvmlDeviceGetPowerUsage": _PMU,
    "nvmlDeviceGetTotalEnergyConsumption": _PMU,
    "nvmlDeviceGetEnforcedPowerLimit": _PMU,
    "nvmlDeviceGetTemperature": _PMU,
    "nvmlDeviceGetTemperatureV": _PMU,
    "nvmlDeviceGetClockInfo": _PMU,
    "nvmlDeviceGetPerformanceState": _PMU,
    "nvmlDeviceGetPowerState": _PMU,
    "nvmlDeviceGetCurrentClocksEventReasons": _PMU,
    "nvmlDeviceGetCurrentClocksThrottleReasons": _PMU,
    "nvmlDeviceGetFieldValues": _PMU,
    "nvmlGpmSampleGet": _PMU,
    "nvmlDeviceGetProcessUtilization": _PMU,
    "nvmlDeviceGetProcessesUtilizationInfo": _PMU,
    "nvmlInitWithFlags": 0.0,
    "nvmlInit_v2": 0.0,
    "nvmlShutdown": 0.0,
    "nvmlErrorString": 0.0,
}
COST_OTHER_S = 11.6e-6  # any symbol in neither table
COSTS: dict[str, float] = {**COST_ASSUMED, **COST_PUBLISHED}
# Locks (assumed: the driver has one lock for itself and one per GPU). A process list walks
# every client of the driver: it holds the driver's lock, so two never overlap. A call that
# waits out a sampling window holds nothing while it waits. Every other call on a device holds
# that device's lock: two devices may be read side by side, one device's calls run one at a time.
DRIVER_LOCKED = frozenset(
    {
        "nvmlDeviceGetComputeRunningProcesses_v3",
        "nvmlDeviceGetComputeRunningProcesses_v2",
        "nvmlDeviceGetGraphicsRunningProcesses_v3",
        "nvmlDeviceGetGraphicsRunningProcesses_v2",
    }
)
UNLOCKED = frozenset({"nvmlDeviceGetPcieThroughput"})
SPIN_BELOW_S = 20e-6  # shorter costs busy-wait; longer ones sleep (timer slack set to 1 ns)
STATS_VARIABLE = "GPUTOP_FAKE_NVML_STATS"  # DIR: a cost-modelled fake writes DIR/<pid>.json
STATS_EVERY_S = 0.25
_PR_SET_TIMERSLACK = 29
_slack = threading.local()


def cost_of(symbol: str) -> float:
    """Seconds the model charges one call of ``symbol``."""
    return COSTS.get(symbol, COST_OTHER_S)


def _spend_until(deadline_ns: int) -> None:
    """Wait until ``deadline_ns`` (perf_counter_ns): a spin (GIL held) for what is left under
    SPIN_BELOW_S, else a sleep (GIL released, as a real driver call releases it) with this thread's
    timer slack at 1 ns (Linux; the default 50 us would add that much to every call). Nothing
    left (the fake's own Python took longer than the cost): no wait."""
    left = (deadline_ns - time.perf_counter_ns()) / 1e9
    if left <= 0:
        return
    if left < SPIN_BELOW_S:
        while time.perf_counter_ns() < deadline_ns:
            pass
        return
    if not getattr(_slack, "set", False):
        _slack.set = True
        try:
            ctypes.CDLL(None).prctl(_PR_SET_TIMERSLACK, 1, 0, 0, 0)
        except (OSError, AttributeError):
            pass  # not Linux: the sleeps run long
    time.sleep(left)


_ERROR_STRINGS = {  # nvmlErrorString, as libnvidia-ml words them
    N.NVML_SUCCESS: b"Success",
    N.NVML_ERROR_UNINITIALIZED: b"Uninitialized",
    N.NVML_ERROR_INVALID_ARGUMENT: b"Invalid Argument",
    N.NVML_ERROR_NOT_SUPPORTED: b"Not Supported",
    N.NVML_ERROR_NO_PERMISSION: b"Insufficient Permissions",
    N.NVML_ERROR_ALREADY_INITIALIZED: b"Already Initialized",
    N.NVML_ERROR_NOT_FOUND: b"Not Found",
    N.NVML_ERROR_INSUFFICIENT_SIZE: b"Insufficient Size",
    N.NVML_ERROR_INSUFFICIENT_POWER: b"Insufficient External Power",
    N.NVML_ERROR_DRIVER_NOT_LOADED: b"Driver Not Loaded",
    N.NVML_ERROR_TIMEOUT: b"Timeout",
    N.NVML_ERROR_IRQ_ISSUE: b"Interrupt Request Issue",
    N.NVML_ERROR_LIBRARY_NOT_FOUND: b"NVML Shared Library Not Found",
    N.NVML_ERROR_FUNCTION_NOT_FOUND: b"Function Not Found",
    N.NVML_ERROR_CORRUPTED_INFOROM: b"Corrupted infoROM",
    N.NVML_ERROR_GPU_IS_LOST: b"GPU is lost",
    N.NVML_ERROR_RESET_REQUIRED: b"GPU requires restart",
    N.NVML_ERROR_OPERATING_SYSTEM: b"The operating system has blocked the request.",
    N.NVML_ERROR_LIB_RM_VERSION_MISMATCH: b"RM has detected an NVML/RM version mismatch.",
    N.NVML_ERROR_MEMORY: b"Insufficient Memory",
    N.NVML_ERROR_ARGUMENT_VERSION_MISMATCH: b"Argument version mismatch",
    N.NVML_ERROR_UNKNOWN: b"Unknown Error",
}


# ---------------------------------------------------------------------------------------- profiles


@dataclass(frozen=True)
class FakeProcess:
    """A process holding a context on a fake GPU. ``pid=SELF_PID`` means "the querying process"."""

    pid: int
    used_mem_bytes: int | None  # None: NVML_VALUE_NOT_AVAILABLE (as WDDM reports)
    sm_util_pct: int = 0
    mem_util_pct: int = 0
    kind: str = "compute"  # "compute", "graphics" or "both"


@dataclass(frozen=True)
class DeviceProfile:
    """What one fake GPU is and how its readings behave. Plain data: vary with dataclasses.replace."""

    name: str
    arch: int  # NVML_DEVICE_ARCH_*
    cuda_cc: tuple[int, int]
    sm_count: int
    cores_per_sm: int
    mem_bus_width_bits: int
    max_mem_clock_mhz: int
    max_sm_clock_mhz: int
    mem_total_mib: int
    power_limit_w: float
    pci_device_id: int  # (device << 16) | vendor
    # readings: base values, and how far they swing over PERIOD_S
    gpu_util_pct: float = 80.0
    mem_busy_pct: float = 40.0
    util_swing_pct: float = 10.0
    power_w: float = 400.0
    power_swing_w: float = 50.0
    energy_start_mj: int | None = 123_456_789  # None: the board keeps no energy counter (NOT_SUPPORTED)
    sm_clock_mhz: int | None = None  # None: max_sm_clock_mhz
    mem_clock_mhz: int | None = None  # None: max_mem_clock_mhz
    temp_c: int = 55
    temp_swing_c: float = 2.0
    fan_pct: int | None = None  # None: no fan (NVML_ERROR_NOT_SUPPORTED)
    pstate: int = 0
    clock_event_reasons: int = 0
    mem_reserved_mib: int = 512
    mem_overhead_mib: int = 600  # used by the driver and contexts, beyond the processes' memory
    pcie_tx_kib_s: float = 2_000_000.0
    pcie_rx_kib_s: float = 3_000_000.0
    nvlink_links: int = 0  # 0: NVLink field values are NOT_SUPPORTED
    nvlink_tx_kib_s: float = 0.0  # summed over all links
    nvlink_rx_kib_s: float = 0.0
    gpm_supported: bool = False
    # GPM metric id -> base percentage; metrics not listed answer NOT_SUPPORTED
    gpm_metrics: tuple[tuple[int, float], ...] = ()
    gpm_swing_pct: float = 5.0
    mig_capable: bool = False
    mig_enabled: bool = False
    # what the parent device's running-process queries return in MIG mode (as a non-root user sees)
    mig_processes_error: int = N.NVML_ERROR_NO_PERMISSION
    processes: tuple[FakeProcess, ...] = ()
    lost_after: int | None = None  # see module doc
    pci_bus: int = 0x18
    uuid_name: str | None = None  # None: ``name``; ``simulated`` keeps the UUID of the plain name
    # the PCIe link: now and the most the device and slot allow (None: NOT_SUPPORTED)
    pcie_gen: int | None = 5
    pcie_gen_max: int | None = 5
    pcie_width: int | None = 16
    pcie_width_max: int | None = 16
    # CPUs near the device (nvmlDeviceGetCpuAffinity): "socket" = every CPU of the socket the
    # device hangs off, on a host of ``host_sockets`` sockets of ``host_socket_cores`` cores (two
    # threads each where ``host_smt``, numbered as Linux does: all first threads, then all second
    # ones); the devices of a board are shared out over the sockets in order (8 GPUs on 2
    # sockets: 0-3 on socket 0, 4-7 on socket 1). A CPU list ("0-1,4"; in a GPUTOP_FAKE_NVML
    # spec, where "," parts devices, "0-1;4") is exactly those CPUs; None: NOT_SUPPORTED.
    cpu_affinity: str | None = "socket"
    host_sockets: int = 2
    host_socket_cores: int = 56
    host_smt: bool = True
    numa_node: int | None = None  # None: NOT_SUPPORTED (the GPU is no NUMA node, as on x86 boards)

    @property
    def cores(self) -> int:
        return self.sm_count * self.cores_per_sm


_HOPPER_GPM = (
    (N.NVML_GPM_METRIC_GRAPHICS_UTIL, 90.0),
    (N.NVML_GPM_METRIC_SM_UTIL, 75.0),
    (N.NVML_GPM_METRIC_SM_OCCUPANCY, 40.0),
    (N.NVML_GPM_METRIC_ANY_TENSOR_UTIL, 35.0),
    (N.NVML_GPM_METRIC_HMMA_TENSOR_UTIL, 30.0),
    (N.NVML_GPM_METRIC_DRAM_BW_UTIL, 55.0),
    (N.NVML_GPM_METRIC_FP16_UTIL, 12.0),
    (N.NVML_GPM_METRIC_FP32_UTIL, 20.0),
    (N.NVML_GPM_METRIC_FP64_UTIL, 6.0),
    (N.NVML_GPM_METRIC_INTEGER_UTIL, 8.0),
)

H100_SXM = DeviceProfile(
    name="NVIDIA H100 80GB HBM3",
    arch=N.NVML_DEVICE_ARCH_HOPPER,
    cuda_cc=(9, 0),
    sm_count=132,
    cores_per_sm=128,
    mem_bus_width_bits=5120,
    max_mem_clock_mhz=2619,
    max_sm_clock_mhz=1980,
    sm_clock_mhz=1755,
    mem_total_mib=81559,
    power_limit_w=700.0,
    pci_device_id=0x233010DE,
    gpu_util_pct=85.0,
    mem_busy_pct=45.0,
    power_w=520.0,
    power_swing_w=60.0,
    temp_c=48,
    fan_pct=None,
    mem_reserved_mib=543,
    pcie_tx_kib_s=1_500_000.0,
    pcie_rx_kib_s=4_000_000.0,
    nvlink_links=18,
    nvlink_tx_kib_s=150_000_000.0,
    nvlink_rx_kib_s=140_000_000.0,
    gpm_supported=True,
    gpm_metrics=_HOPPER_GPM,
    mig_capable=True,
    processes=(FakeProcess(SELF_PID, 18 * GiB, 60, 30, "compute"), FakeProcess(HIDDEN_PID, 40 * GiB, 25, 15, "compute")),
)

A100_SXM = DeviceProfile(
    name="NVIDIA A100-SXM4-80GB",
    arch=N.NVML_DEVICE_ARCH_AMPERE,
    cuda_cc=(8, 0),
    sm_count=108,
    cores_per_sm=64,
    mem_bus_width_bits=5120,
    max_mem_clock_mhz=1593,
    max_sm_clock_mhz=1410,
    mem_total_mib=81920,
    power_limit_w=400.0,
    pci_device_id=0x20B210DE,
    gpu_util_pct=70.0,
    mem_busy_pct=35.0,
    power_w=300.0,
    power_swing_w=40.0,
    temp_c=42,
    fan_pct=None,
    clock_event_reasons=N.nvmlClocksEventReasonSwPowerCap,
    mem_reserved_mib=512,
    nvlink_links=12,
    nvlink_tx_kib_s=80_000_000.0,
    nvlink_rx_kib_s=75_000_000.0,
    gpm_supported=False,
    mig_capable=True,
    pci_bus=0x07,
    pcie_gen=4,
    pcie_gen_max=4,
    host_socket_cores=64,
    processes=(FakeProcess(HIDDEN_PID + 1, 30 * GiB, 50, 20, "compute"),),
)

CONSUMER = DeviceProfile(
    name="NVIDIA GeForce RTX 4090",
    arch=N.NVML_DEVICE_ARCH_ADA,
    cuda_cc=(8, 9),
    sm_count=128,
    cores_per_sm=128,
    mem_bus_width_bits=384,
    max_mem_clock_mhz=10501,
    max_sm_clock_mhz=3120,
    sm_clock_mhz=2520,
    mem_total_mib=24564,
    power_limit_w=450.0,
    pci_device_id=0x268410DE,
    gpu_util_pct=30.0,
    mem_busy_pct=10.0,
    power_w=120.0,
    power_swing_w=20.0,
    temp_c=61,
    fan_pct=38,
    pstate=2,
    clock_event_reasons=N.nvmlClocksEventReasonGpuIdle,
    mem_reserved_mib=290,
    mem_overhead_mib=300,
    pcie_tx_kib_s=200_000.0,
    pcie_rx_kib_s=600_000.0,
    nvlink_links=0,
    gpm_supported=False,
    mig_capable=False,
    pci_bus=0x01,
    pcie_gen=1,
    pcie_gen_max=4,  # a desktop card's link trains down at light load
    host_sockets=1,
    host_socket_cores=16,
    processes=(FakeProcess(SELF_PID, 2 * GiB, 20, 5, "both"), FakeProcess(HIDDEN_PID + 2, 600 * MiB, 3, 1, "graphics")),
)

PROFILES: dict[str, DeviceProfile] = {"H100_SXM": H100_SXM, "A100_SXM": A100_SXM, "CONSUMER": CONSUMER}

SIMULATED_SUFFIX = " (simulated)"
SIMULATED = "SIMULATED"  # the spec option


def simulated(profile: DeviceProfile) -> DeviceProfile:
    """``profile`` reporting a name that says it is simulated ("NVIDIA H100 80GB HBM3 (simulated)")."""
    if profile.name.endswith(SIMULATED_SUFFIX):
        return profile
    return dataclasses.replace(profile, name=profile.name + SIMULATED_SUFFIX, uuid_name=profile.uuid_name or profile.name)


@dataclass(frozen=True)
class DriverProfile:
    """What the installed libnvidia-ml exports and how nvmlInit goes."""

    name: str = "r550"
    driver_version: str = "550.54.15"
    cuda_version: int = 12040  # 1000 * major + 10 * minor
    symbols: frozenset[str] | None = None  # None: every symbol the fake implements
    init_error: int = N.NVML_SUCCESS  # e.g. NVML_ERROR_DRIVER_NOT_LOADED: nvmlInit fails with it
    max_field_id: int = N.NVML_FI_MAX - 1  # newer field ids answer INVALID_ARGUMENT
    cost_model: bool = False  # every call costs its COSTS time (see the module doc)

    def exported(self) -> frozenset[str]:
        return IMPLEMENTED if self.symbols is None else self.symbols

    def without(self, *names: str, **changes: Any) -> DriverProfile:
        """This driver less some symbols (and with other changes)."""
        unknown = set(names) - IMPLEMENTED
        if unknown:
            raise ValueError(f"not symbols of the fake: {sorted(unknown)}")
        return dataclasses.replace(self, symbols=self.exported() - set(names), **changes)


# ------------------------------------------------------------------------------- ctypes helpers

_CArgObject = type(ctypes.byref(ctypes.c_int()))


def _int(x: Any) -> int:
    return int(x.value) if hasattr(x, "value") else int(x)


def _addr(x: Any) -> int | None:
    """The address of the memory an argument refers to, as C would see it (None for NULL)."""
    if x is None:
        return None
    if isinstance(x, _CArgObject):
        return ctypes.addressof(x._obj)
    if isinstance(x, ctypes._Pointer):
        return ctypes.cast(x, ctypes.c_void_p).value
    if isinstance(x, ctypes.c_void_p):
        return x.value
    if isinstance(x, int):
        return x or None
    return ctypes.addressof(x)


def _size(x: Any) -> int | None:
    """Bytes of caller memory behind an argument, where Python knows it (not for raw pointers)."""
    if isinstance(x, _CArgObject):
        return ctypes.sizeof(x._obj)
    if isinstance(x, (ctypes.Structure, ctypes.Union, ctypes.Array, ctypes._SimpleCData)):
        return ctypes.sizeof(x)
    return None


def _out(arg: Any, ctype: Any) -> Any | None:
    """The caller's out-parameter viewed as ``ctype`` (None where it is NULL or too small)."""
    address = _addr(arg)
    if address is None:
        return None
    size = _size(arg)
    if size is not None and size < ctypes.sizeof(ctype):
        return None
    return ctype.from_address(address)


def _elements(arg: Any, count: int, ctype: Any) -> list[Any] | None:
    """``count`` elements of an out-array of ``ctype`` (None: NULL, too short, or other elements)."""
    address = _addr(arg)
    if address is None:
        return None
    obj = arg._obj if isinstance(arg, _CArgObject) else arg
    element = getattr(type(obj), "_type_", None)
    if isinstance(element, type) and ctypes.sizeof(element) != ctypes.sizeof(ctype):
        raise _VersionMismatch
    size = _size(arg)
    if size is not None and size < count * ctypes.sizeof(ctype):
        return None
    return [ctype.from_address(address + i * ctypes.sizeof(ctype)) for i in range(count)]


def _write_pointer(arg: Any, address: int) -> bool:
    """Store an address into a caller's pointer variable (``byref(POINTER(...)())``)."""
    target = _addr(arg)
    if target is None:
        return False
    ctypes.c_void_p.from_address(target).value = address
    return True


def _write_string(buf: Any, length: Any, text: str) -> int:
    data = text.encode() + b"\0"
    address = _addr(buf)
    if address is None:
        return N.NVML_ERROR_INVALID_ARGUMENT
    if _int(length) < len(data):
        return N.NVML_ERROR_INSUFFICIENT_SIZE
    ctypes.memmove(address, data, len(data))
    return N.NVML_SUCCESS


class _VersionMismatch(Exception):
    """Raised inside a symbol: an array of the wrong element struct (the wrong API version)."""


# --------------------------------------------------------------------------------- time signals


def _wave(t: float) -> float:
    return math.sin(2 * math.pi * t / PERIOD_S)


def _wave_integral(t: float) -> float:
    """Integral of _wave from 0 to t."""
    return PERIOD_S / (2 * math.pi) * (1 - math.cos(2 * math.pi * t / PERIOD_S))


def signal_at(base: float, swing: float, t: float) -> float:
    return base + swing * _wave(t)


def signal_integral(base: float, swing: float, t: float) -> float:
    """Integral over [0, t] of ``signal_at``: what a counter of that signal holds at t."""
    return base * t + swing * _wave_integral(t)


def signal_mean(base: float, swing: float, t1: float, t2: float) -> float:
    """Average of the signal over [t1, t2] -- what a rate from two counter readings gives."""
    if t2 == t1:
        return signal_at(base, swing, t1)
    return (signal_integral(base, swing, t2) - signal_integral(base, swing, t1)) / (t2 - t1)


def _pct(x: float) -> float:
    return min(100.0, max(0.0, x))


# ------------------------------------------------------------------------------------- the fake


@dataclass
class _GpmSample:
    device: int | None = None
    t_ns: int | None = None


@dataclass
class _Device:
    index: int
    profile: DeviceProfile
    handle_mem: Any  # the memory a handle points to: a real address, unique per device
    lost: bool = False
    ticks: int = 0

    @property
    def handle(self) -> int:
        return ctypes.addressof(self.handle_mem)


@dataclass
class _Failure:
    code: int
    device: int | None
    times: int | None  # None: every call


class _Symbol:
    """One exported C function. A plain object, so pynvml may set ``restype`` and the like on it."""

    def __init__(self, fake: FakeNvml, name: str) -> None:
        self._fake = fake
        self.__name__ = name

    def __call__(self, *args: Any) -> Any:
        return self._fake._call(self.__name__, args)

    def __repr__(self) -> str:
        return f"<fake NVML symbol {self.__name__}>"


@dataclass(frozen=True)
class _Spec:
    impl: Callable[..., Any]
    device: bool  # the first argument is a device handle
    needs_init: bool


_REGISTRY: dict[str, _Spec] = {}


def _symbol(*names: str, device: bool = True, needs_init: bool = True):
    def register(fn: Callable[..., Any]) -> Callable[..., Any]:
        for name in names:
            _REGISTRY[name] = _Spec(fn, device, needs_init)
        return fn

    return register


class FakeNvml:
    """A fake libnvidia-ml: attributes named after C symbols; install it as ``pynvml.nvmlLib``.

    Public state for tests: ``devices`` (profiles, by index), ``driver``, ``now_ns``, ``calls``
    (Counter of symbol calls), ``initialized`` (nvmlInit refcount inside the library).
    """

    def __init__(
        self, devices: Iterable[DeviceProfile] = (H100_SXM,), driver: DriverProfile | None = None, *, real_time: bool = False
    ) -> None:
        self.driver = driver or DriverProfile()
        self.devices: list[DeviceProfile] = list(devices)
        self._dev = [_Device(i, p, ctypes.c_uint64(0xD0 + i), lost=p.lost_after == 0) for i, p in enumerate(self.devices)]
        self._by_handle = {d.handle: d for d in self._dev}
        self._real_time = real_time
        epoch = os.environ.get(EPOCH_VARIABLE) if real_time else None
        self._start_ns = int(epoch) if epoch else time.time_ns() if real_time else START_NS
        self._manual_ns = START_NS
        self._lock = threading.RLock()
        self._failures: dict[str, list[_Failure]] = {}
        self._gpm_samples: dict[int, _GpmSample] = {}
        self._gpm_memory: dict[int, Any] = {}
        self.calls: Counter[str] = Counter()
        self.cost_ns: Counter[str] = Counter()  # modelled driver time per symbol (cost model on)
        self.wall_ns: Counter[str] = Counter()  # the calls' wall time inside the fake per symbol (cost model on)
        self.threads: dict[str, set[str]] = {}  # symbol -> names of the threads that called it (cost model on)
        self._driver_lock = threading.Lock()  # the cost model's driver lock
        self._device_locks = [threading.Lock() for _ in self._dev]
        self.initialized = 0
        for name in self.driver.exported():
            if name not in _REGISTRY:
                raise ValueError(f"driver profile {self.driver.name} exports {name}, which the fake lacks")
            setattr(self, name, _Symbol(self, name))

    # -- time
    @property
    def now_ns(self) -> int:
        return time.time_ns() if self._real_time else self._manual_ns

    def advance(self, seconds: float) -> int:
        """Move the manual clock on; returns the new ``now_ns``."""
        if self._real_time:
            raise RuntimeError("this fake follows the real clock")
        with self._lock:
            self._manual_ns += int(round(seconds * 1e9))
            return self._manual_ns

    def t(self, index: int, now_ns: int | None = None) -> float:
        """Seconds since the fake started, shifted by device ``index``'s phase."""
        ns = self.now_ns if now_ns is None else now_ns
        return (ns - self._start_ns) / 1e9 + index * PHASE_PER_DEVICE_S

    # -- faults
    def fail(self, symbol: str, code: int, device: int | None = None, times: int | None = None) -> None:
        """Make ``symbol`` return ``code`` (for one device, or every call), ``times`` times or always."""
        if symbol not in _REGISTRY:
            raise ValueError(f"{symbol} is not a symbol of the fake")
        with self._lock:
            self._failures.setdefault(symbol, []).append(_Failure(code, device, times))

    def clear_failures(self) -> None:
        with self._lock:
            self._failures.clear()

    def lose(self, index: int) -> None:
        """The device falls off the bus: every call on it returns NVML_ERROR_GPU_IS_LOST."""
        with self._lock:
            self._dev[index].lost = True

    def is_lost(self, index: int) -> bool:
        return self._dev[index].lost

    def handle_of(self, index: int) -> int:
        """The handle value (an address) nvmlDeviceGetHandleByIndex gives for ``index``."""
        return self._dev[index].handle

    # -- values, for tests to compare against
    def value(self, index: int, what: str, now_ns: int | None = None) -> float:
        """The instantaneous value of a varying reading: gpu_util, mem_busy, power_w, pcie_tx_kib_s,
        pcie_rx_kib_s, temp_c."""
        p, t = self.devices[index], self.t(index, now_ns)
        base, swing = {
            "gpu_util": (p.gpu_util_pct, p.util_swing_pct),
            "mem_busy": (p.mem_busy_pct, p.util_swing_pct / 2),
            "power_w": (p.power_w, p.power_swing_w),
            "pcie_tx_kib_s": (p.pcie_tx_kib_s, p.pcie_tx_kib_s / 10),
            "pcie_rx_kib_s": (p.pcie_rx_kib_s, p.pcie_rx_kib_s / 10),
            "temp_c": (p.temp_c, p.temp_swing_c),
        }[what]
        return signal_at(base, swing, t)

    def energy_mj(self, index: int, now_ns: int | None = None) -> int | None:
        p = self.devices[index]
        if p.energy_start_mj is None:
            return None
        t0, t = self.t(index, self._start_ns), self.t(index, now_ns)
        joules = signal_integral(p.power_w, p.power_swing_w, t) - signal_integral(p.power_w, p.power_swing_w, t0)
        return p.energy_start_mj + int(joules * 1000)

    def counter_kib(self, index: int, what: str, now_ns: int | None = None) -> int:
        """Cumulative KiB of "nvlink_tx", "nvlink_rx" (all links), "pcie_tx" or "pcie_rx"."""
        p = self.devices[index]
        rate = {"nvlink_tx": p.nvlink_tx_kib_s, "nvlink_rx": p.nvlink_rx_kib_s, "pcie_tx": p.pcie_tx_kib_s, "pcie_rx": p.pcie_rx_kib_s}[
            what
        ]
        t0, t = self.t(index, self._start_ns), self.t(index, now_ns)
        return 10**9 + int(signal_integral(rate, rate / 10, t) - signal_integral(rate, rate / 10, t0))

    def gpm_value(self, index: int, metric_id: int, t1_ns: int, t2_ns: int) -> float | None:
        """What nvmlGpmMetricsGet gives for a metric between samples taken at t1_ns and t2_ns."""
        base = dict(self.devices[index].gpm_metrics).get(metric_id)
        if base is None:
            return None
        swing = self.devices[index].gpm_swing_pct
        return _pct(signal_mean(base, swing, self.t(index, t1_ns), self.t(index, t2_ns)))

    def processes(self, index: int) -> list[FakeProcess]:
        """The device's processes with SELF_PID resolved to this process's pid."""
        return [dataclasses.replace(p, pid=os.getpid()) if p.pid == SELF_PID else p for p in self.devices[index].processes]

    # -- dispatch
    def _call(self, name: str, args: tuple) -> Any:
        if not self.driver.cost_model:
            return self._dispatch(name, args)
        entered = time.perf_counter_ns()
        cost = cost_of(name)
        dev = self._by_handle.get(_addr(args[0])) if args and _REGISTRY[name].device else None
        lock = self._driver_lock if name in DRIVER_LOCKED or dev is None else self._device_locks[dev.index]
        with contextlib.nullcontext() if name in UNLOCKED else lock:  # the driver's lock, held for the cost
            started = time.perf_counter_ns()
            result = self._dispatch(name, args)  # (the fake's own Python: inside the cost, not added to it)
            _spend_until(started + round(cost * 1e9))
        left = time.perf_counter_ns()
        with self._lock:
            self.cost_ns[name] += round(cost * 1e9)
            self.wall_ns[name] += left - entered
            self.threads.setdefault(name, set()).add(threading.current_thread().name)
        return result

    def stats(self) -> dict[str, Any]:
        """Calls, modelled driver time (ns) and the calls' own wall time inside the fake (ns, entry to
        exit: the cost, any wait for the driver's lock, the fake's Python where longer than the
        cost, a late wake-up) per symbol so far, stamped with the wall clock."""
        with self._lock:
            return {
                "pid": os.getpid(),
                "t_ns": time.time_ns(),
                "calls": dict(self.calls),
                "cost_ns": dict(self.cost_ns),
                "wall_ns": dict(self.wall_ns),
            }

    def _dispatch(self, name: str, args: tuple) -> Any:
        spec = _REGISTRY[name]
        with self._lock:
            self.calls[name] += 1
            if spec.needs_init and not self.initialized:
                return N.NVML_ERROR_UNINITIALIZED
            dev = None
            if spec.device:
                if not args:
                    return N.NVML_ERROR_INVALID_ARGUMENT
                dev = self._by_handle.get(_addr(args[0]))
                if dev is None:
                    return N.NVML_ERROR_INVALID_ARGUMENT
                args = args[1:]
                if name == TICK_SYMBOL:
                    dev.ticks += 1
                    if dev.profile.lost_after is not None and dev.ticks > dev.profile.lost_after:
                        dev.lost = True
                if dev.lost:
                    return N.NVML_ERROR_GPU_IS_LOST
            injected = self._injected(name, dev.index if dev else None)
            if injected is not None:
                return injected
            try:
                return spec.impl(self, dev, *args) if spec.device else spec.impl(self, *args)
            except _VersionMismatch:
                return N.NVML_ERROR_ARGUMENT_VERSION_MISMATCH

    def _injected(self, name: str, index: int | None) -> int | None:
        for failure in self._failures.get(name, ()):
            if failure.device is None or failure.device == index:
                if failure.times is not None:
                    if failure.times <= 0:
                        continue
                    failure.times -= 1
                return failure.code
        return None

    def _device_at(self, index: int) -> _Device | None:
        return self._dev[index] if 0 <= index < len(self._dev) else None


# ------------------------------------------------------------------------- symbols: library, system


@_symbol("nvmlInitWithFlags", device=False, needs_init=False)
def _init(fake: FakeNvml, flags: Any = 0) -> int:
    if fake.driver.init_error != N.NVML_SUCCESS:
        return fake.driver.init_error
    fake.initialized += 1
    return N.NVML_SUCCESS


@_symbol("nvmlShutdown", device=False)
def _shutdown(fake: FakeNvml) -> int:
    fake.initialized -= 1
    return N.NVML_SUCCESS


@_symbol("nvmlErrorString", device=False, needs_init=False)
def _error_string(fake: FakeNvml, code: Any) -> bytes:
    return _ERROR_STRINGS.get(_int(code), b"Unknown Error")


@_symbol("nvmlSystemGetDriverVersion", device=False)
def _driver_version(fake: FakeNvml, buf: Any, length: Any) -> int:
    return _write_string(buf, length, fake.driver.driver_version)


@_symbol("nvmlSystemGetCudaDriverVersion", "nvmlSystemGetCudaDriverVersion_v2", device=False)
def _cuda_version(fake: FakeNvml, out: Any) -> int:
    value = _out(out, ctypes.c_int)
    if value is None:
        return N.NVML_ERROR_INVALID_ARGUMENT
    value.value = fake.driver.cuda_version
    return N.NVML_SUCCESS


@_symbol("nvmlDeviceGetCount_v2", device=False)
def _count(fake: FakeNvml, out: Any) -> int:
    value = _out(out, ctypes.c_uint)
    if value is None:
        return N.NVML_ERROR_INVALID_ARGUMENT
    value.value = len(fake.devices)
    return N.NVML_SUCCESS


@_symbol("nvmlDeviceGetHandleByIndex_v2", device=False)
def _handle_by_index(fake: FakeNvml, index: Any, out: Any) -> int:
    dev = fake._device_at(_int(index))
    if dev is None or _addr(out) is None:
        return N.NVML_ERROR_INVALID_ARGUMENT
    if dev.lost:
        return N.NVML_ERROR_GPU_IS_LOST
    injected = fake._injected("nvmlDeviceGetHandleByIndex_v2", dev.index)
    if injected is not None:
        return injected
    _write_pointer(out, dev.handle)
    return N.NVML_SUCCESS


# ----------------------------------------------------------------------------- symbols: identity


def _scalar(ctype: Any, getter: Callable[[FakeNvml, _Device], Any]) -> Callable[..., int]:
    """A symbol ``(device, T* out)`` answering ``getter``'s value (None: NOT_SUPPORTED)."""

    def impl(fake: FakeNvml, dev: _Device, out: Any) -> int:
        value = getter(fake, dev)
        if value is None:
            return N.NVML_ERROR_NOT_SUPPORTED
        target = _out(out, ctype)
        if target is None:
            return N.NVML_ERROR_INVALID_ARGUMENT
        target.value = value
        return N.NVML_SUCCESS

    return impl


def _uuid(dev: _Device) -> str:
    name = dev.profile.uuid_name or dev.profile.name
    return "GPU-" + str(uuid.uuid5(uuid.NAMESPACE_URL, f"fakenvml/{name}/{dev.index}"))


def _bus_id(dev: _Device) -> tuple[int, int, int]:
    return 0, dev.profile.pci_bus + 0x10 * dev.index, 0  # domain, bus, device


_symbol("nvmlDeviceGetName")(lambda f, d, buf, n: _write_string(buf, n, d.profile.name))
_symbol("nvmlDeviceGetUUID")(lambda f, d, buf, n: _write_string(buf, n, _uuid(d)))
_symbol("nvmlDeviceGetIndex")(_scalar(ctypes.c_uint, lambda f, d: d.index))
_symbol("nvmlDeviceGetArchitecture")(_scalar(ctypes.c_uint, lambda f, d: d.profile.arch))
_symbol("nvmlDeviceGetNumGpuCores")(_scalar(ctypes.c_uint, lambda f, d: d.profile.cores))
_symbol("nvmlDeviceGetMemoryBusWidth")(_scalar(ctypes.c_uint, lambda f, d: d.profile.mem_bus_width_bits))


@_symbol("nvmlDeviceGetPciInfo_v3")
def _pci_info(fake: FakeNvml, dev: _Device, out: Any) -> int:
    info = _out(out, N.nvmlPciInfo_t)
    if info is None:
        return N.NVML_ERROR_INVALID_ARGUMENT
    domain, bus, device = _bus_id(dev)
    info.busIdLegacy = b"%04X:%02X:%02X.0" % (domain, bus, device)
    info.busId = b"%08X:%02X:%02X.0" % (domain, bus, device)
    info.domain, info.bus, info.device = domain, bus, device
    info.pciDeviceId = dev.profile.pci_device_id
    info.pciSubSystemId = (0x16A1 << 16) | 0x10DE
    return N.NVML_SUCCESS


@_symbol("nvmlDeviceGetCudaComputeCapability")
def _compute_capability(fake: FakeNvml, dev: _Device, major: Any, minor: Any) -> int:
    a, b = _out(major, ctypes.c_int), _out(minor, ctypes.c_int)
    if a is None or b is None:
        return N.NVML_ERROR_INVALID_ARGUMENT
    a.value, b.value = dev.profile.cuda_cc
    return N.NVML_SUCCESS


@_symbol("nvmlDeviceGetMigMode")
def _mig_mode(fake: FakeNvml, dev: _Device, current: Any, pending: Any) -> int:
    if not dev.profile.mig_capable:
        return N.NVML_ERROR_NOT_SUPPORTED
    a, b = _out(current, ctypes.c_uint), _out(pending, ctypes.c_uint)
    if a is None or b is None:
        return N.NVML_ERROR_INVALID_ARGUMENT
    a.value = b.value = N.NVML_DEVICE_MIG_ENABLE if dev.profile.mig_enabled else N.NVML_DEVICE_MIG_DISABLE
    return N.NVML_SUCCESS


def parse_cpus(text: str) -> frozenset[int]:
    """A CPU list as Linux writes one ("0-55,112-167"; or parted by ";") as a set of CPU numbers."""
    cpus: set[int] = set()
    for part in filter(None, (p.strip() for p in text.replace(";", ",").split(","))):
        first, _, last = part.partition("-")
        cpus.update(range(int(first), int(last or first) + 1))
    return frozenset(cpus)


def cpu_affinity(fake: FakeNvml, index: int) -> frozenset[int] | None:
    """The CPUs device ``index`` calls near (None: NOT_SUPPORTED); see DeviceProfile.cpu_affinity."""
    p = fake.devices[index]
    if p.cpu_affinity is None:
        return None
    if p.cpu_affinity != "socket":
        return parse_cpus(p.cpu_affinity)
    socket, cores = index * p.host_sockets // len(fake.devices), p.host_socket_cores
    first = range(socket * cores, (socket + 1) * cores)
    second = range(p.host_sockets * cores + socket * cores, p.host_sockets * cores + (socket + 1) * cores)
    return frozenset(first) | (frozenset(second) if p.host_smt else frozenset())


@_symbol("nvmlDeviceGetCpuAffinity")
def _cpu_affinity(fake: FakeNvml, dev: _Device, size: Any, cpu_set: Any) -> int:
    cpus = cpu_affinity(fake, dev.index)
    if cpus is None:
        return N.NVML_ERROR_NOT_SUPPORTED
    n = _int(size)
    words = _elements(cpu_set, n, ctypes.c_ulong) if n > 0 else None
    if words is None:
        return N.NVML_ERROR_INVALID_ARGUMENT
    for i, word in enumerate(words):  # 64 CPUs a word; CPUs past the caller's words are left out
        word.value = sum(1 << (c - 64 * i) for c in cpus if 64 * i <= c < 64 * (i + 1))
    return N.NVML_SUCCESS


_symbol("nvmlDeviceGetNumaNodeId")(_scalar(ctypes.c_int, lambda f, d: d.profile.numa_node))
_symbol("nvmlDeviceGetCurrPcieLinkGeneration")(_scalar(ctypes.c_uint, lambda f, d: d.profile.pcie_gen))
_symbol("nvmlDeviceGetMaxPcieLinkGeneration")(_scalar(ctypes.c_uint, lambda f, d: d.profile.pcie_gen_max))
_symbol("nvmlDeviceGetCurrPcieLinkWidth")(_scalar(ctypes.c_uint, lambda f, d: d.profile.pcie_width))
_symbol("nvmlDeviceGetMaxPcieLinkWidth")(_scalar(ctypes.c_uint, lambda f, d: d.profile.pcie_width_max))


# ----------------------------------------------------------------------------- symbols: readings


def _clock(dev: _Device, clock_type: int, maximum: bool) -> int | None:
    p = dev.profile
    sm = p.max_sm_clock_mhz if maximum or p.sm_clock_mhz is None else p.sm_clock_mhz
    mem = p.max_mem_clock_mhz if maximum or p.mem_clock_mhz is None else p.mem_clock_mhz
    return {N.NVML_CLOCK_GRAPHICS: sm, N.NVML_CLOCK_SM: sm, N.NVML_CLOCK_MEM: mem, N.NVML_CLOCK_VIDEO: int(sm * 0.9)}.get(clock_type)


def _clock_symbol(maximum: bool) -> Callable[..., int]:
    def impl(fake: FakeNvml, dev: _Device, clock_type: Any, out: Any) -> int:
        value = _clock(dev, _int(clock_type), maximum)
        target = _out(out, ctypes.c_uint)
        if value is None or target is None:
            return N.NVML_ERROR_INVALID_ARGUMENT
        target.value = value
        return N.NVML_SUCCESS

    return impl


_symbol("nvmlDeviceGetClockInfo")(_clock_symbol(False))
_symbol("nvmlDeviceGetMaxClockInfo")(_clock_symbol(True))


def _memory(fake: FakeNvml, dev: _Device) -> tuple[int, int, int, int]:
    """(total, reserved, used, free) in bytes; used excludes reserved, as in the v2 struct."""
    p = dev.profile
    procs = sum(q.used_mem_bytes or 0 for q in fake.processes(dev.index))
    total, reserved = p.mem_total_mib * MiB, p.mem_reserved_mib * MiB
    used = min(p.mem_overhead_mib * MiB + procs, total - reserved)
    return total, reserved, used, total - reserved - used


@_symbol("nvmlDeviceGetMemoryInfo")
def _memory_v1(fake: FakeNvml, dev: _Device, out: Any) -> int:
    mem = _out(out, N.c_nvmlMemory_t)
    if mem is None:
        return N.NVML_ERROR_INVALID_ARGUMENT
    total, reserved, used, free = _memory(fake, dev)
    mem.total, mem.used, mem.free = total, used + reserved, free
    return N.NVML_SUCCESS


@_symbol("nvmlDeviceGetMemoryInfo_v2")
def _memory_v2(fake: FakeNvml, dev: _Device, out: Any) -> int:
    version = _out(out, ctypes.c_uint)
    if version is None:
        return N.NVML_ERROR_INVALID_ARGUMENT
    if version.value != N.nvmlMemory_v2:
        return N.NVML_ERROR_ARGUMENT_VERSION_MISMATCH
    mem = _out(out, N.c_nvmlMemory_v2_t)
    if mem is None:
        return N.NVML_ERROR_INVALID_ARGUMENT
    mem.total, mem.reserved, mem.used, mem.free = _memory(fake, dev)
    return N.NVML_SUCCESS


@_symbol("nvmlDeviceGetUtilizationRates")
def _utilization(fake: FakeNvml, dev: _Device, out: Any) -> int:
    if dev.profile.mig_enabled:
        return N.NVML_ERROR_NOT_SUPPORTED  # the parent of MIG instances has no utilization
    util = _out(out, N.c_nvmlUtilization_t)
    if util is None:
        return N.NVML_ERROR_INVALID_ARGUMENT
    util.gpu = round(_pct(fake.value(dev.index, "gpu_util")))
    util.memory = round(_pct(fake.value(dev.index, "mem_busy")))
    return N.NVML_SUCCESS


_symbol("nvmlDeviceGetPowerUsage")(_scalar(ctypes.c_uint, lambda f, d: round(f.value(d.index, "power_w") * 1000)))
_symbol("nvmlDeviceGetEnforcedPowerLimit")(_scalar(ctypes.c_uint, lambda f, d: round(d.profile.power_limit_w * 1000)))
_symbol("nvmlDeviceGetTotalEnergyConsumption")(_scalar(ctypes.c_ulonglong, lambda f, d: f.energy_mj(d.index)))
_symbol("nvmlDeviceGetFanSpeed")(_scalar(ctypes.c_uint, lambda f, d: d.profile.fan_pct))
_symbol("nvmlDeviceGetPerformanceState", "nvmlDeviceGetPowerState")(_scalar(ctypes.c_uint, lambda f, d: d.profile.pstate))
_symbol("nvmlDeviceGetCurrentClocksEventReasons", "nvmlDeviceGetCurrentClocksThrottleReasons")(
    _scalar(ctypes.c_ulonglong, lambda f, d: d.profile.clock_event_reasons)
)


@_symbol("nvmlDeviceGetTemperature")
def _temperature(fake: FakeNvml, dev: _Device, sensor: Any, out: Any) -> int:
    target = _out(out, ctypes.c_uint)
    if _int(sensor) != N.NVML_TEMPERATURE_GPU or target is None:
        return N.NVML_ERROR_INVALID_ARGUMENT
    target.value = round(fake.value(dev.index, "temp_c"))
    return N.NVML_SUCCESS


@_symbol("nvmlDeviceGetTemperatureV")
def _temperature_v(fake: FakeNvml, dev: _Device, out: Any) -> int:
    version = _out(out, ctypes.c_uint)
    if version is None:
        return N.NVML_ERROR_INVALID_ARGUMENT
    if version.value != N.nvmlTemperature_v1:
        return N.NVML_ERROR_ARGUMENT_VERSION_MISMATCH
    temp = _out(out, N.c_nvmlTemperature_v1_t)
    if temp is None or temp.sensorType != N.NVML_TEMPERATURE_GPU:
        return N.NVML_ERROR_INVALID_ARGUMENT
    temp.temperature = round(fake.value(dev.index, "temp_c"))
    return N.NVML_SUCCESS


@_symbol("nvmlDeviceGetPcieThroughput")
def _pcie_throughput(fake: FakeNvml, dev: _Device, counter: Any, out: Any) -> int:
    what = {N.NVML_PCIE_UTIL_TX_BYTES: "pcie_tx_kib_s", N.NVML_PCIE_UTIL_RX_BYTES: "pcie_rx_kib_s"}
    target = _out(out, ctypes.c_uint)
    if _int(counter) not in what or target is None:
        return N.NVML_ERROR_INVALID_ARGUMENT
    target.value = round(fake.value(dev.index, what[_int(counter)]))  # KB/s over the last 20 ms
    return N.NVML_SUCCESS


def _field(fake: FakeNvml, dev: _Device, field_id: int, scope: int) -> tuple[int, int, Any]:
    """(nvmlReturn, valueType, value) of one field value."""
    p, ull = dev.profile, N.NVML_VALUE_TYPE_UNSIGNED_LONG_LONG
    if field_id <= 0 or field_id > fake.driver.max_field_id:
        return N.NVML_ERROR_INVALID_ARGUMENT, 0, 0
    nvlink = {N.NVML_FI_DEV_NVLINK_THROUGHPUT_DATA_TX: "nvlink_tx", N.NVML_FI_DEV_NVLINK_THROUGHPUT_DATA_RX: "nvlink_rx"}
    if field_id == N.NVML_FI_DEV_NVLINK_LINK_COUNT:
        if not p.nvlink_links:
            return N.NVML_ERROR_NOT_SUPPORTED, 0, 0
        return N.NVML_SUCCESS, N.NVML_VALUE_TYPE_UNSIGNED_INT, p.nvlink_links
    if field_id in nvlink:
        if not p.nvlink_links:
            return N.NVML_ERROR_NOT_SUPPORTED, 0, 0
        total = fake.counter_kib(dev.index, nvlink[field_id])
        if scope == _UINT_MAX:
            return N.NVML_SUCCESS, ull, total
        if scope < p.nvlink_links:
            return N.NVML_SUCCESS, ull, total // p.nvlink_links
        return N.NVML_ERROR_INVALID_ARGUMENT, 0, 0
    if field_id in (N.NVML_FI_DEV_PCIE_COUNT_TX_BYTES, N.NVML_FI_DEV_PCIE_COUNT_RX_BYTES):
        what = "pcie_tx" if field_id == N.NVML_FI_DEV_PCIE_COUNT_TX_BYTES else "pcie_rx"
        return N.NVML_SUCCESS, ull, fake.counter_kib(dev.index, what) * 1024
    if field_id == N.NVML_FI_DEV_TOTAL_ENERGY_CONSUMPTION:
        return N.NVML_SUCCESS, ull, fake.energy_mj(dev.index)
    return N.NVML_ERROR_NOT_SUPPORTED, 0, 0


@_symbol("nvmlDeviceGetFieldValues")
def _field_values(fake: FakeNvml, dev: _Device, count: Any, values: Any) -> int:
    n = _int(count)
    if n <= 0:
        return N.NVML_ERROR_INVALID_ARGUMENT
    entries = _elements(values, n, N.c_nvmlFieldValue_t)
    if entries is None:
        return N.NVML_ERROR_INVALID_ARGUMENT
    now_us = fake.now_ns // 1000
    for fv in entries:
        ret, value_type, value = _field(fake, dev, fv.fieldId, fv.scopeId)
        fv.nvmlReturn, fv.valueType, fv.timestamp, fv.latencyUsec = ret, value_type, now_us, 0
        if ret == N.NVML_SUCCESS:
            if value_type == N.NVML_VALUE_TYPE_UNSIGNED_INT:
                fv.value.uiVal = value
            else:
                fv.value.ullVal = value
    return N.NVML_SUCCESS


# ---------------------------------------------------------------------------- symbols: processes


def _running_processes(kind: str) -> Callable[..., int]:
    def impl(fake: FakeNvml, dev: _Device, count: Any, infos: Any) -> int:
        if dev.profile.mig_enabled:
            return dev.profile.mig_processes_error  # MIG: the parent's aggregate view is root's only
        n = _out(count, ctypes.c_uint)
        if n is None:
            return N.NVML_ERROR_INVALID_ARGUMENT
        procs = [p for p in fake.processes(dev.index) if p.kind in (kind, "both")]
        room = n.value
        n.value = len(procs)
        if not procs:
            return N.NVML_SUCCESS
        if infos is None or room < len(procs):
            return N.NVML_ERROR_INSUFFICIENT_SIZE
        entries = _elements(infos, len(procs), N.c_nvmlProcessInfo_v2_t)  # v2 and v3: same layout
        if entries is None:
            return N.NVML_ERROR_INVALID_ARGUMENT
        for entry, p in zip(entries, procs):
            entry.pid = p.pid
            entry.usedGpuMemory = _NOT_AVAILABLE_ULL if p.used_mem_bytes is None else p.used_mem_bytes
            entry.gpuInstanceId = entry.computeInstanceId = _UINT_MAX  # not in MIG mode
        return N.NVML_SUCCESS

    return impl


_symbol("nvmlDeviceGetComputeRunningProcesses_v3", "nvmlDeviceGetComputeRunningProcesses_v2")(_running_processes("compute"))
_symbol("nvmlDeviceGetGraphicsRunningProcesses_v3", "nvmlDeviceGetGraphicsRunningProcesses_v2")(_running_processes("graphics"))


def _utilization_samples(fake: FakeNvml, dev: _Device, last_seen_us: int) -> list[tuple[FakeProcess, int]]:
    """(process, sample time in us) of the driver's newest per-process sample, if newer than last seen."""
    stamp_us = (fake.now_ns // PROC_SAMPLE_PERIOD_NS) * PROC_SAMPLE_PERIOD_NS // 1000
    if stamp_us <= last_seen_us:
        return []
    return [(p, stamp_us) for p in fake.processes(dev.index)]


def _process_util(fake: FakeNvml, p: FakeProcess, index: int, position: int) -> tuple[int, int]:
    """(sm %, memory %) of the ``position``-th process of device ``index``, now."""
    wobble = _wave(fake.t(index) + position)
    return round(_pct(p.sm_util_pct + 5 * wobble)), round(_pct(p.mem_util_pct + 2 * wobble))


@_symbol("nvmlDeviceGetProcessUtilization")
def _process_utilization(fake: FakeNvml, dev: _Device, samples: Any, count: Any, last_seen: Any) -> int:
    if dev.profile.mig_enabled:
        return N.NVML_ERROR_NOT_SUPPORTED
    n = _out(count, ctypes.c_uint)
    if n is None:
        return N.NVML_ERROR_INVALID_ARGUMENT
    found = _utilization_samples(fake, dev, _int(last_seen))
    if not found:
        return N.NVML_ERROR_NOT_FOUND
    room = n.value
    n.value = len(found)
    if samples is None or room < len(found):
        return N.NVML_ERROR_INSUFFICIENT_SIZE
    entries = _elements(samples, len(found), N.c_nvmlProcessUtilizationSample_t)
    if entries is None:
        return N.NVML_ERROR_INVALID_ARGUMENT
    for position, (entry, (p, stamp)) in enumerate(zip(entries, found)):
        entry.pid, entry.timeStamp = p.pid, stamp
        entry.smUtil, entry.memUtil = _process_util(fake, p, dev.index, position)
        entry.encUtil = entry.decUtil = 0
    return N.NVML_SUCCESS


@_symbol("nvmlDeviceGetProcessesUtilizationInfo")
def _processes_utilization_info(fake: FakeNvml, dev: _Device, out: Any) -> int:
    version = _out(out, ctypes.c_uint)
    if version is None:
        return N.NVML_ERROR_INVALID_ARGUMENT
    if version.value != N.ProcessesUtilizationInfo_v1:
        return N.NVML_ERROR_ARGUMENT_VERSION_MISMATCH
    if dev.profile.mig_enabled:
        return N.NVML_ERROR_NOT_SUPPORTED
    info = _out(out, N.c_nvmlProcessesUtilizationInfo_v1_t)
    found = _utilization_samples(fake, dev, info.lastSeenTimeStamp)
    if not found:
        return N.NVML_ERROR_NOT_FOUND
    room = info.processSamplesCount
    info.processSamplesCount = len(found)
    array = ctypes.cast(info.procUtilArray, ctypes.c_void_p).value
    if not array or room < len(found):
        return N.NVML_ERROR_INSUFFICIENT_SIZE
    size = ctypes.sizeof(N.c_nvmlProcessUtilizationInfo_v1_t)
    for i, (p, stamp) in enumerate(found):
        entry = N.c_nvmlProcessUtilizationInfo_v1_t.from_address(array + i * size)
        entry.pid, entry.timeStamp = p.pid, stamp
        entry.smUtil, entry.memUtil = _process_util(fake, p, dev.index, i)
        entry.encUtil = entry.decUtil = entry.jpgUtil = entry.ofaUtil = 0
    return N.NVML_SUCCESS


# ---------------------------------------------------------------------------------- symbols: GPM


@_symbol("nvmlGpmQueryDeviceSupport")
def _gpm_support(fake: FakeNvml, dev: _Device, out: Any) -> int:
    version = _out(out, ctypes.c_uint)
    if version is None:
        return N.NVML_ERROR_INVALID_ARGUMENT
    if version.value != N.NVML_GPM_SUPPORT_VERSION:
        return N.NVML_ERROR_ARGUMENT_VERSION_MISMATCH
    support = _out(out, N.c_nvmlGpmSupport_t)
    support.isSupportedDevice = int(dev.profile.gpm_supported)
    return N.NVML_SUCCESS


@_symbol("nvmlGpmSampleAlloc", device=False)
def _gpm_alloc(fake: FakeNvml, out: Any) -> int:
    memory = ctypes.c_uint64(0x6B)  # real memory, so the address is unique while allocated
    if not _write_pointer(out, ctypes.addressof(memory)):
        return N.NVML_ERROR_INVALID_ARGUMENT
    fake._gpm_memory[ctypes.addressof(memory)] = memory
    fake._gpm_samples[ctypes.addressof(memory)] = _GpmSample()
    return N.NVML_SUCCESS


@_symbol("nvmlGpmSampleFree", device=False)
def _gpm_free(fake: FakeNvml, sample: Any) -> int:
    address = _addr(sample)
    if address not in fake._gpm_samples:
        return N.NVML_ERROR_INVALID_ARGUMENT
    del fake._gpm_samples[address], fake._gpm_memory[address]
    return N.NVML_SUCCESS


@_symbol("nvmlGpmSampleGet")
def _gpm_sample_get(fake: FakeNvml, dev: _Device, sample: Any) -> int:
    if not dev.profile.gpm_supported:
        return N.NVML_ERROR_NOT_SUPPORTED
    record = fake._gpm_samples.get(_addr(sample))
    if record is None:
        return N.NVML_ERROR_INVALID_ARGUMENT
    record.device, record.t_ns = dev.index, fake.now_ns
    return N.NVML_SUCCESS


_METRIC_NAMES: dict[int, tuple[bytes, bytes, bytes]] = {}


def _metric_info(metric_id: int) -> tuple[bytes, bytes, bytes]:
    if metric_id not in _METRIC_NAMES:
        names = [k for k, v in vars(N).items() if k.startswith("NVML_GPM_METRIC_") and v == metric_id]
        short = names[0].removeprefix("NVML_GPM_METRIC_").lower().encode() if names else b"unknown"
        _METRIC_NAMES[metric_id] = (short, short.replace(b"_", b" "), b"%")
    return _METRIC_NAMES[metric_id]


@_symbol("nvmlGpmMetricsGet", device=False)
def _gpm_metrics_get(fake: FakeNvml, out: Any) -> int:
    version = _out(out, ctypes.c_uint)
    if version is None:
        return N.NVML_ERROR_INVALID_ARGUMENT
    if version.value != N.NVML_GPM_METRICS_GET_VERSION:
        return N.NVML_ERROR_ARGUMENT_VERSION_MISMATCH
    request = _out(out, N.c_nvmlGpmMetricsGet_t)
    if request is None or request.numMetrics > N.NVML_GPM_METRIC_MAX:
        return N.NVML_ERROR_INVALID_ARGUMENT
    s1 = fake._gpm_samples.get(_addr(request.sample1))
    s2 = fake._gpm_samples.get(_addr(request.sample2))
    if s1 is None or s2 is None or s1.t_ns is None or s2.t_ns is None or s1.device != s2.device:
        return N.NVML_ERROR_INVALID_ARGUMENT
    if s2.t_ns < s1.t_ns:
        return N.NVML_ERROR_INVALID_ARGUMENT
    dev = fake._dev[s1.device]
    if dev.lost:
        return N.NVML_ERROR_GPU_IS_LOST
    for i in range(request.numMetrics):
        metric = request.metrics[i]
        metric_id = metric.metricId
        if not 0 < metric_id < N.NVML_GPM_METRIC_MAX:
            metric.nvmlReturn, metric.value = N.NVML_ERROR_INVALID_ARGUMENT, 0.0
            continue
        value = fake.gpm_value(dev.index, metric_id, s1.t_ns, s2.t_ns)
        if value is None:
            metric.nvmlReturn, metric.value = N.NVML_ERROR_NOT_SUPPORTED, 0.0
            continue
        metric.nvmlReturn, metric.value = N.NVML_SUCCESS, value
        info = metric.metricInfo
        info.shortName, info.longName, info.unit = _metric_info(metric_id)
    return N.NVML_SUCCESS


IMPLEMENTED: frozenset[str] = frozenset(_REGISTRY)

# Drivers. OLD_DRIVER is an r470-era library: no _v3 process queries, no memory info v2, only the
# throttle-reasons name, no GPM, no TemperatureV, no per-process utilization info struct, no core
# count, bus width or NUMA node queries, and no field ids past the NVLink ones.
R550 = DriverProfile()
OLD_DRIVER = DriverProfile(
    name="r470",
    driver_version="470.223.02",
    cuda_version=11040,
    max_field_id=170,
    symbols=IMPLEMENTED
    - {
        "nvmlDeviceGetComputeRunningProcesses_v3",
        "nvmlDeviceGetGraphicsRunningProcesses_v3",
        "nvmlDeviceGetMemoryInfo_v2",
        "nvmlDeviceGetCurrentClocksEventReasons",
        "nvmlGpmQueryDeviceSupport",
        "nvmlGpmSampleAlloc",
        "nvmlGpmSampleFree",
        "nvmlGpmSampleGet",
        "nvmlGpmMetricsGet",
        "nvmlDeviceGetTemperatureV",
        "nvmlDeviceGetProcessesUtilizationInfo",
        "nvmlDeviceGetNumGpuCores",
        "nvmlDeviceGetMemoryBusWidth",
        "nvmlDeviceGetNumaNodeId",
    },
)
DRIVER_NOT_LOADED = DriverProfile(name="driver_not_loaded", init_error=N.NVML_ERROR_DRIVER_NOT_LOADED)
NO_PERMISSION = DriverProfile(name="no_permission", init_error=N.NVML_ERROR_NO_PERMISSION)
RM_VERSION_MISMATCH = DriverProfile(name="rm_version_mismatch", init_error=N.NVML_ERROR_LIB_RM_VERSION_MISMATCH)

DRIVERS: dict[str, DriverProfile] = {
    "R550": R550,
    "OLD_DRIVER": OLD_DRIVER,
    "DRIVER_NOT_LOADED": DRIVER_NOT_LOADED,
    "NO_PERMISSION": NO_PERMISSION,
    "RM_VERSION_MISMATCH": RM_VERSION_MISMATCH,
}
LIBRARY_NOT_FOUND = "LIBRARY_NOT_FOUND"
COST = "COST"  # the spec option: the driver cost model on
NO_PCIE_COUNTERS = "NO_PCIE_COUNTERS"  # the spec option: field ids from the PCIe byte counters on answer INVALID_ARGUMENT
_BEFORE_PCIE_COUNTERS = min(N.NVML_FI_DEV_PCIE_COUNT_TX_BYTES, N.NVML_FI_DEV_PCIE_COUNT_RX_BYTES) - 1


# -------------------------------------------------------------------------------------- install


def _set(monkeypatch: Any, name: str, value: Any) -> None:
    if monkeypatch is None:
        setattr(N, name, value)
    else:
        monkeypatch.setattr(N, name, value)


def install(fake: FakeNvml, monkeypatch: Any = None) -> FakeNvml:
    """Make pynvml load ``fake``: ``nvmlLib``, a fresh function-pointer cache, refcount 0.
    With a pytest ``monkeypatch`` all of it is undone after the test."""
    _set(monkeypatch, "nvmlLib", fake)
    _set(monkeypatch, "_nvmlGetFunctionPointer_cache", {})
    _set(monkeypatch, "_nvmlLib_refcount", 0)
    return fake


def install_library_missing(monkeypatch: Any = None) -> None:
    """No libnvidia-ml.so.1: pynvml's loader fails and nvmlInit raises NVMLError_LibraryNotFound."""

    def no_library(name: str, *args: Any, **kwargs: Any) -> Any:
        raise OSError(f"{name}: cannot open shared object file: No such file or directory")

    _set(monkeypatch, "nvmlLib", None)
    _set(monkeypatch, "_nvmlGetFunctionPointer_cache", {})
    _set(monkeypatch, "_nvmlLib_refcount", 0)
    _set(monkeypatch, "CDLL", no_library)


def parse_spec(spec: str) -> tuple[list[DeviceProfile], DriverProfile | str]:
    """``"H100_SXM*2,A100_SXM+lost_after=3:old_driver"`` -> (device profiles, driver profile), or
    LIBRARY_NOT_FOUND in place of the driver. See the module doc for the grammar."""
    devices_part, *options = [part.strip() for part in spec.strip().split(":")]
    devices: list[DeviceProfile] = []
    if devices_part.lower() not in ("", "none"):
        for item in devices_part.split(","):
            name, *changes = [s.strip() for s in item.split("+")]
            count = 1
            if "*" in name:
                name, times = name.split("*", 1)
                count = int(times)
            profile = PROFILES.get(name.strip().upper())
            if profile is None:
                raise ValueError(f"unknown fake GPU profile {name!r} (known: {', '.join(PROFILES)})")
            for change in changes:
                key, _, raw = change.partition("=")
                profile = dataclasses.replace(profile, **{key: _parse_value(profile, key, raw)})
            devices.extend([profile] * count)
    driver: DriverProfile | str = R550
    for option in options:
        key = option.upper()
        if key == SIMULATED:
            devices = [simulated(d) for d in devices]
        elif key in (COST, NO_PCIE_COUNTERS) and isinstance(driver, DriverProfile):
            change = {"cost_model": True} if key == COST else {"max_field_id": _BEFORE_PCIE_COUNTERS}
            driver = dataclasses.replace(driver, **change)
        elif key == LIBRARY_NOT_FOUND:
            driver = LIBRARY_NOT_FOUND
        elif key in DRIVERS:
            base = driver if isinstance(driver, DriverProfile) else R550
            chosen = DRIVERS[key]
            if chosen.init_error != N.NVML_SUCCESS:
                driver = dataclasses.replace(base, init_error=chosen.init_error)
            elif base.cost_model or base.max_field_id < chosen.max_field_id:  # (the options given before it kept)
                driver = dataclasses.replace(chosen, cost_model=base.cost_model, max_field_id=min(chosen.max_field_id, base.max_field_id))
            else:
                driver = chosen
        else:
            raise ValueError(
                f"unknown fake NVML option {option!r} (known: {', '.join(k.lower() for k in DRIVERS)}, "
                "library_not_found, simulated, cost, no_pcie_counters)"
            )
    return devices, driver


def _parse_value(profile: DeviceProfile, key: str, raw: str) -> Any:
    if key not in {f.name for f in dataclasses.fields(DeviceProfile)}:
        raise ValueError(f"DeviceProfile has no field {key!r}")
    current = getattr(profile, key)
    if isinstance(current, bool):
        return raw.lower() in ("1", "true", "yes", "on")
    if raw.lower() == "none":
        return None
    if isinstance(current, float):
        return float(raw)
    if isinstance(current, str):
        return raw
    return int(raw, 0)


def install_from_spec(spec: str, *, monkeypatch: Any = None, real_time: bool = True) -> FakeNvml | None:
    """Parse ``spec`` and install the fake it names (None where the library is to be missing)."""
    devices, driver = parse_spec(spec)
    if driver == LIBRARY_NOT_FOUND:
        install_library_missing(monkeypatch)
        return None
    fake = install(FakeNvml(devices, driver, real_time=real_time), monkeypatch)
    if isinstance(driver, DriverProfile) and driver.cost_model and os.environ.get(STATS_VARIABLE):
        write_stats(fake, os.environ[STATS_VARIABLE])
    return fake


def write_stats(fake: FakeNvml, directory: str) -> None:
    """``fake.stats()`` to ``directory/<pid>.json`` every STATS_EVERY_S (a daemon thread) and at exit."""
    import atexit
    import json

    path = os.path.join(directory, f"{os.getpid()}.json")

    def write() -> None:
        tmp = f"{path}.tmp"
        with open(tmp, "w") as out:
            json.dump(fake.stats(), out)
        os.replace(tmp, path)

    def loop() -> None:
        while True:
            write()
            time.sleep(STATS_EVERY_S)

    atexit.register(write)
    threading.Thread(target=loop, name="fakenvml-stats", daemon=True).start()


def install_from_env(variable: str = "GPUTOP_FAKE_NVML") -> FakeNvml | None:
    """Install the fake the environment names, if it names one."""
    spec = os.environ.get(variable)
    return install_from_spec(spec) if spec else None
