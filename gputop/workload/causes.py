"""Why a straggler's own work is slow: its host thread, its memory or its GPU beside the other
ranks' (pure). gputop.workload.ranks names the straggler (the rank with the most own work a step)
and its reason "data loader" where its data-wait share leads the others'; otherwise the first of
these that holds, in this order, else "compute":

1. **host CPU**: its main thread (tid = pid, from the readings of the job's processes that
   gputop takes about every second: ``/proc/PID/task/PID/schedstat``, gputop.workload.procs) waited
   in the run queue (runnable, no CPU: contention, an affinity to busy cores, a cgroup's CPU
   quota) for longer a step than the others' median, by at least HOST_OF_LEAD of its lead in own
   work a step (queued share of the window's time x its mean step), over at least HOST_MIN_S of
   readings. The evidence names the cores it ran on beside the others'. Else, where its GPU's
   near CPUs are known (NVML's CPU affinity) and every core it ran on is far from them while each
   other rank ran only near its own: "host CPU" too, placed on the far NUMA node.
2. **GPU memory (allocator retries)**: its CUDA caching allocator retried (freed its cache and
   allocated again: ``torch.cuda.memory_stats()["num_alloc_retries"]``, read by the hooks about
   every second only where CUDA is already initialised in that process, never initialising it)
   at least RETRIES_MIN times over its steps while the others' median is at most RETRIES_OTHERS
   of that.
3. **GPU clocks**: its GPU (tied to the rank by its hello's UUID, else its ``cuda:N`` ordinal,
   never by pid; each GPU's readings over the steps as medians, ``GpuWindow``) runs its SM clock
   below the others' median by CLOCK_SHORT or more, with what held them (power cap, too hot,
   ...: the driver's clock event reasons, the share of samples each held them; its temperature
   too where it is HOTTER_C above theirs);
4. **GPU work**: else its SM activity above theirs by BUSIER_POINTS or more (its GPU does more
   per step: uneven batches, sequence lengths, a model split unevenly).

Nothing else is guessed: where none holds, or what it needs is not known (a CPU rank has no GPU
readings, a rank whose scheduler times could not be read has no host reading, a job without
CUDA no allocator count: n/a), the reason stays "compute" (its own work outside data wait).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterable, Mapping, Sequence

from gputop import format as fmt
from gputop.model import JobUsage, Sample
from gputop.workload import events, insight, rates

CLOCK_SHORT = 0.10  # its SM clock below the others' median by this share
BUSIER_POINTS = 10.0  # its SM activity above the others' median by this many points
HOTTER_C = 5.0  # its temperature named beside its clocks where it is this much above the others'
HELD_SHARE = 0.2  # a clock event reason named where it held the clocks this share of samples
HOST_OF_LEAD = 0.5  # its extra wait for a CPU a step accounts for at least this share of its lead
HOST_MIN_S = 2.0  # host readings over at least this much time, or no host reason
RETRIES_MIN = 3  # allocator retries over its steps, at least
RETRIES_OTHERS = 0.25  # ... while the other ranks' median is at most this share of its count


@dataclass(frozen=True, slots=True)
class GpuWindow:
    """One GPU over a window of samples: medians, and how often each reason held its clocks."""

    index: int
    samples: int
    sm_clock_mhz: float | None
    sm_active_pct: float | None
    temp_c: float | None
    power_w: float | None
    held: Mapping[str, float]  # clock event reason -> share of the samples that said it
    near_cpus: frozenset[int] | None = None  # the CPUs NVML calls near it (None: not known)


def window(samples: Sequence[Sample], device: str | None, device_uuid: str | None, begin_ns: int, end_ns: int) -> GpuWindow | None:
    """The readings of the GPU a rank ran on (``device``, ``device_uuid``: its hello's) between
    ``begin_ns`` and ``end_ns``; None on the CPU or where that GPU gave no sample."""
    if device is None or not device.startswith("cuda"):
        return None
    mine = [g for g in (insight.job_gpu(s.gpus, device, device_uuid, {}) for s in samples if begin_ns <= s.ts_ns <= end_ns) if g]
    read = [g for g in mine if not g.lost]
    if not read:
        return None
    reasons = [g.clock_event_reasons for g in read if g.clock_event_reasons is not None]
    counts: dict[str, int] = {}
    for words in reasons:
        for word in words:
            counts[word] = counts.get(word, 0) + 1
    held = {word: n / len(reasons) for word, n in counts.items()}
    return GpuWindow(
        index=read[0].info.index,
        samples=len(read),
        sm_clock_mhz=rates.median(g.sm_clock_mhz for g in read),
        sm_active_pct=rates.median(g.sm_active_pct for g in read),
        temp_c=rates.median(g.temp_c for g in read),
        power_w=rates.median(g.power_w for g in read),
        held=held,
        near_cpus=frozenset(read[0].info.cpu_affinity) if read[0].info.cpu_affinity else None,
    )


def rank_gpus(samples: Sequence[Sample], devices: Mapping[int, Mapping[str, Any]], begin_ns: int, end_ns: int) -> dict[int, GpuWindow]:
    """Each rank's GPU over the window (``devices``: rank -> its hello), where it is known."""
    out = {}
    for rank, hello in devices.items():
        device, uuid = hello.get("device"), hello.get("device_uuid")
        found = window(samples, device if isinstance(device, str) else None, uuid if isinstance(uuid, str) else None, begin_ns, end_ns)
        if found is not None:
            out[rank] = found
    return out


def gpu_cause(rank: int, mine: GpuWindow, others: Sequence[GpuWindow]) -> tuple[str, str] | None:
    """``(reason, evidence)`` where the straggler's GPU stands apart from the others' (see the
    module's doc); None where it does not, or cannot be told."""
    if not others:
        return None
    clock = rates.median(o.sm_clock_mhz for o in others)
    if mine.sm_clock_mhz is not None and clock and mine.sm_clock_mhz <= (1.0 - CLOCK_SHORT) * clock:
        held = sorted(((share, word) for word, share in mine.held.items() if share >= HELD_SHARE), reverse=True)
        why = ", ".join(f"{fmt.reasons((word,))} {100 * share:.0f} % of the time" for share, word in held) or "no reason the driver gave"
        temp = rates.median(o.temp_c for o in others)
        hotter = mine.temp_c is not None and temp is not None and mine.temp_c - temp >= HOTTER_C
        hot = f"; it runs at {fmt.celsius(mine.temp_c)} against {fmt.celsius(temp)}" if hotter else ""
        return (
            "GPU clocks",
            f"rank {rank}'s GPU {mine.index} runs its SMs at {fmt.mhz(mine.sm_clock_mhz)} against {fmt.mhz(clock)} "
            f"(median of the other ranks' GPUs), held by: {why}{hot}",
        )
    busy = rates.median(o.sm_active_pct for o in others)
    if mine.sm_active_pct is not None and busy is not None and mine.sm_active_pct - busy >= BUSIER_POINTS:
        return (
            "GPU work",
            f"rank {rank}'s GPU {mine.index} has its SMs active {fmt.pct(mine.sm_active_pct)} of the time against "
            f"{fmt.pct(busy)} (median of the other ranks' GPUs): more work a step (uneven batches or sequence lengths?)",
        )
    return None


# ---- the host thread -----------------------------------------------------------------------------

# one reading of the job's processes: (its interval in s, pid -> (main thread's s on a core, s
# queued for one, the cores its threads ran on)), where the interval and the pid's times are known
Reading = tuple[float, Mapping[int, tuple[float, float, frozenset[int]]]]


@dataclass(frozen=True, slots=True)
class HostWindow:
    """A rank's main thread over a window of readings: totals, so its shares are over the time."""

    readings: int
    interval_s: float  # the time the readings cover
    run_s: float  # on a core
    queued_s: float  # runnable, waiting in the run queue for a core
    cores: frozenset[int]  # the cores its threads ran on

    @property
    def queued_share(self) -> float:
        return self.queued_s / self.interval_s


def reading_of(job: JobUsage) -> Reading | None:
    """A live reading (gputop.workload.procs) as a ``Reading``; None for the first (no interval)."""
    if not job.interval_s:
        return None
    return (
        job.interval_s,
        {
            p.pid: (p.main_run_s, p.main_queued_s, p.cores)
            for p in job.processes
            if p.main_run_s is not None and p.main_queued_s is not None
        },
    )


def recorded_reading(args: Mapping[str, Any]) -> Reading | None:
    """A recorded ``job`` instant's args as a ``Reading``; None where it has no interval (the
    first, or a trace from before these were written)."""
    interval = events.number(args.get("interval_s"))
    listed = args.get("processes")
    if not interval or not isinstance(listed, list):
        return None
    out = {}
    for p in listed:
        if not isinstance(p, dict) or not isinstance(p.get("pid"), int):
            continue
        run, queued = events.number(p.get("main_run_s")), events.number(p.get("main_queued_s"))
        cores = p.get("cores")
        if run is not None and queued is not None:
            out[p["pid"]] = (run, queued, frozenset(c for c in cores if isinstance(c, int)) if isinstance(cores, list) else frozenset())
    return interval, out


def host_window(readings: Iterable[Reading], pid: int) -> HostWindow | None:
    """``pid``'s main thread over the readings that measured it; None where none did."""
    mine = [(interval, times[pid]) for interval, times in readings if pid in times]
    if not mine:
        return None
    return HostWindow(
        readings=len(mine),
        interval_s=sum(i for i, _ in mine),
        run_s=sum(t[0] for _, t in mine),
        queued_s=sum(t[1] for _, t in mine),
        cores=frozenset().union(*(t[2] for _, t in mine)),
    )


def rank_hosts(readings: Sequence[Reading], pids: Mapping[int, int | None]) -> dict[int, HostWindow]:
    """Each rank's host thread over the readings (``pids``: rank -> its process), where measured."""
    out = {}
    for rank, pid in pids.items():
        found = None if pid is None else host_window(readings, pid)
        if found is not None and found.interval_s > 0:
            out[rank] = found
    return out


def host_cause(
    rank: int, lead_s: float, step_s: Mapping[int, float], hosts: Mapping[int, HostWindow], gpus: Mapping[int, GpuWindow]
) -> tuple[str, str] | None:
    """``(reason, evidence)`` where the straggler's host thread explains its lead (see the module's
    doc); ``lead_s``: its own work a step less the others' median; ``step_s``: each rank's mean step."""
    mine = hosts.get(rank)
    others = {r: h for r, h in hosts.items() if r != rank and r in step_s}
    if mine is None or rank not in step_s or not others or lead_s <= 0 or mine.interval_s < HOST_MIN_S:
        return _far_cause(rank, hosts, gpus)
    per_step = {r: h.queued_share * step_s[r] for r, h in {**others, rank: mine}.items()}
    theirs = rates.median(v for r, v in per_step.items() if r != rank) or 0.0
    extra = per_step[rank] - theirs
    if extra < HOST_OF_LEAD * lead_s:
        return _far_cause(rank, hosts, gpus)
    share = rates.median(h.queued_share for h in others.values()) or 0.0
    cores = frozenset().union(*(h.cores for h in others.values()))
    return (
        "host CPU",
        f"rank {rank}'s main thread waited for a CPU (runnable, in the run queue) {fmt.pct(100 * mine.queued_share)} "
        f"of the time, {1e3 * per_step[rank]:.3g} ms a step, against {fmt.pct(100 * share)} ({1e3 * theirs:.3g} ms a step; "
        f"median of the other ranks) over {mine.interval_s:.0f} s: {1e3 * extra:.3g} ms a step more than theirs, for its lead "
        f"of {1e3 * lead_s:.3g} ms a step in own work; it ran on CPUs {_cores(mine.cores)}, the others on CPUs {_cores(cores)} "
        "(CPUs shared with other work, an affinity to busy cores, or a CPU quota)",
    )


def _far_cause(rank: int, hosts: Mapping[int, HostWindow], gpus: Mapping[int, GpuWindow]) -> tuple[str, str] | None:
    """Its threads ran only far from its GPU's CPUs while every other rank ran only near its own."""
    mine, gpu = hosts.get(rank), gpus.get(rank)
    if mine is None or gpu is None or gpu.near_cpus is None or not mine.cores or mine.cores & gpu.near_cpus:
        return None
    others = [(h, gpus.get(r)) for r, h in hosts.items() if r != rank]
    if not others or not all(g is not None and g.near_cpus and h.cores and h.cores <= g.near_cpus for h, g in others):
        return None
    return (
        "host CPU",
        f"rank {rank} ran on CPUs {_cores(mine.cores)}, none near its GPU {gpu.index} (near: CPUs {_cores(gpu.near_cpus)}: "
        "another NUMA node), while the other ranks ran near theirs. Pin it near: taskset -c "
        f"{fmt.core_ranges(sorted(gpu.near_cpus))}",
    )


def _cores(cores: frozenset[int]) -> str:
    return fmt.core_ranges(sorted(cores)) if cores else "n/a"


# ---- memory -----------------------------------------------------------------------------------------


def memory_cause(rank: int, retries: Mapping[int, int | None]) -> tuple[str, str] | None:
    """``(reason, evidence)`` where the straggler's allocator retried while the others' did not
    (``retries``: each rank's retries over its steps, None where not read)."""
    mine = retries.get(rank)
    theirs = [v for r, v in retries.items() if r != rank and v is not None]
    if mine is None or not theirs or mine < RETRIES_MIN:
        return None
    median = rates.median(theirs) or 0.0
    if median > RETRIES_OTHERS * mine:
        return None
    return (
        "GPU memory (allocator retries)",
        f"rank {rank}'s CUDA caching allocator retried {mine} times over its steps (freed its cache to allocate again: "
        f"a synchronizing cudaFree), the other ranks' {median:g} (median); its memory is near full "
        "(a larger batch or sequence on that rank, fragmentation)",
    )
