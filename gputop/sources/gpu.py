"""The vendor seam: what the sampler asks of a GPU source, whichever vendor's library is behind it.

A source is opened once (each vendor's own ``open``: its devices probed, their static ``GpuInfo``
read), then per tick ``sample()`` gives one ``GpuSample`` per device, ``processes()`` (slower) the
processes per device index, ``read_intervals()`` what it reads less often than every GPU read,
``driver_time()`` its own time in the driver, and ``close()`` ends it. ``NvmlSource`` (sources/nvml) and
``AmdSource`` (sources/amd) are two; ``GpuSources`` puts several side by side (a machine with both
vendors), their device indexes unique. Nothing above this module knows a vendor's library.
"""

from __future__ import annotations

import threading
import time
from typing import Any, Callable, Mapping, Protocol, Sequence, TypeVar

from gputop.model import GpuInfo, GpuProcess, GpuSample

ProcessTable = dict[int, "tuple[GpuProcess, ...] | None"]


class GpuUnavailable(Exception):
    """No GPU of this vendor can be shown; ``reason`` says why in one line."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


_T = TypeVar("_T")


class DriverTime:
    """This process's time inside one vendor's driver calls made through its choke point (wall
    time of each call, every thread summed: an upper bound of the driver's own time, as it holds
    the waits for a CPU and for the GIL after each call) and how many calls."""

    def __init__(self) -> None:
        self._lock = threading.Lock()  # the sampling thread and the PCIe thread both add
        self._ns = 0
        self._calls = 0

    def add(self, ns: int) -> None:
        with self._lock:
            self._ns += ns
            self._calls += 1

    def call(self, fn: Callable[..., _T], *args: Any) -> _T:
        """``fn(*args)``, its wall time added (whether it returns or raises)."""
        start = time.perf_counter_ns()
        try:
            return fn(*args)
        finally:
            self.add(time.perf_counter_ns() - start)

    def read(self) -> tuple[int, int]:
        """(nanoseconds, calls) so far."""
        with self._lock:
            return self._ns, self._calls


class GpuSource(Protocol):
    """One vendor's GPUs, opened (probed once); see the module's docstring."""

    devices: tuple[GpuInfo, ...]

    def sample(self, processes: Mapping[int, tuple[GpuProcess, ...] | None] | None = None) -> tuple[GpuSample, ...]:
        """One GpuSample per device, with its entry of ``processes`` (None where not given)."""
        ...

    def processes(self) -> ProcessTable:
        """Per device index, the processes on it (host fields left None); None where unreadable."""
        ...

    def read_intervals(self) -> dict[str, float]:
        """The metrics read less often than every GPU read, and every how many seconds."""
        ...

    def driver_time(self) -> tuple[int, int]:
        """This process's time in the vendor's driver calls so far (ns) and how many."""
        ...

    def close(self) -> None: ...


class GpuSources:
    """Several vendors' sources read as one (in the order given: their devices' indexes follow on)."""

    def __init__(self, sources: Sequence[GpuSource]) -> None:
        self._sources = tuple(sources)
        self.devices: tuple[GpuInfo, ...] = tuple(d for s in self._sources for d in s.devices)
        indexes = [d.index for d in self.devices]
        if len(set(indexes)) != len(indexes):
            raise ValueError(f"GPU indexes are not unique across sources: {indexes}")

    def sample(self, processes: Mapping[int, tuple[GpuProcess, ...] | None] | None = None) -> tuple[GpuSample, ...]:
        return tuple(g for s in self._sources for g in s.sample(processes))

    def processes(self) -> ProcessTable:
        table: ProcessTable = {}
        for source in self._sources:
            table.update(source.processes())
        return table

    def read_intervals(self) -> dict[str, float]:
        intervals: dict[str, float] = {}
        for source in self._sources:
            intervals.update(source.read_intervals())
        return intervals

    def driver_time(self) -> tuple[int, int]:
        times = [source.driver_time() for source in self._sources]
        return sum(ns for ns, _ in times), sum(calls for _, calls in times)

    def close(self) -> None:
        for source in self._sources:
            source.close()


def combined(sources: Sequence[GpuSource]) -> GpuSource | None:
    """The one source the sampler reads: None for none, the source itself for one (no layer in
    between: NVIDIA alone costs what it did), else a ``GpuSources``."""
    if not sources:
        return None
    return sources[0] if len(sources) == 1 else GpuSources(sources)
