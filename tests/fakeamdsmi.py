"""A symbol-level fake of libamd_smi, for the real amdsmi package (PyPI, 7.0.2) to load in place of
ROCm's library.

amdsmi's ``amdsmi_wrapper`` binds every C symbol at import time: it calls ``ctypes.CDLL`` on
``libamd_smi.so`` and then, for each symbol, ``fn = lib.amdsmi_xxx; fn.argtypes = [...];
fn.restype = ...``. ``install(fake)`` imports amdsmi with ``ctypes.CDLL`` answering that one
library with ``LIBRARY`` (every other name loads as usual), an object whose attributes are plain
functions named after those symbols. So every real amdsmi wrapper runs unchanged over it:
``amdsmi_interface``'s struct handling, its "N/A" rules, its status checks and exceptions.

The symbols behave like C: arguments arrive as the wrapper passes them (``byref(struct)``,
arrays, ``c_void_p`` handles, enum ints), results are written into the caller's memory, the
return value is an ``amdsmi_status_t``. Each call is checked against the argtypes the wrapper
declared for it: the count, and that a ``byref`` argument points at the struct type the
declaration names (a struct layout the wrapper and the fake disagree on fails loudly). A symbol
the device profile does not answer returns AMDSMI_STATUS_NOT_SUPPORTED, as the real library
does for a feature a card lacks.

Written from the wheel's public struct layouts (amdsmi_wrapper.py) and the interface's
signatures; none of AMD's own code or tests is copied.

Environment spec (``install_from_spec``; variable ``GPUTOP_FAKE_AMDSMI``, installed in child
processes by tests/sitecustom/sitecustomize.py)::

    SPEC := DEVICES [":" OPTION]...      DEVICES := "none" | PROFILE ["*" COUNT] ("," ...)
    OPTION := "driver_not_loaded" | "simulated"

    "MI300X", "MI300X*8" (two NUMA nodes, four GPUs each), "MI250X" (one package: two dies),
    "RADEON", "none:driver_not_loaded", "MI300X:simulated"

Time: every varying value is base + swing x sin(2 pi (t + phase) / PERIOD_S) of the fake's clock
(``real_time``: time.time(); else a manual clock moved by ``advance``). Energy is the exact
integral of power, so a test can check one against the other.
"""

from __future__ import annotations

import contextlib
import ctypes
import dataclasses
import math
import os
import sys
import time
from dataclasses import dataclass, field
from typing import Any, Callable

SUCCESS = 0
NOT_SUPPORTED = 2
INVAL = 1
DRIVER_NOT_LOADED = 34
NOT_INIT = 32
OUT_OF_RESOURCES = 15

PERIOD_S = 10.0
PHASE_PER_DEVICE_S = 1.25
START_S = 1_700_000_000.0
SELF_PID = -1  # in a profile's process list: the pid of the process asking
ENERGY_RESOLUTION_UJ = 15.259  # the counter's unit, as the MI-series report it
HANDLE_BASE = 0x5A000
SOCKET_BASE = 0x50000
SIMULATED_SUFFIX = " (simulated)"
GiB = 1 << 30
ALL_ONES_16 = 0xFFFF
ALL_ONES_32 = 0xFFFFFFFF
ALL_ONES_64 = 0xFFFFFFFFFFFFFFFF


@dataclass(frozen=True)
class FakeProcess:
    pid: int
    vram_bytes: int
    gfx_busy: float = 0.5  # share of wall time the process keeps the GFX engine busy


@dataclass(frozen=True)
class AmdProfile:
    market_name: str
    gfx: int  # target_graphics_version as the struct holds it: 0x942 for gfx942
    compute_units: int
    vram_bytes: int
    power_w: float  # base; it swings by power_swing_w
    power_swing_w: float
    power_limit_w: int
    power_key: str  # which power_info field carries it: "socket" (MI300X) or "average"
    reports_power: bool = True  # False: a die that reads 0 W (MI250X's odd die)
    edge_temp_c: int | None = 45  # None: no edge sensor (MI300X)
    hotspot_c: int = 60
    mem_temp_c: int | None = 55
    fan: tuple[int, int] | None = None  # (speed, max: both on the 0..255 scale) where the card has a fan
    violation_status: bool = True
    throttled_power: bool = False
    xgmi_links: int = 0
    numa_node: int = 0
    pcie_mts: int = 32000  # current speed, MT/s (Gen 5)
    pcie_width: int = 16
    hip_id: int = 0
    gfx_util: tuple[float, float] = (60.0, 30.0)  # base, swing (%)
    umc_util: tuple[float, float] = (35.0, 20.0)
    gfx_clk_mhz: int = 2100
    mem_clk_mhz: int = 1300
    processes: tuple[FakeProcess, ...] = ()
    uuid: str = ""


MI300X = AmdProfile(
    market_name="AMD Instinct MI300X",
    gfx=0x942,
    compute_units=304,
    vram_bytes=192 * GiB,
    power_w=520.0,
    power_swing_w=160.0,
    power_limit_w=750,
    power_key="socket",
    edge_temp_c=None,
    hotspot_c=68,
    mem_temp_c=58,
    xgmi_links=7,
    processes=(FakeProcess(SELF_PID, 40 * GiB, 0.6),),
)
MI250X = AmdProfile(
    market_name="AMD Instinct MI250X",
    gfx=0x90A,
    compute_units=110,
    vram_bytes=64 * GiB,
    power_w=380.0,
    power_swing_w=120.0,
    power_limit_w=560,
    power_key="average",
    edge_temp_c=42,
    hotspot_c=55,
    mem_temp_c=50,
    xgmi_links=8,
    pcie_mts=16000,
)
RADEON = AmdProfile(
    market_name="AMD Radeon RX 7900 XTX",
    gfx=0x1100,
    compute_units=96,
    vram_bytes=24 * GiB,
    power_w=250.0,
    power_swing_w=80.0,
    power_limit_w=327,
    power_key="average",
    fan=(92, 255),  # speed on the 0..255 scale the library uses, and that scale's maximum
    violation_status=False,
    pcie_mts=16000,
    gfx_clk_mhz=2500,
    mem_clk_mhz=1250,
)
PROFILES = {"MI300X": MI300X, "MI250X": MI250X, "RADEON": RADEON}


def _expand(name: str, count: int) -> list[AmdProfile]:
    base = PROFILES[name.upper()]
    if base is MI250X:  # one package, two dies: the even die reports the package's power
        return [dataclasses.replace(base, reports_power=(i % 2 == 0)) for i in range(2 * count)]
    if count == 8:  # eight on two NUMA nodes, four each
        return [dataclasses.replace(base, numa_node=i // 4) for i in range(count)]
    return [base] * count


class FakeAmdSmi:
    """Devices as data; the symbols libamd_smi exports that amdsmi asks for, as methods."""

    def __init__(
        self, devices: list[AmdProfile], *, driver_not_loaded: bool = False, real_time: bool = False, simulated: bool = False
    ) -> None:
        self.devices = [
            dataclasses.replace(
                d,
                hip_id=i,
                uuid=d.uuid or f"{i:02x}ff74a1-0000-1000-80{i:02x}-a1b2c3d4e5f6",
                market_name=d.market_name + (SIMULATED_SUFFIX if simulated else ""),
            )
            for i, d in enumerate(devices)
        ]
        self.driver_not_loaded = driver_not_loaded
        self.real_time = real_time
        self.epoch = time.time() if real_time else START_S
        self._now = START_S
        self.initialized = False
        self.calls: list[str] = []

    # -- time
    def now(self) -> float:
        return time.time() if self.real_time else self._now

    def advance(self, seconds: float) -> None:
        self._now += seconds

    def _t(self, i: int) -> float:
        return self.now() - self.epoch + i * PHASE_PER_DEVICE_S

    def _wave(self, i: int, base: float, swing: float) -> float:
        return base + swing * math.sin(2 * math.pi * self._t(i) / PERIOD_S)

    def power_w(self, i: int) -> float:
        d = self.devices[i]
        return self._wave(i, d.power_w, d.power_swing_w)

    def energy_j(self, i: int) -> float:
        """The exact integral of power_w from the fake's epoch."""
        d, t = self.devices[i], self._t(i)
        w = 2 * math.pi / PERIOD_S
        t0 = i * PHASE_PER_DEVICE_S
        return d.power_w * (t - t0) - d.power_swing_w / w * (math.cos(w * t) - math.cos(w * t0))

    # -- helpers
    def _device(self, handle: Any) -> tuple[int, AmdProfile] | None:
        value = handle.value if hasattr(handle, "value") else handle
        if not self.initialized or not isinstance(value, int):
            return None
        i = value - HANDLE_BASE
        return (i, self.devices[i]) if 0 <= i < len(self.devices) else None

    # -- symbols: library
    def amdsmi_init(self, flags: int) -> int:
        if self.driver_not_loaded:
            return DRIVER_NOT_LOADED
        self.initialized = True
        return SUCCESS

    def amdsmi_shut_down(self) -> int:
        self.initialized = False
        return SUCCESS

    def amdsmi_get_lib_version(self, version: Any) -> int:
        v = _obj(version)
        v.major, v.minor, v.release = 25, 5, 1
        self._build = ctypes.create_string_buffer(b"25.5.1.0")
        v.build = ctypes.cast(self._build, ctypes.POINTER(ctypes.c_char))
        return SUCCESS

    def amdsmi_get_socket_handles(self, count: Any, handles: Any) -> int:
        if not self.initialized:
            return NOT_INIT
        n = _obj(count)
        if handles:  # the second call fills the buffer
            for i in range(min(n.value, len(self.devices))):
                handles[i] = SOCKET_BASE + i
        n.value = len(self.devices)
        return SUCCESS

    def amdsmi_get_processor_handles(self, socket: Any, count: Any, handles: Any) -> int:
        i = (socket.value or 0) - SOCKET_BASE
        if not self.initialized or not 0 <= i < len(self.devices):
            return INVAL
        n = _obj(count)
        if handles and n.value >= 1:
            handles[0] = HANDLE_BASE + i
        n.value = 1
        return SUCCESS

    # -- symbols: static
    def amdsmi_get_gpu_asic_info(self, handle: Any, out: Any) -> int:
        found = self._device(handle)
        if found is None:
            return INVAL
        i, d = found
        info = _obj(out)
        info.market_name = d.market_name.encode()
        info.vendor_id, info.vendor_name = 0x1002, b"Advanced Micro Devices Inc. [AMD/ATI]"
        info.device_id, info.rev_id = 0x74A1, 0
        info.subvendor_id, info.subsystem_id = 0x1002, 0x74A1
        info.asic_serial = f"{0xA1B2C3D4E5F60000 + i:016X}".encode()
        info.oam_id = i if d.market_name.startswith("AMD Instinct") else ALL_ONES_32
        info.num_of_compute_units = d.compute_units
        info.target_graphics_version = d.gfx
        return SUCCESS

    def amdsmi_get_gpu_device_uuid(self, handle: Any, length: Any, out: Any) -> int:
        found = self._device(handle)
        if found is None:
            return INVAL
        text = found[1].uuid.encode()
        if _obj(length).value <= len(text):
            return OUT_OF_RESOURCES
        ctypes.memmove(out, text + b"\0", len(text) + 1)
        return SUCCESS

    def amdsmi_get_gpu_device_bdf(self, handle: Any, out: Any) -> int:
        found = self._device(handle)
        if found is None:
            return INVAL
        bdf = _obj(out).struct_amdsmi_bdf_t
        bdf.domain_number, bdf.bus_number, bdf.device_number, bdf.function_number = 0, 0x0C + 0x10 * found[0], 0, 0
        return SUCCESS

    def amdsmi_get_gpu_enumeration_info(self, handle: Any, out: Any) -> int:
        found = self._device(handle)
        if found is None:
            return INVAL
        i, d = found
        info = _obj(out)
        info.drm_card, info.drm_render, info.hsa_id, info.hip_id = i + 1, 128 + i, 2 + i, d.hip_id
        info.hip_uuid = ("GPU-" + d.uuid.replace("-", "")[:16]).encode()
        return SUCCESS

    def amdsmi_get_gpu_driver_info(self, handle: Any, out: Any) -> int:
        if self._device(handle) is None:
            return INVAL
        info = _obj(out)
        info.driver_name, info.driver_version, info.driver_date = b"amdgpu", b"6.12.12", b"2025/06/01 00:00"
        return SUCCESS

    def amdsmi_get_pcie_info(self, handle: Any, out: Any) -> int:
        found = self._device(handle)
        if found is None:
            return INVAL
        d, info = found[1], _obj(out)
        info.pcie_static.max_pcie_width, info.pcie_static.max_pcie_speed = 16, 32000
        info.pcie_static.pcie_interface_version, info.pcie_static.slot_type = 5, 0
        info.pcie_metric.pcie_width, info.pcie_metric.pcie_speed = d.pcie_width, d.pcie_mts
        info.pcie_metric.pcie_bandwidth = ALL_ONES_32
        return SUCCESS

    def amdsmi_topo_get_numa_node_number(self, handle: Any, out: Any) -> int:
        found = self._device(handle)
        if found is None:
            return INVAL
        _obj(out).value = found[1].numa_node
        return SUCCESS

    def amdsmi_get_gpu_memory_total(self, handle: Any, kind: int, out: Any) -> int:
        found = self._device(handle)
        if found is None or int(kind) != 0:  # VRAM only
            return NOT_SUPPORTED if found else INVAL
        _obj(out).value = found[1].vram_bytes
        return SUCCESS

    def amdsmi_get_power_cap_info(self, handle: Any, sensor: Any, out: Any) -> int:
        found = self._device(handle)
        if found is None:
            return INVAL
        info = _obj(out)  # microwatts
        info.power_cap = info.default_power_cap = found[1].power_limit_w * 1_000_000
        info.min_power_cap, info.max_power_cap = 0, found[1].power_limit_w * 1_000_000
        return SUCCESS

    # -- symbols: per tick
    def amdsmi_get_gpu_activity(self, handle: Any, out: Any) -> int:
        found = self._device(handle)
        if found is None:
            return INVAL
        i, d = found
        usage = _obj(out)
        usage.gfx_activity = round(self._wave(i, *d.gfx_util))
        usage.umc_activity = round(self._wave(i, *d.umc_util))
        usage.mm_activity = ALL_ONES_32  # all ones of the field's width: not available
        return SUCCESS

    def amdsmi_get_gpu_memory_usage(self, handle: Any, kind: int, out: Any) -> int:
        found = self._device(handle)
        if found is None or int(kind) != 0:
            return NOT_SUPPORTED if found else INVAL
        i, d = found
        _obj(out).value = int(d.vram_bytes * self._wave(i, 0.4, 0.1))
        return SUCCESS

    def amdsmi_get_power_info(self, handle: Any, out: Any) -> int:
        found = self._device(handle)
        if found is None:
            return INVAL
        i, d = found
        info = _obj(out)
        watts = round(self.power_w(i)) if d.reports_power else 0
        info.socket_power = watts if d.power_key == "socket" else ALL_ONES_64
        info.average_socket_power = watts if d.power_key == "average" else ALL_ONES_32
        info.current_socket_power = ALL_ONES_32
        info.gfx_voltage, info.soc_voltage, info.mem_voltage = 800, 750, ALL_ONES_64
        info.power_limit = d.power_limit_w  # watts here (power_cap_info: microwatts)
        return SUCCESS

    def amdsmi_get_energy_count(self, handle: Any, energy: Any, resolution: Any, stamp: Any) -> int:
        found = self._device(handle)
        if found is None:
            return INVAL
        i = found[0]
        _obj(energy).value = int(self.energy_j(i) * 1e6 / ENERGY_RESOLUTION_UJ)
        _obj(resolution).value = ENERGY_RESOLUTION_UJ
        _obj(stamp).value = int(self.now() * 1e9)
        return SUCCESS

    def amdsmi_get_clock_info(self, handle: Any, kind: int, out: Any) -> int:
        found = self._device(handle)
        if found is None:
            return INVAL
        d, info = found[1], _obj(out)
        mhz = {0: d.gfx_clk_mhz, 4: d.mem_clk_mhz}.get(int(kind))
        if mhz is None:
            return NOT_SUPPORTED
        info.clk, info.min_clk, info.max_clk = mhz, 500, mhz
        info.clk_locked, info.clk_deep_sleep = 0, 0
        return SUCCESS

    def amdsmi_get_temp_metric(self, handle: Any, sensor: int, metric: int, out: Any) -> int:
        found = self._device(handle)
        if found is None:
            return INVAL
        d = found[1]
        value = {0: d.edge_temp_c, 1: d.hotspot_c, 2: d.mem_temp_c}.get(int(sensor)) if int(metric) == 0 else None
        if value is None:
            return NOT_SUPPORTED
        _obj(out).value = value  # degrees C
        return SUCCESS

    def amdsmi_get_gpu_fan_speed(self, handle: Any, sensor: int, out: Any) -> int:
        found = self._device(handle)
        if found is None or found[1].fan is None:
            return NOT_SUPPORTED if found else INVAL
        _obj(out).value = found[1].fan[0]
        return SUCCESS

    def amdsmi_get_gpu_fan_speed_max(self, handle: Any, sensor: int, out: Any) -> int:
        found = self._device(handle)
        if found is None or found[1].fan is None:
            return NOT_SUPPORTED if found else INVAL
        _obj(out).value = found[1].fan[1]
        return SUCCESS

    def amdsmi_get_violation_status(self, handle: Any, out: Any) -> int:
        found = self._device(handle)
        if found is None or not found[1].violation_status:
            return NOT_SUPPORTED if found else INVAL
        s = _obj(out)
        s.active_ppt_pwr = 1 if found[1].throttled_power else 0
        s.active_socket_thrm = s.active_prochot_thrm = s.active_vr_thrm = 0
        s.active_hbm_thrm = 0
        s.active_gfx_clk_below_host_limit = 0xFF  # all ones: not available
        return SUCCESS

    def amdsmi_get_gpu_metrics_info(self, handle: Any, out: Any) -> int:
        found = self._device(handle)
        if found is None:
            return INVAL
        i, d = found
        m = _obj(out)
        ctypes.memset(ctypes.byref(m), 0xFF, ctypes.sizeof(m))  # every field not filled: N/A
        m.common_header.format_revision, m.common_header.content_revision = 1, 5
        # XGMI: KB moved per link, accumulated; each link at 2 GB/s x the GFX activity share
        kb = int(self._t(i) * 2e6 * d.gfx_util[0] / 100.0)
        for link in range(d.xgmi_links):
            m.xgmi_read_data_acc[link] = kb
            m.xgmi_write_data_acc[link] = kb // 2
        return SUCCESS

    def amdsmi_get_gpu_process_list(self, handle: Any, count: Any, out: Any) -> int:
        found = self._device(handle)
        if found is None:
            return INVAL
        procs = found[1].processes
        room = _obj(count)
        if len(procs) > room.value:
            return OUT_OF_RESOURCES
        t = self.now() - self.epoch
        for k, p in enumerate(procs):
            entry = out[k]
            entry.pid = os.getpid() if p.pid == SELF_PID else p.pid
            entry.name = b"python3"
            entry.mem = entry.memory_usage.vram_mem = p.vram_bytes
            entry.engine_usage.gfx = int(t * 1e9 * p.gfx_busy)
            entry.engine_usage.enc = 0
            entry.cu_occupancy = ALL_ONES_32
        room.value = len(procs)
        return SUCCESS


def _obj(arg: Any) -> Any:
    """The object a ``byref(x)`` points at (or the object itself)."""
    return getattr(arg, "_obj", arg)


# ---------------------------------------------------------------------------- the library


class _Library:
    """What amdsmi_wrapper holds as ``_libraries['libamd_smi.so']``: one plain function per symbol
    (the wrapper sets argtypes and restype on each), calling the installed fake."""

    def __init__(self) -> None:
        self.fake: FakeAmdSmi | None = None
        self._symbols: dict[str, Callable[..., int]] = {}

    def __getattr__(self, name: str) -> Callable[..., int]:
        if name.startswith("_"):
            raise AttributeError(name)
        symbols = self.__dict__["_symbols"]
        if name not in symbols:
            symbols[name] = self._symbol(name)
        return symbols[name]

    def _symbol(self, name: str) -> Callable[..., int]:
        library = self

        def symbol(*args: Any) -> int:
            _check_arguments(name, getattr(symbol, "argtypes", None), args)
            fake = library.fake
            if fake is None:
                return NOT_INIT
            fake.calls.append(name)
            method = getattr(fake, name, None)
            return NOT_SUPPORTED if method is None else int(method(*args))

        symbol.__name__ = name
        return symbol


def _check_arguments(name: str, argtypes: Any, args: tuple[Any, ...]) -> None:
    """As ctypes would: the count the wrapper declared, and a byref'd struct of the declared type."""
    if argtypes is None:
        return
    if len(args) != len(argtypes):
        raise TypeError(f"{name}: {len(argtypes)} arguments declared, {len(args)} given")
    for declared, arg in zip(argtypes, args):
        target = getattr(declared, "_type_", None)
        obj = getattr(arg, "_obj", None)
        if obj is not None and isinstance(target, type) and issubclass(target, ctypes.Structure):
            if not isinstance(obj, target):
                raise TypeError(f"{name}: expects a pointer to {target.__name__}, got {type(obj).__name__}")


LIBRARY = _Library()


def _drop_amdsmi() -> None:
    for module in [m for m in sys.modules if m == "amdsmi" or m.startswith("amdsmi.")]:
        del sys.modules[module]


def install(fake: FakeAmdSmi) -> None:
    """Make ``import amdsmi`` load over ``fake`` (amdsmi imported afresh over LIBRARY)."""
    LIBRARY.fake = fake
    if getattr(sys.modules.get("amdsmi.amdsmi_wrapper"), "_libraries", {}).get("libamd_smi.so") is LIBRARY:
        return
    _drop_amdsmi()
    real_cdll = ctypes.CDLL

    def cdll(name: Any, *args: Any, **kwargs: Any) -> Any:
        return LIBRARY if "libamd_smi" in str(name) else real_cdll(name, *args, **kwargs)

    ctypes.CDLL = cdll  # type: ignore[misc,assignment]
    try:
        with contextlib.redirect_stdout(None):
            import amdsmi  # noqa: F401
    finally:
        ctypes.CDLL = real_cdll  # type: ignore[misc]


def uninstall() -> None:
    """amdsmi forgotten: the next import finds whatever library the machine has (here: none)."""
    LIBRARY.fake = None
    _drop_amdsmi()


def from_spec(spec: str, real_time: bool = True) -> FakeAmdSmi:
    devices_part, *options = spec.split(":")
    devices: list[AmdProfile] = []
    if devices_part.strip().lower() != "none":
        for item in devices_part.split(","):
            name, _, count = item.strip().partition("*")
            if name.upper() not in PROFILES:
                raise ValueError(f"unknown AMD profile {name!r} (known: {', '.join(PROFILES)})")
            devices.extend(_expand(name, int(count or 1)))
    unknown = set(options) - {"driver_not_loaded", "simulated"}
    if unknown:
        raise ValueError(f"unknown option(s) {sorted(unknown)}")
    return FakeAmdSmi(devices, driver_not_loaded="driver_not_loaded" in options, real_time=real_time, simulated="simulated" in options)


def install_from_spec(spec: str) -> FakeAmdSmi:
    fake = from_spec(spec)
    install(fake)
    return fake


__all__ = ["FakeAmdSmi", "AmdProfile", "FakeProcess", "install", "uninstall", "install_from_spec", "MI300X", "MI250X", "RADEON", "field"]
