"""Sampler joins the sources; Ticker keeps deadlines on a grid; the runners keep NVML off the loop."""

import asyncio
import threading
import time

import pytest

from gputop.model import CpuSample, GpuInfo, GpuProcess, GpuSample
from gputop.sampler import OpenedOnFirstSample, Sampler, Ticker, iter_samples, run
from gputop.sources.cpu import HostProcess
from gputop.sources.nvml import gpm
from gputop.view.feed import LiveFeed

pytestmark = pytest.mark.unit


def info(index):
    return GpuInfo(
        index=index,
        name="H100",
        uuid=f"GPU-{index}",
        pci_bus_id=None,
        architecture="Hopper",
        sm_count=132,
        mem_bus_width_bits=None,
        max_mem_clock_mhz=None,
        peak_dram_bw_bytes_per_s=None,
        driver_version=None,
        cuda_version=None,
    )


CPU = CpuSample(
    cpu_util_pct=5.0, core_util_pct=(5.0, 5.0), core_freq_mhz=(None, None), cpu_power_w=None, ram_used_bytes=1, ram_total_bytes=2, load1=0.1
)


class StubCpu:
    def __init__(self, visible):
        self.visible = visible  # pid -> HostProcess
        self.described = []

    def sample(self):
        return CPU

    def describe(self, pids):
        pids = set(pids)
        self.described.append(pids)
        return {p: self.visible[p] for p in pids if p in self.visible}


class StubGpu:
    """The NvmlSource surface the sampler uses: two devices, the second without a process table."""

    def __init__(self):
        self.devices = (info(0), info(1))
        self.lost = set()
        self.process_calls = 0
        self.closed = 0
        self.table = {
            0: (
                GpuProcess(pid=100, gpu_index=0, kind="compute", gpu_mem_bytes=1 << 30),
                GpuProcess(pid=200, gpu_index=0, kind="compute", gpu_mem_bytes=2 << 30),
            ),
            1: None,
        }

    def sample(self, processes=None):  # as NvmlSource: a lost device gets no processes
        table = processes or {}
        return tuple(
            GpuSample(info=d, lost=True) if d.index in self.lost else GpuSample(info=d, sm_active_pct=50.0, processes=table.get(d.index))
            for d in self.devices
        )

    def processes(self):
        self.process_calls += 1
        return self.table

    def close(self):
        self.closed += 1


class FakeClock:
    def __init__(self, t=1000.0):
        self.t = t

    def __call__(self):
        return self.t


HOST = {100: HostProcess(name="python", user="ada", command="python train.py", cpu_pct=97.0)}


def test_no_gpu_gives_the_reason():
    s = Sampler(StubCpu({}), None, gpu_unavailable="NVIDIA driver not loaded")
    before = time.time_ns()
    sample = s.sample()
    assert before <= sample.ts_ns <= time.time_ns()
    assert sample.cpu is CPU and sample.gpus == () and sample.gpu_unavailable == "NVIDIA driver not loaded"


def test_processes_are_joined_with_the_host():
    cpu, gpu = StubCpu(HOST), StubGpu()
    sample = Sampler(cpu, gpu).sample()
    assert sample.gpu_unavailable is None
    g0, g1 = sample.gpus
    seen, hidden = sorted(g0.processes, key=lambda p: p.pid)
    assert (seen.pid, seen.name, seen.user, seen.command, seen.cpu_pct) == (100, "python", "ada", "python train.py", 97.0)
    assert seen.gpu_mem_bytes == 1 << 30
    assert (hidden.pid, hidden.name, hidden.user, hidden.cpu_pct) == (200, None, None, None)  # other pid namespace
    assert g1.processes is None  # not readable on that device
    assert cpu.described == [{100, 200}]


def test_process_table_is_scanned_only_every_process_interval():
    clock, gpu = FakeClock(), StubGpu()
    s = Sampler(StubCpu(HOST), gpu, process_interval_s=2.0, clock=clock)
    first = s.sample()
    clock.t += 1.0
    gpu.table = {0: (), 1: None}
    second = s.sample()
    assert gpu.process_calls == 1
    assert second.gpus[0].processes == first.gpus[0].processes  # reused between scans
    clock.t += 1.0
    third = s.sample()
    assert gpu.process_calls == 2 and third.gpus[0].processes == ()


def test_gpus_are_read_at_most_every_gpu_interval_and_carried_as_the_same_objects():
    """At 100 Hz the GPUs are read every ~0.1 s; the samples between hold the very same
    GpuSample objects (what the trace writer keys on), and the CPU is read at every tick."""
    clock, gpu = FakeClock(0.0), StubGpu()
    reads = []
    read = gpu.sample
    gpu.sample = lambda processes=None: reads.append(clock.t) or read(processes)
    s = Sampler(StubCpu({}), gpu, process_interval_s=3600, clock=clock)
    samples = []
    for k in range(101):  # 1 s at 100 Hz
        clock.t = k / 100
        samples.append(s.sample())
    assert len(samples) == 101 and 10 <= len(reads) <= 12  # every 9th or 10th tick (0.01 s early is due)
    assert all(0.089 < b - a < 0.101 for a, b in zip(reads, reads[1:]))
    assert gpm.MIN_PAIR_S - gpm.PAIR_SLACK_S < 0.089  # each read far enough from the last for a GPM pair
    assert samples[1].gpus is samples[0].gpus and samples[1].gpus[0] is samples[0].gpus[0]
    assert samples[10].gpus is not samples[0].gpus


def test_at_10_hz_every_tick_reads_the_gpus_even_a_little_early():
    clock, gpu = FakeClock(1000.0), StubGpu()
    calls = []
    read = gpu.sample
    gpu.sample = lambda processes=None: calls.append(1) or read(processes)
    s = Sampler(StubCpu({}), gpu, process_interval_s=3600, clock=clock)
    late = [0.0, 0.019, 0.0, 0.004, 0.011, 0.0, 0.002]  # each tick's lateness behind its deadline
    for k in range(50):
        clock.t = 1000.0 + 0.1 * k + late[k % len(late)]
        s.sample()
    assert len(calls) == 50  # a late tick then a punctual one (0.081 s apart) still reads


def test_the_process_table_is_scanned_only_with_a_gpu_read():
    """A scan between two reads would force a read there: a GPM pair too short to measure."""
    clock, gpu = FakeClock(0.0), StubGpu()
    reads = []
    read = gpu.sample
    gpu.sample = lambda processes=None: reads.append(clock.t) or read(processes)
    s = Sampler(StubCpu(HOST), gpu, process_interval_s=0.25, clock=clock)
    for k in range(101):
        clock.t = k / 100
        s.sample()
    assert all(b - a > 0.085 for a, b in zip(reads, reads[1:]))
    assert gpu.process_calls >= 3


def test_lost_gpu_shows_no_processes():
    gpu = StubGpu()
    gpu.lost = {0}
    g0, _ = Sampler(StubCpu(HOST), gpu).sample().gpus
    assert g0.lost and g0.processes is None


def test_close_closes_the_gpu_once_and_stops_sampling():
    gpu = StubGpu()
    s = Sampler(StubCpu({}), gpu)
    s.close()
    s.close()
    assert gpu.closed == 1
    with pytest.raises(RuntimeError):
        s.sample()


def test_close_does_not_wait_for_ever_on_a_sample_stuck_in_the_driver(monkeypatch, caplog):
    """A GPU whose driver call never returns held the sampler's lock, and the quit hung in
    close() for ever. Now close gives up after CLOSE_WAIT_S, leaves the stuck source open (not
    closed under a call in progress) and no new sample starts."""
    from gputop import sampler as sampling

    monkeypatch.setattr(sampling, "CLOSE_WAIT_S", 0.2)
    stuck, release = threading.Event(), threading.Event()

    class HungGpu(StubGpu):
        def sample(self, processes=None):
            stuck.set()
            release.wait(10)
            return super().sample(processes)

    gpu = HungGpu()
    s = OpenedOnFirstSample(lambda: Sampler(StubCpu({}), gpu))  # (as the live view has it)
    worker = threading.Thread(target=s.sample)
    worker.start()
    try:
        assert stuck.wait(5)
        t0 = time.monotonic()
        assert s.close() is False  # (the live view says so on stderr)
        assert time.monotonic() - t0 < 5 and gpu.closed == 0
        assert "has not returned" in caplog.text
    finally:
        release.set()
        worker.join(5)
    with pytest.raises(RuntimeError, match="closed"):
        s.sample()
    assert OpenedOnFirstSample(lambda: Sampler(StubCpu({}), StubGpu())).close() is True  # never opened


# --- Ticker ------------------------------------------------------------------------------------


def test_deadlines_stay_on_the_grid_whatever_each_tick_costs():
    clock = FakeClock(0.0)
    ticker = Ticker(1.0, clock)
    starts = []
    for cost in (0.3, 0.05, 0.9, 0.0, 0.7):
        starts.append(clock.t)
        clock.t += cost  # the tick's work
        clock.t += ticker.next_delay()  # the sleep
    assert starts == pytest.approx([0.0, 1.0, 2.0, 3.0, 4.0])
    assert clock.t == pytest.approx(5.0) and ticker.skipped == 0


def test_many_ticks_do_not_accumulate_float_drift():
    clock = FakeClock(0.0)
    ticker = Ticker(0.1, clock)
    for _ in range(10_000):
        clock.t += 0.01
        clock.t += ticker.next_delay()
    assert clock.t == pytest.approx(1000.0, abs=1e-9)


def test_missed_deadlines_are_skipped_not_bursted():
    clock = FakeClock(0.0)
    ticker = Ticker(1.0, clock)
    clock.t += 2.5  # a tick that took two and a half intervals
    assert ticker.next_delay() == pytest.approx(0.5)  # next is t=3, not t=1 and t=2 at once
    assert ticker.skipped == 2
    clock.t += 0.5
    assert ticker.next_delay() == pytest.approx(1.0)


def test_exactly_on_a_deadline_is_not_a_miss():
    clock = FakeClock(0.0)
    ticker = Ticker(1.0, clock)
    clock.t = 1.0
    assert ticker.next_delay() == 0.0 and ticker.skipped == 0


def test_set_interval_reanchors_at_now():
    clock = FakeClock(0.0)
    ticker = Ticker(1.0, clock)
    clock.t += ticker.next_delay()  # t = 1
    clock.t = 1.4
    woken = []
    ticker.add_listener(lambda: woken.append(clock.t))
    ticker.set_interval(0.25)
    assert woken == [1.4]
    assert ticker.next_delay() == pytest.approx(0.25)  # 1.65, not on the old grid
    clock.t = 1.65
    assert ticker.next_delay() == pytest.approx(0.25)
    assert ticker.interval_s == 0.25


@pytest.mark.parametrize("bad", [0, -1, float("inf"), float("nan")])
def test_interval_must_be_positive(bad):
    with pytest.raises(ValueError):
        Ticker(bad)


# --- runners -----------------------------------------------------------------------------------


class CountingSampler:
    def __init__(self, clock=None, cost=0.0):
        self.threads, self.times = [], []
        self.clock, self.cost = clock, cost

    def sample(self):
        self.threads.append(threading.get_ident())
        if self.clock is not None:
            self.times.append(self.clock.t)
            self.clock.t += self.cost
        return len(self.threads)


def test_iter_samples_runs_for_duration_on_the_grid():
    clock = FakeClock(0.0)
    sampler = CountingSampler(clock, cost=0.2)
    slept = []

    def sleep(s):
        slept.append(s)
        clock.t += s

    got = list(iter_samples(sampler, 1.0, duration_s=3.0, clock=clock, sleep=sleep))
    assert got == [1, 2, 3, 4]  # t = 0, 1, 2, 3: the whole span, ends included
    assert sampler.times == pytest.approx([0.0, 1.0, 2.0, 3.0])
    assert slept == pytest.approx([0.8, 0.8, 0.8])


def test_iter_samples_without_duration_runs_until_the_consumer_stops():
    clock = FakeClock(0.0)
    gen = iter_samples(CountingSampler(), 0.5, clock=clock, sleep=lambda s: None)
    assert [next(gen) for _ in range(5)] == [1, 2, 3, 4, 5]


async def test_run_samples_off_the_event_loop():
    sampler = CountingSampler()
    got = []
    enough = asyncio.Event()

    def on_sample(sample):
        got.append((sample, threading.get_ident()))
        if len(got) == 3:
            enough.set()

    task = asyncio.create_task(run(sampler, 0.001, on_sample))
    await asyncio.wait_for(enough.wait(), 10)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    loop_thread = threading.get_ident()
    assert [s for s, _ in got[:3]] == [1, 2, 3]
    assert all(t == loop_thread for _, t in got)  # on_sample runs on the loop
    assert loop_thread not in sampler.threads  # the blocking sample never does


async def test_run_awaits_async_callbacks_and_wakes_on_set_interval():
    sampler = CountingSampler()
    ticker = Ticker(3600.0)  # would sleep an hour after the first sample
    got = []
    arrived = asyncio.Event()

    async def on_sample(sample):
        got.append(sample)
        arrived.set()

    task = asyncio.create_task(run(sampler, ticker, on_sample))
    await asyncio.wait_for(arrived.wait(), 10)
    arrived.clear()
    await asyncio.sleep(0)  # let the runner reach its sleep
    ticker.set_interval(1800.0)  # the +/- keys
    await asyncio.wait_for(arrived.wait(), 10)  # a new tick at once, not in an hour
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert got == [1, 2]


async def test_run_starts_with_the_prefetched_sample_and_then_samples_on():
    """The live view's first sample is taken while Textual starts (LiveFeed.prefetch): the loop
    hands it over first and does not take another for that tick."""
    sampler = CountingSampler()
    feed = LiveFeed(sampler, 3600.0)
    feed.prefetch()
    first = feed.take_first()
    assert first is not None and feed.take_first() is None  # handed over once
    assert first.result(timeout=10) == 1
    got = []
    arrived = asyncio.Event()

    def on_sample(sample):
        got.append(sample)
        arrived.set()

    task = asyncio.create_task(run(feed.guarded, feed.ticker, on_sample, first=first))
    await asyncio.wait_for(arrived.wait(), 10)
    arrived.clear()
    assert got == [1] and len(sampler.threads) == 1  # the prefetched one, no second sample for this tick
    await asyncio.sleep(0)
    feed.set_interval(1800.0)  # a tick at once: now sampled in the loop
    await asyncio.wait_for(arrived.wait(), 10)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert got == [1, 2]


def test_prefetch_returns_a_failed_sample_as_its_exception_and_not_while_paused():
    class Failing:
        def sample(self):
            raise OSError("NVML went away")

    feed = LiveFeed(Failing(), 1.0)
    feed.prefetch()
    first = feed.take_first()
    assert isinstance(first.result(timeout=10), OSError)  # shown by the app, as a tick's error
    paused = LiveFeed(CountingSampler(), 1.0, paused=True)
    paused.prefetch()
    assert paused.take_first() is None
    feed.discard_first()  # nothing left to wait for: returns at once


async def test_run_hands_the_samples_over_in_batches_in_order():
    """batch_s: the loop is woken at most once per batch_s (the TUI's frame), every sample still
    arrives, in order, and after_batch follows each batch."""
    sampler = CountingSampler()
    got, batches = [], []
    enough = asyncio.Event()

    def on_sample(sample):
        got.append(sample)

    def after_batch():
        batches.append((asyncio.get_running_loop().time(), len(got)))
        if len(batches) == 4:
            enough.set()

    task = asyncio.create_task(run(sampler, 0.01, on_sample, batch_s=0.1, after_batch=after_batch))
    await asyncio.wait_for(enough.wait(), 20)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert got == list(range(1, len(got) + 1))  # none lost, none twice, in order
    sizes = [b - a for (_, a), (_, b) in zip([(0, 0)] + batches, batches)]
    assert sizes[0] == 1  # the first sample at once
    assert max(sizes[1:]) >= 3  # then several 10 ms ticks a batch
    gaps = [t2 - t1 for (t1, _), (t2, _) in zip(batches, batches[1:])]
    assert min(gaps) >= 0.09  # never woken faster than batch_s


async def test_run_raises_what_the_sampler_raised_and_its_thread_ends_when_cancelled():
    class Breaks:
        def __init__(self):
            self.n = 0

        def sample(self):
            self.n += 1
            if self.n == 3:
                raise OSError("gone")
            return self.n

    got = []
    with pytest.raises(OSError, match="gone"):
        await asyncio.wait_for(run(Breaks(), 0.001, got.append), 10)
    assert got == [1, 2]

    sampler = CountingSampler()
    task = asyncio.create_task(run(sampler, 0.001, lambda s: None))
    await asyncio.sleep(0.1)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    threads = [t for t in threading.enumerate() if t.name == "gputop-sampling"]
    for t in threads:
        t.join(5)
    assert not any(t.is_alive() for t in threads)
    n = len(sampler.threads)
    await asyncio.sleep(0.05)
    assert len(sampler.threads) == n  # no sampling after the run has ended


async def test_a_new_interval_set_during_a_sample_is_that_sample_s_tick_not_one_more():
    """The +/- keys while a (slow) sample is being taken: the next sample comes an interval
    after, not at once (which gave two samples 30 ms apart, then a gap of two intervals)."""
    started, starts = threading.Event(), []

    class Slow:
        def sample(self):
            starts.append(time.monotonic())
            started.set()
            time.sleep(0.15)
            return len(starts)

    ticker = Ticker(0.6)
    got = []
    task = asyncio.create_task(run(Slow(), ticker, got.append))
    await asyncio.to_thread(started.wait, 10)
    ticker.set_interval(0.6)  # mid-sample
    while len(starts) < 3:
        await asyncio.sleep(0.01)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    gaps = [b - a for a, b in zip(starts, starts[1:])]
    assert 0.45 < gaps[0] < 1.0 and 0.45 < gaps[1] < 1.0, gaps


class Opened:
    """A sampler as an opener makes it: counts its samples, remembers its close."""

    def __init__(self):
        self.samples = 0
        self.closed = False

    def sample(self):
        self.samples += 1
        return "sample"

    def close(self):
        self.closed = True


def test_opened_on_first_sample_opens_in_the_thread_that_samples_first_and_once():
    opened, threads = [], []

    def open_sampler():
        threads.append(threading.current_thread().name)
        opened.append(Opened())
        return opened[-1]

    lazy = OpenedOnFirstSample(open_sampler)
    assert opened == []  # nothing opened by construction (the live view builds it on the main thread)
    worker = threading.Thread(target=lazy.sample, name="first-sample")
    worker.start()
    worker.join()
    assert threads == ["first-sample"]
    assert lazy.sample() == "sample" and len(opened) == 1 and opened[0].samples == 2
    lazy.close()
    assert opened[0].closed
    with pytest.raises(RuntimeError, match="closed"):
        lazy.sample()
    assert len(opened) == 1


def test_an_open_that_raises_is_that_sample_s_error_and_the_next_sample_opens_again():
    calls = []

    def open_sampler():
        calls.append(1)
        if len(calls) == 1:
            raise OSError("psutil could not read /proc")
        return Opened()

    lazy = OpenedOnFirstSample(open_sampler)
    with pytest.raises(OSError, match="psutil"):
        lazy.sample()
    assert lazy.sample() == "sample" and len(calls) == 2


def test_close_does_not_wait_for_an_open_under_way_and_that_open_s_sampler_is_closed():
    """A hung NVML init must not hang the quit: close returns at once, and the sampler the
    open makes later is closed by the thread that made it."""
    started, release, made = threading.Event(), threading.Event(), []

    def open_sampler():
        started.set()
        release.wait(10)
        made.append(Opened())
        return made[-1]

    lazy = OpenedOnFirstSample(open_sampler)
    errors = []

    def first():
        try:
            lazy.sample()
        except RuntimeError as exc:
            errors.append(str(exc))

    worker = threading.Thread(target=first)
    worker.start()
    assert started.wait(5)  # the open is under way
    closing = threading.Thread(target=lazy.close)
    closing.start()
    closing.join(2)
    assert not closing.is_alive()  # close came back while the open still waited
    release.set()
    worker.join(5)
    assert made and made[0].closed and made[0].samples == 0
    assert errors == ["Sampler is closed"]


def test_closed_before_any_sample_never_opens():
    lazy = OpenedOnFirstSample(lambda: pytest.fail("opened"))
    lazy.close()
    with pytest.raises(RuntimeError, match="closed"):
        lazy.sample()
