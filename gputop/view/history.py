"""Bounded ring buffers of every numeric metric, one per series, on one shared time axis.

A series is named ``<scope>.<metric>``: ``cpu.cpu_util_pct``, ``cpu.core3.core_util_pct``,
``gpu0.sm_active_pct``, ``workload.samples_per_s`` (see ``cpu_key``, ``core_key``, ``gpu_key``).
Every push appends one point to every series (``None`` where this sample had no value), so the
n-th point from the end of any series belongs to the n-th timestamp from the end. A series first
seen late is padded with ``None`` back to the start of the history.

Memory is bounded by ``capacity`` points per series, whatever the run time. History never trims
itself to a screen: a widget asks ``last(name, width)`` for as many points as it is wide.
"""

from __future__ import annotations

from collections import deque
from itertools import islice, repeat
from typing import Iterator, Mapping, Sequence, TypeVar

from gputop import metrics
from gputop.model import Sample, WorkloadState

T = TypeVar("T")

Value = float | None


def cpu_key(metric: str) -> str:
    return f"cpu.{metric}"


def core_key(core: int, metric: str) -> str:
    return f"cpu.core{core}.{metric}"


def gpu_key(index: int, metric: str) -> str:
    return f"gpu{index}.{metric}"


def workload_key(metric: str) -> str:
    return f"workload.{metric}"


# a launched workload's progress, kept as history series beside the sample's (the live view's)
WORKLOAD_SERIES = ("step", "samples_per_s", "tflops", "mfu_pct", "loss", "joules_per_step")


def workload_points(state: WorkloadState | None) -> dict[str, float | None] | None:
    """The workload's progress as history series (``workload.samples_per_s``, ...)."""
    if state is None:
        return None
    return {workload_key(name): getattr(state, name) for name in WORKLOAD_SERIES}


_CPU_SCALARS = tuple(m for m in metrics.CPU_METRICS if metrics.metric(m).scope == "cpu")
_CPU_PER_CORE = tuple(m for m in metrics.CPU_METRICS if metrics.metric(m).scope == "core")
_GPU_NUMERIC = tuple(m for m in metrics.GPU_METRICS if metrics.metric(m).kind != "info")


def _number(value: object) -> Value:
    """Numbers as they are; anything else (bools, strings, tuples) is not a point on a plot."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return value
    return None


def flatten(sample: Sample) -> dict[str, Value]:
    """Every numeric metric of ``sample`` by series name."""
    cpu = sample.cpu
    points: dict[str, Value] = {cpu_key(m): _number(getattr(cpu, m)) for m in _CPU_SCALARS}
    for m in _CPU_PER_CORE:
        for core, value in enumerate(getattr(cpu, m)):
            points[core_key(core, m)] = _number(value)
    for gpu in sample.gpus:
        for m in _GPU_NUMERIC:
            points[gpu_key(gpu.info.index, m)] = _number(getattr(gpu, m))
    return points


class History:
    """The last ``capacity`` samples of every series."""

    def __init__(self, capacity: int = 3600) -> None:
        if capacity < 1:
            raise ValueError(f"capacity must be at least 1, got {capacity}")
        self.capacity = capacity
        self._ts_ns: deque[int] = deque(maxlen=capacity)
        self._series: dict[str, deque[Value]] = {}
        self.pushes = 0  # samples ever recorded: a reader that kept this knows how many are new

    def push(self, sample: Sample, extra: Mapping[str, Value] | None = None) -> None:
        """Append one point per series from ``sample`` (and ``extra``, already keyed by series
        name, for values the Sample does not carry, such as workload progress)."""
        points = flatten(sample)
        if extra:
            points.update((k, _number(v)) for k, v in extra.items())
        self.record(sample.ts_ns, points)

    def record(self, ts_ns: int, points: Mapping[str, Value]) -> None:
        """Append one point per series at ``ts_ns``; known series absent from ``points`` get None."""
        for name in points.keys() - self._series.keys():
            self._series[name] = deque(repeat(None, len(self._ts_ns)), maxlen=self.capacity)
        self._ts_ns.append(ts_ns)
        self.pushes += 1
        for name, column in self._series.items():
            column.append(points.get(name))

    def __len__(self) -> int:
        """How many samples are held (the same for every series)."""
        return len(self._ts_ns)

    def __contains__(self, name: str) -> bool:
        return name in self._series

    def names(self) -> Iterator[str]:
        return iter(self._series)

    def series(self, name: str) -> list[Value]:
        """Every held point of ``name``, oldest first; [] for a series never seen."""
        return list(self._series.get(name, ()))

    def last(self, name: str, n: int) -> list[Value]:
        """Up to ``n`` most recent points of ``name``, oldest first."""
        return _tail(self._series.get(name, ()), n)

    def timestamps(self, n: int | None = None) -> list[int]:
        """``time.time_ns()`` stamps of the held samples (the last ``n``), oldest first."""
        return list(self._ts_ns) if n is None else _tail(self._ts_ns, n)

    def latest(self, name: str) -> Value:
        column = self._series.get(name)
        return column[-1] if column else None


def _tail(items: Sequence[T], n: int) -> list[T]:
    if n <= 0:
        return []
    out = list(islice(reversed(items), n))
    out.reverse()
    return out
