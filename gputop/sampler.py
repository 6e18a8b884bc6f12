"""One tick = one Sample from every source; drift-free ticking that keeps NVML off the event loop.

``Sampler.sample()`` blocks (NVML calls are ioctls). The TUI runs it through ``run``, which calls
it in a thread of its own and hands the samples to the event loop in batches; the headless
recorder iterates ``iter_samples``. Both schedule with
``Ticker``: deadlines fall at start + k x interval, so a slow tick does not push every later
one back, and deadlines already missed are skipped rather than fired in a burst.
"""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import inspect
import logging
import math
import threading
import time
from dataclasses import replace
from typing import TYPE_CHECKING, Awaitable, Callable, Generic, Iterator, Protocol, TypeVar

from gputop.model import GpuProcess, GpuSample, Sample

if TYPE_CHECKING:
    from gputop.sources.cpu import CpuSource, HostProcess
    from gputop.sources.gpu import GpuSource

ProcessTable = dict[int, "tuple[GpuProcess, ...] | None"]

log = logging.getLogger(__name__)


T = TypeVar("T")
T_co = TypeVar("T_co", covariant=True)


class Produces(Protocol[T_co]):
    """Anything with a ``sample()`` (the sampler, or the app's guarded wrapper of it)."""

    def sample(self) -> T_co: ...


class SupportsSample(Protocol):
    """Anything that gives one Sample a call (the Sampler; tests' stubs)."""

    def sample(self) -> Sample: ...


class SamplerLike(SupportsSample, Protocol):
    """What the headless commands use of a Sampler."""

    @property
    def gpu_interval_s(self) -> float: ...

    def close(self) -> bool | None: ...


# The GPUs are read about this often at most (a read is due DUE_EARLY_S early), whatever the
# interval: NVML refreshes most of what it reports no faster (utilization covers "the past
# sample period", between 1/6 s and 1 s by product, nvmlUtilization_t; power is a 1 s average
# from Ampere on, GA100 aside; GPM pairs need ~100 ms), and at 100 Hz each read would cost
# more than the host's whole sample.
GPU_INTERVAL_S = 0.1
# A read is due this much early: ticks 0.1 s apart come a few ms early or late (and in floats
# 0.3 - 0.2 < 0.1), and at 10 Hz every one of them must read the GPUs afresh. (At 100 Hz the
# GPUs are then read every 9th tick: 0.09 s apart.)
DUE_EARLY_S = 0.01
# close() waits this long for a sample under way; one stuck in a driver call (a hung GPU) is left
# to it: the sources stay open (closing NVML under a call in progress is not safe) and the
# process's exit ends them, rather than a quit that never returns
CLOSE_WAIT_S = 2.0


class Sampler:
    """Reads every source once per ``sample()``, the GPUs about every ``gpu_interval_s`` at most
    (see DUE_EARLY_S), and at every tick when the ticks are that slow.

    Between two GPU reads a sample carries the very same GpuSample objects as the one before
    (the trace writer relies on that identity to write a GPU's counters only when read). The
    GPU process table costs ~90 us per process (NVML plus /proc), so it is refreshed only every
    ``process_interval_s``, at a GPU read, and the last table is reused in between (never where
    that is infinite: a command that neither shows nor records the table).
    """

    def __init__(
        self,
        cpu: CpuSource,
        gpu: GpuSource | None,
        gpu_unavailable: str | None = None,
        process_interval_s: float = 2.0,
        clock: Callable[[], float] = time.monotonic,
        gpu_interval_s: float = GPU_INTERVAL_S,
    ) -> None:
        self.cpu = cpu
        self.gpu = gpu
        self.gpu_unavailable = None if gpu is not None else (gpu_unavailable or "no NVIDIA GPU found")
        self.process_interval_s = process_interval_s
        self.gpu_interval_s = gpu_interval_s
        self._clock = clock
        self._procs: ProcessTable = {}
        self._procs_at: float | None = None
        self._gpus: tuple[GpuSample, ...] = ()
        self._gpus_at: float | None = None  # the last GPU read
        self._called_at: float | None = None  # the last sample() (so: how fast the ticks come)
        self._lock = threading.Lock()  # ticks never overlap, whichever thread runs them
        self._closed = False

    def sample(self) -> Sample:
        with self._lock:
            if self._closed:
                raise RuntimeError("Sampler is closed")
            ts_ns = time.time_ns()
            cpu = self.cpu.sample()
            if self.gpu is None:
                return Sample(ts_ns=ts_ns, cpu=cpu, gpu_unavailable=self.gpu_unavailable)
            now = self._clock()
            last, called, self._called_at = self._gpus_at, self._called_at, now
            # due after gpu_interval_s (DUE_EARLY_S early); and at every tick when ticks come
            # that slowly anyway, so at 10 Hz a late tick followed by a punctual one still reads
            interval = self.gpu_interval_s
            if last is None or now - last >= interval - DUE_EARLY_S or (called is not None and now - called >= interval - 2 * DUE_EARLY_S):
                # the process table is scanned only with a GPU read: a read between two of the
                # others would make a GPM pair shorter than its minimum (old values carried)
                scan = math.isfinite(self.process_interval_s)  # (inf: no process table, never read)
                if scan and (self._procs_at is None or now - self._procs_at >= self.process_interval_s):
                    self._procs, self._procs_at = self._scan_processes(), now
                self._gpus, self._gpus_at = self.gpu.sample(self._procs), now
            return Sample(ts_ns=ts_ns, cpu=cpu, gpus=self._gpus)

    def driver_time(self) -> tuple[float, int] | None:
        """This process's time in GPU driver calls so far (seconds) and how many; None without a GPU source."""
        if self.gpu is None:
            return None
        ns, calls = self.gpu.driver_time()
        return ns / 1e9, calls

    def read_intervals(self) -> dict[str, float | None]:
        """Every how many seconds the GPUs are read ("gpu"), their process lists ("processes"; None:
        never), and each metric read less often than the GPUs, for a recording's header."""
        if self.gpu is None:
            return {}
        processes = self.process_interval_s if math.isfinite(self.process_interval_s) else None
        return {"gpu": self.gpu_interval_s, "processes": processes, **self.gpu.read_intervals()}

    def _scan_processes(self) -> ProcessTable:
        """Each device's processes joined with what the host knows of their pids."""
        if self.gpu is None:
            return {}
        table = self.gpu.processes()
        pids = {p.pid for procs in table.values() if procs for p in procs}
        host = self.cpu.describe(pids)
        joined: ProcessTable = {}
        for index, procs in table.items():
            if procs is None:
                joined[index] = None
                continue
            joined[index] = tuple(_join(p, host.get(p.pid)) for p in procs)
        return joined

    def close(self) -> bool:
        """Close the sources once; a sample stuck for CLOSE_WAIT_S leaves them open (see there) and
        the answer is False (the live view says so on stderr once the terminal is back)."""
        if not self._lock.acquire(timeout=CLOSE_WAIT_S):
            self._closed = True  # (a sample that returns later still gives its sample; no new one starts)
            log.warning("a sample has not returned for %.0f s (a hung driver call?): leaving the sources open", CLOSE_WAIT_S)
            return False
        try:
            if self._closed:
                return True
            self._closed = True
            close_cpu = getattr(self.cpu, "close", None)
            if close_cpu is not None:
                close_cpu()
            if self.gpu is not None:
                self.gpu.close()
            return True
        finally:
            self._lock.release()


def _join(proc: GpuProcess, host: HostProcess | None) -> GpuProcess:
    if host is None:  # not visible from this pid namespace: host fields stay None
        return proc
    return replace(proc, name=host.name, user=host.user, command=host.command, cpu_pct=host.cpu_pct)


class Ticker:
    """Deadlines at start + k x interval. Pure scheduling: it never sleeps, it says how long to.

    The tick at ``start`` (k = 0) is due at once; each ``next_delay()`` moves to the next deadline
    and returns the seconds until it, skipping deadlines already past (counted in ``skipped``).
    """

    def __init__(self, interval_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._listeners: list[Callable[[], None]] = []
        self._lock = threading.Lock()
        self.skipped = 0
        self.set_interval(interval_s)

    @property
    def interval_s(self) -> float:
        return self._interval

    def set_interval(self, interval_s: float) -> None:
        """Change the interval and re-anchor: a tick is due now, then every ``interval_s``."""
        if not (interval_s > 0 and math.isfinite(interval_s)):
            raise ValueError(f"interval must be a positive number of seconds, got {interval_s}")
        with self._lock:  # next_delay runs in the sampling thread
            self._interval = interval_s
            self._start = self._clock()
            self._k = 0
        for wake in list(self._listeners):
            wake()

    def next_delay(self) -> float:
        with self._lock:
            now = self._clock()
            k = self._k + 1
            behind = (now - self._start) / self._interval
            if k < behind:  # deadline k has passed: go to the first one still ahead
                k_next = math.ceil(behind)
                self.skipped += k_next - k
                k = k_next
            self._k = k
            return max(0.0, self._start + k * self._interval - now)

    @property
    def deadline(self) -> float:
        """The clock reading the current tick is due at."""
        return self._start + self._k * self._interval

    def add_listener(self, wake: Callable[[], None]) -> None:
        """``wake()`` is called on every ``set_interval`` (so a sleeping runner can re-plan)."""
        self._listeners.append(wake)

    def remove_listener(self, wake: Callable[[], None]) -> None:
        self._listeners.remove(wake)


async def run(
    sampler: Produces[T],
    ticker: Ticker | float,
    on_sample: Callable[[T], Awaitable[None] | None],
    *,
    first: concurrent.futures.Future[T] | None = None,
    batch_s: float = 0.0,
    after_batch: Callable[[], None] | None = None,
) -> None:
    """Sample forever on ``ticker``'s deadlines until cancelled.

    ``sampler.sample()`` runs in a thread of this run's own, which also sleeps until each
    deadline, so blocking NVML calls never hold the event loop and a tick costs the loop no timer
    and no thread hand-off of its own (each woke it twice, ~0.2 ms of CPU a tick on a VM). The
    samples reach the loop in batches, at most one every ``batch_s`` (a batch is due that long
    after the last one; 0: every sample at once): ``on_sample`` for each in order (awaited if it
    is a coroutine), then ``after_batch()``. At 10 Hz and the TUI's 0.5 s frames the loop wakes
    for two batches of five a second, not for 20 wake-ups. A ``ticker.set_interval`` (the TUI's
    +/- keys) wakes the thread: a tick at once, then the new pace. ``first``: the first tick's
    sample, already being taken (``LiveFeed.prefetch``). An exception ``sampler.sample()`` raises
    ends the run, raised here.
    """
    if not isinstance(ticker, Ticker):
        ticker = Ticker(ticker)
    loop = asyncio.get_running_loop()
    inbox: collections.deque[T | _Failed] = collections.deque()
    arrived = asyncio.Event()
    thread = _SamplingThread(sampler, ticker, inbox, lambda: loop.call_soon_threadsafe(arrived.set), first, batch_s)
    thread.start()
    try:
        while True:
            await arrived.wait()
            arrived.clear()
            while inbox:
                sample = inbox.popleft()
                if isinstance(sample, _Failed):
                    raise sample.error
                result = on_sample(sample)
                if inspect.isawaitable(result):
                    await result
            if after_batch is not None:
                after_batch()
    finally:
        thread.stop()
        # cancelled (a pause, the end): what was taken and not yet handed over still goes to
        # on_sample, then after_batch (a sample still being taken when the thread stops is dropped)
        drained = False
        while inbox:
            sample = inbox.popleft()
            if not isinstance(sample, _Failed):
                drained = True
                result = on_sample(sample)
                if inspect.iscoroutine(result):  # cannot be awaited while cancelled
                    result.close()
        if drained and after_batch is not None:
            after_batch()


class _Failed:
    """What ``sampler.sample()`` raised in the sampling thread, handed to the loop to raise."""

    def __init__(self, error: BaseException) -> None:
        self.error = error


class _SamplingThread(threading.Thread, Generic[T]):
    """``run``'s thread: samples on the ticker's deadlines into ``inbox`` and calls ``signal``
    (from this thread) when a batch is due."""

    def __init__(
        self,
        sampler: Produces[T],
        ticker: Ticker,
        inbox: collections.deque[T | _Failed],
        signal: Callable[[], object],
        first: concurrent.futures.Future[T] | None,
        batch_s: float,
    ) -> None:
        super().__init__(name="gputop-sampling", daemon=True)
        self._sampler, self._ticker, self._inbox = sampler, ticker, inbox
        self._signal, self._first, self._batch_s = signal, first, batch_s
        self._stopped = threading.Event()
        self._wake = threading.Event()  # set_interval, or stop
        ticker.add_listener(self._wake.set)

    def stop(self) -> None:
        self._stopped.set()
        self._ticker.remove_listener(self._wake.set)
        self._wake.set()

    def _tell(self) -> None:
        try:
            self._signal()
        except RuntimeError:  # the loop has closed under us (the app has ended): stop here
            self._stopped.set()

    def run(self) -> None:
        sent_at = -math.inf  # the last batch's signal
        held = False  # samples in the inbox not yet signalled
        try:
            while not self._stopped.is_set():
                if self._first is not None:
                    sample, self._first = self._first.result(), None
                else:
                    sample = self._sampler.sample()
                if self._stopped.is_set():
                    return
                self._wake.clear()  # a set_interval during that sample: this was its tick now
                if self._stopped.is_set():  # (a stop's wake, just cleared)
                    return
                self._inbox.append(sample)
                held = True
                deadline = time.monotonic() + self._ticker.next_delay()
                while True:  # until the next tick: signal the batch when it is due
                    now = time.monotonic()
                    if held and now - sent_at >= self._batch_s:
                        sent_at, held = now, False
                        self._tell()
                        if self._stopped.is_set():
                            return
                    if now >= deadline:
                        break
                    until = deadline if not held else min(deadline, sent_at + self._batch_s)
                    if self._wake.wait(max(0.0, until - now)):
                        self._wake.clear()
                        if self._stopped.is_set():
                            return
                        break  # a new interval: a tick is due now
        except BaseException as exc:  # the run raises it, as a sample taken on the loop would
            if not self._stopped.is_set():
                self._inbox.append(_Failed(exc))
                self._tell()


def iter_samples(
    sampler: SupportsSample,
    interval_s: float,
    duration_s: float | None = None,
    *,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> Iterator[Sample]:
    """Samples on drift-free deadlines, for the headless recorder.

    With ``duration_s``, every deadline from the start up to and including start + duration_s
    yields one sample (10 s at 1 s gives 11 samples spanning 10 s); without, it runs until the
    consumer stops.
    """
    ticker = Ticker(interval_s, clock)
    end = None if duration_s is None else clock() + duration_s
    while True:
        yield sampler.sample()
        delay = ticker.next_delay()
        if end is not None and ticker.deadline > end + 1e-9:
            return
        sleep(delay)


def open_real(process_interval_s: float = 2.0) -> Sampler:
    """The real sources: psutil for the host, every vendor's GPUs (absent GPUs are a reason, not
    an error). The commands are handed this (or a test's stub); they never build sources."""
    from gputop.sources.cpu import CpuSource
    from gputop.sources.vendors import open_gpus

    gpu, reason = open_gpus()
    return Sampler(CpuSource(), gpu, gpu_unavailable=reason, process_interval_s=process_interval_s)


class OpenedOnFirstSample:
    """A sampler opened by its first ``sample()``, in whichever thread asks first.

    The live view hands this to its first-sample thread (``LiveFeed.prefetch``), so the sources'
    start, NVML's init above all (a GPU without persistence mode is brought up by it, which can
    take seconds), runs while Textual is imported instead of before: NVML's calls block in the
    driver without the GIL. An open that raises is that sample's error (the next sample tries
    again). ``close()`` never waits for an open still under way: that open's sampler is closed
    by the thread that made it.
    """

    def __init__(self, open_sampler: Callable[[], SamplerLike] = open_real) -> None:
        self._open = open_sampler
        self._sampler: SamplerLike | None = None
        self._lock = threading.Lock()  # _sampler and _closed
        self._opening = threading.Lock()  # one open at a time
        self._closed = False

    def sample(self) -> Sample:
        return self._get().sample()

    def _get(self) -> SamplerLike:
        sampler = self._current()
        if sampler is not None:
            return sampler
        with self._opening:
            sampler = self._current()  # opened by another thread meanwhile?
            if sampler is not None:
                return sampler
            sampler = self._open()
            if self._keep(sampler):
                return sampler
            sampler.close()  # closed while it opened
            raise RuntimeError("Sampler is closed")

    def _current(self) -> SamplerLike | None:
        with self._lock:
            if self._closed:
                raise RuntimeError("Sampler is closed")
            return self._sampler

    def _keep(self, sampler: SamplerLike) -> bool:
        with self._lock:
            if not self._closed:
                self._sampler = sampler
            return not self._closed

    def driver_time(self) -> tuple[float, int] | None:
        """The opened sampler's ``Sampler.driver_time()`` (None before it opened)."""
        with self._lock:
            sampler = self._sampler
        driver_time = getattr(sampler, "driver_time", None)
        return None if driver_time is None else driver_time()

    def close(self) -> bool:
        """False where the sampler's close gave up on a stuck sample (``Sampler.close``)."""
        with self._lock:
            self._closed = True
            sampler, self._sampler = self._sampler, None
        return sampler is None or sampler.close() is not False
