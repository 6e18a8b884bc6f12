"""Energy per step: a cumulative-joules curve of the device a workload runs on, built from the
samples, and each step's share of it.

GPU: the device's energy counter, found by the UUID the workload reports (else by its CUDA ordinal
through CUDA_VISIBLE_DEVICES). CPU: the package power (RAPL), each reading the mean since the tick
before, integrated. A gap (no reading) restarts the curve; a step is given energy only once the
curve covers it.
"""

from __future__ import annotations

import bisect
import collections
from typing import Any, Mapping

from gputop.model import GpuInfo, GpuSample, Sample, WorkloadStep

CURVE_POINTS = 4096  # samples of energy kept (steps older than that keep what they were given)


def gpu_uuid(uuid: str) -> str:
    """NVML's spelling of a GPU UUID ("GPU-" and lower case; torch gives it without "GPU-")."""
    uuid = uuid.strip().lower()
    return uuid if uuid.startswith(("gpu-", "mig-")) else "gpu-" + uuid


# the variables that hide or renumber GPUs for a child, the first one set wins (a ROCm PyTorch
# reads CUDA_VISIBLE_DEVICES too, then HIP's, then ROCr's)
VISIBLE_DEVICES = ("CUDA_VISIBLE_DEVICES", "HIP_VISIBLE_DEVICES", "ROCR_VISIBLE_DEVICES")


def visible_gpu(device: str | None, env: Mapping[str, str]) -> tuple[str, str] | None:
    """The device a child's ``cuda``/``cuda:N`` is: ("index", "2") (the runtime's numbering: NVML's
    index, AMD's HIP ordinal) or ("uuid", "GPU-..."), through CUDA_VISIBLE_DEVICES (or HIP's,
    ROCr's); None where it cannot be told (MIG, an odd list, not cuda)."""
    if device is None or not (device == "cuda" or device.startswith("cuda:")):
        return None
    try:
        ordinal = int(device.partition(":")[2] or 0)
    except ValueError:
        return None
    visible = next((env[name] for name in VISIBLE_DEVICES if name in env), None)
    if visible is None:
        return "index", str(ordinal)
    entries = [e.strip() for e in visible.split(",")]
    if ordinal >= len(entries) or not entries[ordinal]:
        return None
    entry = entries[ordinal]
    if entry.isdigit():
        return "index", entry
    if entry.startswith("GPU-"):
        return "uuid", entry
    return None


def is_gpu(info: GpuInfo, key: tuple[str, str] | None) -> bool:
    """Whether ``key`` (from ``visible_gpu``, or ("uuid", a UUID)) names this device."""
    if key is None:
        return False
    if key[0] == "index":
        return key[1] == str(info.index if info.runtime_index is None else info.runtime_index)
    return bool(info.uuid) and (info.uuid or "").lower().startswith(key[1].lower())


class EnergyCurve:
    """(ts_ns, cumulative joules) of the workload's device; ``start`` is the workload's start
    event (it names the device): samples seen before it wait in a small buffer."""

    def __init__(self, env: Mapping[str, str]) -> None:
        self._env = env
        self._early: collections.deque[Sample] = collections.deque(maxlen=64)
        self.points: list[tuple[int, float]] = []
        self._last_gpu_reading: GpuSample | None = None  # the GpuSample last put on the curve

    def add(self, sample: Sample, start: Mapping[str, Any]) -> None:
        if not start:
            self._early.append(sample)
            return
        for s in (*self._early, sample):
            self._extend(s, start)
        self._early.clear()

    def _reading(self, sample: Sample, start: Mapping[str, Any]) -> tuple[int, float | None, bool] | None:
        """(ts_ns, value, is_power) for the workload's device in ``sample``; None where the device
        is not one whose energy can be read (not yet known, mps, a MIG slice...)."""
        device = start.get("device")
        if device == "cpu":
            return sample.ts_ns, sample.cpu.cpu_power_w, True
        uuid = start.get("device_uuid")
        # The device's own UUID, where the workload says it, is the sure match: a CUDA ordinal
        # follows CUDA_DEVICE_ORDER (fastest first by default), NVML's index the PCI bus order.
        key = ("uuid", gpu_uuid(uuid)) if isinstance(uuid, str) and uuid else visible_gpu(device, self._env)
        if key is None:
            return None
        for gpu in sample.gpus:
            if is_gpu(gpu.info, key):
                if gpu is self._last_gpu_reading:  # not read again since (GPUs: every ~0.1 s):
                    return None  # its time is the sample that first carried it
                self._last_gpu_reading = gpu
                return sample.ts_ns, None if gpu.lost else gpu.energy_j, False
        return sample.ts_ns, None, False

    def _extend(self, sample: Sample, start: Mapping[str, Any]) -> None:
        reading = self._reading(sample, start)
        if reading is None:
            return
        ts, value, is_power = reading
        curve = self.points
        if value is None or (curve and ts <= curve[-1][0]):
            curve.clear()
            return
        if not is_power:
            curve.append((ts, value))
        elif not curve:
            curve.append((ts, 0.0))  # the first power reading is for the time before: a start
        else:
            curve.append((ts, curve[-1][1] + value * (ts - curve[-1][0]) / 1e9))
        if len(curve) > 2 * CURVE_POINTS:
            del curve[:-CURVE_POINTS]

    def _at(self, ts: int) -> float:
        curve = self.points
        hi = bisect.bisect_right(curve, ts, key=lambda point: point[0])
        hi = min(max(hi, 1), len(curve) - 1)
        (t0, e0), (t1, e1) = curve[hi - 1], curve[hi]
        return e0 + (e1 - e0) * (ts - t0) / (t1 - t0)

    def joules(self, step: WorkloadStep) -> float | None:
        """The step's energy, once the curve covers it (linear between samples: a step shorter
        than the interval gets the interval's mean power times its wall time); None before, or
        where the counter went back (a driver reload is no measurement)."""
        curve = self.points
        if len(curve) < 2:
            return None
        begin = step.ts_ns - int(step.wall_s * 1e9)
        if not (curve[0][0] <= begin and step.ts_ns <= curve[-1][0]):
            return None
        joules = self._at(step.ts_ns) - self._at(begin)
        return joules if joules >= 0 else None
