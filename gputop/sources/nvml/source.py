"""NvmlSource: every NVIDIA GPU NVML can see, probed once and read per tick; a lost device
marked lost while the others go on.

What a device supports is probed once, in ``NvmlSource.open``: each per-tick query that answered
becomes a ``Reader`` (which call, with which arguments, into which fields), choosing the newest
variant the driver has (memory info v2 or v1, GetTemperatureV or GetTemperature, clocks event or
throttle reasons, process queries v3 or v2). A tick then calls only what answered.

Reads are tiered by what they cost the driver and how fast the value moves: the counters every
GPU read; ``SLOW_FIELDS`` every ``SLOW_INTERVAL_S``; PCIe throughput without byte counters on a
thread of its own (``pcie.PcieWatch``); process lists as often as the sampler asks, within a
budget of driver time.
``read_intervals()`` says which fields are read less often than every GPU read, and how often.
"""

from __future__ import annotations

import logging
import time
from dataclasses import replace
from typing import Any, Callable, Mapping

import pynvml

from gputop.model import GpuInfo, GpuProcess, GpuSample
from gputop.sources.nvml.gpm import Gpm
from gputop.sources.nvml.info import cuda_version, lost_info, static_info, text, unavailable_reason
from gputop.sources.nvml.pcie import PcieWatch
from gputop.sources.nvml.query import (
    COUNTERS,
    DRIVER_TIME,
    LOST,
    NOT_AVAILABLE,
    PCIE_THROUGHPUT,
    PROCESS_QUERIES,
    SLOW_FIELDS,
    SLOW_INTERVAL_S,
    TICK_QUERIES,
    UNANSWERABLE,
    GpuLost,
    GpuUnavailable,
    Reader,
    field_value,
    first_answering,
    kib_per_s,
    query,
    read_all,
)
from gputop.sources.nvml.workers import SideBySide

log = logging.getLogger("gputop.sources.nvml")  # the package's one logger
PROCESS_BUDGET_S_PER_S = 0.02  # process lists' driver time, at most, per second
# Threads reading devices side by side, at most. Each device's calls release the GIL inside the
# driver, but pynvml's Python and ours between them hold it: every thread more waits for it after
# each call, and that wait lands in the call's wall time (what gputop shows as its driver time).
# Measured on the driver cost model, 8 GPUs (benchmarks/README.md): 4 threads read them as fast as
# 8 (7.7 against 10.5 ms, median, load 5) with the shown time 4.3x the model's charge against 7.1x.
READERS_MAX = 4
Clock = Callable[[], float]


class _Device:
    """One GPU: its handle, what it answered at probe time, and what rates need from last tick."""

    def __init__(self, index: int, handle: Any, info: GpuInfo, clock: Clock = time.monotonic) -> None:
        self.index = index
        self.clock = clock
        self.handle = handle
        self.info = info
        self.lost_sample = GpuSample(info, lost=True)
        self.lost = False
        self.readers: list[Reader] = []
        self.slow_readers: list[Reader] = []
        self.slow_at: float | None = None
        self.slow_values: dict[str, Any] = {}
        self.slow_field_count = 0
        self.gpm: Gpm | None = None
        self.energy_counter = False
        self.energy_j: float | None = None  # integrated from power where there is no counter
        self.last_power: tuple[float, float] | None = None  # (monotonic s, W)
        self.counters: list[tuple[str, Any, int]] = []  # (field, (id, scope), bytes per unit)
        self.pcie_readers: list[Reader] = []  # GetPcieThroughput, where there are no byte counters
        self.last_counts: tuple[float, list[Any]] | None = None
        self.process_fns: list[tuple[str, Callable[..., Any]]] = []
        self.process_util = False
        self.last_seen_us = 0

    # -- probe, once
    def probe(self) -> None:
        h = self.handle
        for fields, variants, convert in TICK_QUERIES:
            found = first_answering(h, variants)
            if found:
                slow = SLOW_FIELDS.issuperset(fields)
                (self.slow_readers if slow else self.readers).append(Reader(fields, found[0], (h, *found[1]), convert))
        self.slow_field_count = sum(len(r.fields) for r in self.slow_readers)
        self.energy_counter = any(r.fields == ("energy_j",) for r in self.readers)
        self.info = replace(self.info, energy_counter=self.energy_counter)
        self.lost_sample = GpuSample(self.info, lost=True)
        self._probe_counters()
        if self.info.gpm_supported:
            self.gpm = Gpm.open(h, query)
        for kind, names in PROCESS_QUERIES:
            found = first_answering(h, tuple((name, ()) for name in names))
            if found:
                self.process_fns.append((kind, found[0]))
        self.process_util = query(pynvml.nvmlDeviceGetProcessUtilization, h, 0, unanswerable=UNANSWERABLE) is not UNANSWERABLE

    def _probe_counters(self) -> None:
        h = self.handle
        wanted = [c for c in COUNTERS if c[1] is not None]
        ids = [(fid, scope) for _, fid, scope, _ in wanted] + [(pynvml.NVML_FI_DEV_NVLINK_LINK_COUNT, 0)]
        values = query(pynvml.nvmlDeviceGetFieldValues, h, ids)
        answered = [field_value(v) for v in values] if values is not None else [None] * len(ids)
        no_links = answered[-1] == 0
        for (name, fid, scope, scale), value in zip(wanted, answered):
            if value is not None and not (no_links and name.startswith("nvlink")):
                self.counters.append((name, (fid, scope), scale))
        have = {name for name, _, _ in self.counters}
        for name, variants in PCIE_THROUGHPUT:
            found = None if name in have else first_answering(h, variants)
            if found:
                self.pcie_readers.append(Reader((name,), found[0], (h, *found[1]), kib_per_s))

    # -- every tick
    def read(self) -> dict[str, Any]:
        now = self.clock()
        stale = self.slow_at is None or now - self.slow_at >= SLOW_INTERVAL_S
        if stale or len(self.slow_values) < self.slow_field_count:  # a failed read is retried next tick
            self.slow_values, self.slow_at = read_all(self.slow_readers), now
        values = read_all(self.readers)
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
                self.energy_j = (self.energy_j or 0.0) + (last_w + power_w) / 2.0 * (now - then)
            self.last_power = (now, power_w)
        return self.energy_j

    def _rates(self) -> dict[str, float | None]:
        now = self.clock()
        values = query(pynvml.nvmlDeviceGetFieldValues, self.handle, [c[1] for c in self.counters])
        counts = [field_value(v) for v in values] if values is not None else [None] * len(self.counters)
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
            procs = query(fn, self.handle)
            if procs is None:
                continue
            answered = True
            for p in procs:
                mem = p.usedGpuMemory if p.usedGpuMemory not in NOT_AVAILABLE else None
                kinds, known = merged.get(p.pid, ([], None))
                kinds.append(kind)
                merged[p.pid] = (kinds, known if mem is None else max(mem, known or 0))
        if not answered:
            return None
        util = self._process_utilization() if merged else {}
        return tuple(
            GpuProcess(
                pid=pid,
                gpu_index=self.index,
                kind="+".join(dict.fromkeys(kinds)),
                gpu_mem_bytes=mem,
                sm_util_pct=util.get(pid, (None, None))[0],
                mem_util_pct=util.get(pid, (None, None))[1],
            )
            for pid, (kinds, mem) in sorted(merged.items())
        )

    def _process_utilization(self) -> dict[int, tuple[float, float]]:
        """SM and memory utilization per pid from samples newer than the last look."""
        if not self.process_util:
            return {}
        samples = query(pynvml.nvmlDeviceGetProcessUtilization, self.handle, self.last_seen_us)
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
            except GpuLost:
                pass  # a lost device's buffers go with the driver state at shutdown
            self.gpm = None


# ---------------------------------------------------------------------------- the source


class NvmlSource:
    """Every NVIDIA GPU NVML can see. Build with ``NvmlSource.open()``; ``close()`` when done."""

    def __init__(self, devices: list[_Device], clock: Clock = time.monotonic) -> None:
        self._devices = devices
        self.devices: tuple[GpuInfo, ...] = tuple(d.info for d in devices)
        self._closed = False
        self._clock = clock
        self._scanned: tuple[float, float, dict[int, tuple[GpuProcess, ...] | None]] | None = None  # (when, seconds it took, table)
        # several GPUs are read side by side: each device's calls hold only its own lock in the
        # driver (a process list holds the driver's: those stay one after another)
        self._pool = SideBySide(min(len(devices), READERS_MAX), "gputop-gpu") if len(devices) > 1 else None
        self._pcie = PcieWatch({d.index: d.pcie_readers for d in devices if not d.lost})
        self._pcie.start()

    @classmethod
    def open(cls, clock: Clock = time.monotonic) -> NvmlSource:
        """Start NVML and probe every device once; GpuUnavailable says why there is nothing to show.

        ``clock`` (seconds, monotonic) times rates and GPM sample pairs; tests pass a fake one.
        """
        try:
            pynvml.nvmlInit()
        except (pynvml.NVMLError, pynvml.NVMLLibraryMismatchError) as err:
            raise GpuUnavailable(unavailable_reason(err)) from None
        try:
            return cls(_probe_all(clock), clock)
        except BaseException:
            query(pynvml.nvmlShutdown)
            raise

    def sample(self, processes: Mapping[int, tuple[GpuProcess, ...] | None] | None = None) -> tuple[GpuSample, ...]:
        """One GpuSample per device, with its entry of ``processes`` (a table from
        ``processes()``, joined with the host's view by the Sampler; None where not given)."""
        if self._closed:
            raise RuntimeError("NvmlSource is closed")
        table = processes or {}
        if self._pool is None:
            return tuple(self._sample(d, table.get(d.index)) for d in self._devices)
        return tuple(self._pool.map(lambda d: self._sample(d, table.get(d.index)), self._devices))

    def _sample(self, device: _Device, processes: tuple[GpuProcess, ...] | None) -> GpuSample:
        if not device.lost:
            try:
                values = device.read()
                if device.pcie_readers:
                    values.update(self._pcie.latest(device.index))
                return GpuSample(device.info, processes=processes, **values)
            except GpuLost as err:
                log.warning("GPU %d (%s) lost: %s", device.index, device.info.name, err)
                device.lost = True
        return device.lost_sample

    def processes(self) -> dict[int, tuple[GpuProcess, ...] | None]:
        """Per device index, the processes holding a context there (host fields left None);
        None for a device whose processes can't be read.

        A process list is the costliest read there is (milliseconds in the driver, under its
        lock): asked again sooner than the last scan's time over PROCESS_BUDGET_S_PER_S, this
        gives the last scan's table (on 8 GPUs a scan can take 70 ms: every 3.5 s at most).
        """
        if self._closed:
            raise RuntimeError("NvmlSource is closed")
        now = self._clock()
        if self._scanned is not None and now - self._scanned[0] < self._scanned[1] / PROCESS_BUDGET_S_PER_S:
            return dict(self._scanned[2])
        started = time.perf_counter()
        result = self._scan()
        self._scanned = (now, time.perf_counter() - started, result)  # (its calls, one after another)
        return result

    def _scan(self) -> dict[int, tuple[GpuProcess, ...] | None]:
        result: dict[int, tuple[GpuProcess, ...] | None] = {}
        for device in self._devices:
            result[device.index] = None
            if not device.lost:
                try:
                    result[device.index] = device.processes() if device.process_fns else None
                except GpuLost as err:
                    log.warning("GPU %d (%s) lost: %s", device.index, device.info.name, err)
                    device.lost = True
        return result

    def read_intervals(self) -> dict[str, float]:
        """The fields read less often than every GPU read, and every how many seconds."""
        slow = {f: SLOW_INTERVAL_S for d in self._devices for r in d.slow_readers for f in r.fields}
        return {**slow, **dict.fromkeys(sorted(self._pcie.fields), self._pcie.interval_s)}

    @staticmethod
    def driver_time() -> tuple[int, int]:
        """This process's time inside NVML calls so far (ns, wall time of each call, every thread
        summed: an upper bound of the driver's time on its behalf) and how many."""
        return DRIVER_TIME.read()

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._pcie.close()
        if self._pool is not None:
            self._pool.close()
        for device in self._devices:
            device.close()
        query(pynvml.nvmlShutdown)


def _probe_all(clock: Clock) -> list[_Device]:
    try:
        count = pynvml.nvmlDeviceGetCount()
    except pynvml.NVMLError as err:
        raise GpuUnavailable(unavailable_reason(err)) from None
    driver = text(query(pynvml.nvmlSystemGetDriverVersion))
    cuda = cuda_version()
    devices = []
    for index in range(count):
        try:
            handle = pynvml.nvmlDeviceGetHandleByIndex(index)
        except pynvml.NVMLError as err:
            if err.value in LOST:
                devices.append(_Device.lost_at_open(index, lost_info(index, driver, cuda)))
            else:  # e.g. a device this container may not open
                log.info("GPU %d skipped: %s", index, err)
            continue
        device = None
        try:
            device = _Device(index, handle, static_info(index, handle, driver, cuda), clock)
            device.probe()
        except GpuLost:
            if device is not None:
                device.close()
            info = device.info if device is not None else lost_info(index, driver, cuda)
            device = _Device.lost_at_open(index, info)
        devices.append(device)
    if not devices:
        raise GpuUnavailable("no NVIDIA GPU found" if count == 0 else "no NVIDIA GPU can be opened")
    return devices
