"""Statistics of a stream of values in bounded memory: count, mean, max and percentiles of any
number of values, and a stream of points thinned to a bounded number (for a chart), and power integrated over time.

Percentiles are exact (linear between ranks, as ``workload.rates.percentile``) while a metric has
at most ``EXACT_VALUES`` distinct values. Past that, each value is kept as the centre of its
logarithmic bucket (``RELATIVE_ERROR`` wide either side: a DDSketch), so every percentile is within
0.1 % of the exact one, and the buckets stay a few thousand whatever the count (values from
1e-3 to 1e12 fill at most ~17,000). Count, mean (a running sum) and max are always exact.
"""

from __future__ import annotations

import math
import operator
from typing import Generic, Sequence, TypeVar

from gputop import format as fmt
from gputop.model import GpuInfo, GpuSample, Sample

EXACT_VALUES = 4096
RELATIVE_ERROR = 0.001
_GAMMA = (1 + RELATIVE_ERROR) / (1 - RELATIVE_ERROR)
_LOG_GAMMA = math.log(_GAMMA)
_MID = 2 / (_GAMMA + 1)  # bucket i holds (gamma^(i-1), gamma^i]; its centre is gamma^i * _MID

T = TypeVar("T")


def bucket(value: float) -> float:
    """The centre of ``value``'s bucket: within RELATIVE_ERROR of it (0 stays 0)."""
    if value == 0:
        return 0.0
    size = abs(value)
    centre = _GAMMA ** math.ceil(math.log(size) / _LOG_GAMMA) * _MID
    return centre if value > 0 else -centre


class Distribution:
    """Values added one at a time (or with a weight: the same value ``weight`` times)."""

    __slots__ = ("_n", "_total", "_max", "_min", "_counts", "exact", "_held", "_weight")

    def __init__(self) -> None:
        self._n = 0
        self._total = 0.0
        self._max: float | None = None
        self._min: float | None = None
        self._counts: dict[float, int] = {}
        self.exact = True  # False once the values were put into buckets
        self._held: float | None = None  # the last value added, not yet counted ...
        self._weight = 0  # ... and how many times

    @property
    def n(self) -> int:
        self._flush()
        return self._n

    @property
    def max(self) -> float | None:
        self._flush()
        return self._max

    def add(self, value: float, weight: int = 1) -> None:
        if value == self._held:  # the same value again (a metric that holds still): counted later
            self._weight += weight
            return
        self._flush()
        self._held, self._weight = value, weight

    def _flush(self) -> None:
        value, weight = self._held, self._weight
        if value is None or not weight:
            return
        self._held, self._weight = None, 0
        value = float(value)
        if value - value != 0.0:  # NaN or infinite: not a value (as stats() leaves it out)
            return
        self._n += weight
        self._total += value * weight
        if self._max is None or value > self._max:
            self._max = value
        if self._min is None or value < self._min:
            self._min = value
        counts = self._counts
        key = value if self.exact else bucket(value)
        counts[key] = counts.get(key, 0) + weight
        if self.exact and len(counts) > EXACT_VALUES:
            self._to_buckets()

    def _to_buckets(self) -> None:
        merged: dict[float, int] = {}
        for value, count in self._counts.items():
            key = bucket(value)
            merged[key] = merged.get(key, 0) + count
        self._counts = merged
        self.exact = False

    @property
    def mean(self) -> float | None:
        return self._total / self.n if self.n else None

    def percentile(self, q: float) -> float | None:
        """The ``q``-th percentile, linear between ranks (exact, or within RELATIVE_ERROR)."""
        n, lowest, highest = self.n, self._min, self._max
        if not n or lowest is None or highest is None:
            return None
        rank = (n - 1) * q / 100.0
        low = math.floor(rank)
        high = min(low + 1, n - 1)
        a = b = None
        seen = 0
        for value, count in sorted(self._counts.items()):
            seen += count
            if a is None and seen > low:
                a = value
            if seen > high:
                b = value
                break
        assert a is not None and b is not None
        out = a + (b - a) * (rank - low)
        return min(max(out, lowest), highest)  # a bucket's centre may lie past the extremes

    def summary(self) -> dict[str, float | int | None]:
        """``n``, ``mean``, ``p50``, ``p95``, ``max`` (all None but n where there is no value)."""
        if not self.n:
            return {"n": 0, "mean": None, "p50": None, "p95": None, "max": None}
        return {"n": self.n, "mean": self.mean, "p50": self.percentile(50), "p95": self.percentile(95), "max": self.max}


class Thinned(Generic[T]):
    """Every ``stride``-th item of a stream, at most ``limit`` of them: when full, every other
    one is dropped and the stride doubles. A stream shorter than ``limit`` is kept whole."""

    def __init__(self, limit: int = 4000) -> None:
        self.limit = limit
        self.stride = 1
        self.items: list[T] = []
        self._seen = 0

    def add(self, item: T) -> None:
        if self._seen % self.stride == 0:
            self.items.append(item)
            if len(self.items) > self.limit:
                self.items = self.items[::2]
                self.stride *= 2
        self._seen += 1


class Integral:
    """Energy from power by the trapezoid rule, one reading at a time, over the intervals where
    both ends are known (``report.integrate_j`` over a stream)."""

    __slots__ = ("total", "any", "_ts", "_w")

    def __init__(self) -> None:
        self.total, self.any = 0.0, False
        self._ts: int | None = None
        self._w: float | None = None

    def add(self, ts_ns: int, power_w: float | None) -> None:
        if self._w is not None and power_w is not None and self._ts is not None:
            self.total += (self._w + power_w) / 2.0 * (ts_ns - self._ts) / 1e9
            self.any = True
        self._ts, self._w = ts_ns, power_w

    @property
    def joules(self) -> float | None:
        return self.total if self.any else None


class SampleStats:
    """What ``gputop report`` says of the samples, kept as they stream by: per device and metric
    a Distribution, energy (counter delta, else power integrated), the util trap and lost
    counts. A GPU reading carried over samples (the same GpuSample object: not read again) is
    added once, weighted by how many samples it stood for."""

    def __init__(self, gpus: Sequence[GpuInfo], cpu_metrics: Sequence[str], gpu_metrics: Sequence[str]) -> None:
        self.gpus = tuple(gpus)
        self.samples = 0
        self.first_ns: int | None = None
        self.last_ns: int | None = None
        self.cores: int | None = None
        self.cpu = {m: Distribution() for m in cpu_metrics}
        self.cpu_energy = Integral()
        self._cpu = tuple(self.cpu.values())
        self._cpu_values = operator.attrgetter(*cpu_metrics) if len(cpu_metrics) > 1 else None
        self.gpu = [_GpuStats(gpu_metrics) for _ in self.gpus]

    def add(self, sample: Sample) -> None:
        ts = sample.ts_ns
        if self.first_ns is None:
            self.first_ns, self.cores = ts, len(sample.cpu.core_util_pct)
        self.last_ns = ts
        self.samples += 1
        cpu = sample.cpu
        values = self._cpu_values(cpu) if self._cpu_values is not None else [getattr(cpu, m) for m in self.cpu]
        for dist, value in zip(self._cpu, values):
            if value is not None:
                dist.add(value)
        self.cpu_energy.add(ts, cpu.cpu_power_w)
        gpus = sample.gpus
        for k, acc in enumerate(self.gpu):
            acc.add(ts, gpus[k] if k < len(gpus) else None)

    def finish(self) -> None:
        for acc in self.gpu:
            acc.flush()


class _GpuStats:
    def __init__(self, metrics_: Sequence[str]) -> None:
        self.metrics = {m: Distribution() for m in metrics_}
        self._metrics = tuple(self.metrics.items())
        self.power = Integral()
        self.energy_first: float | None = None
        self.energy_last: float | None = None
        self._readings = 0  # samples with an energy reading
        self.trapped = 0
        self.both = 0
        self.lost = 0
        self._held: GpuSample | None = None
        self._weight = 0

    def add(self, ts: int, gpu: GpuSample | None) -> None:
        self.power.add(ts, None if gpu is None else gpu.power_w)
        if gpu is not None and gpu is self._held:
            self._weight += 1
            return
        self.flush()
        self._held, self._weight = gpu, 1

    def flush(self) -> None:
        gpu, weight = self._held, self._weight
        self._held, self._weight = None, 0
        if gpu is None or weight == 0:
            return
        for metric, dist in self._metrics:
            value = getattr(gpu, metric)
            if value is not None:
                dist.add(value, weight)
        if gpu.energy_j is not None:
            if self.energy_first is None:
                self.energy_first = gpu.energy_j
            self.energy_last = gpu.energy_j
            self._readings += weight
        if gpu.gpu_util_pct is not None and gpu.sm_active_pct is not None:
            self.both += weight
            self.trapped += weight * fmt.util_trap(gpu.gpu_util_pct, gpu.sm_active_pct)
        if gpu.lost:
            self.lost += weight

    @property
    def energy_delta(self) -> float | None:
        """Last minus first energy counter reading; None with fewer than two readings."""
        if self.energy_first is None or self.energy_last is None or self._readings < 2:
            return None
        return self.energy_last - self.energy_first
