"""One model of a distributed job: its ranks, each from its own steps, and the job's figures and
its straggler drawn from them (pure: the same for the live view and for ``report``).

A rank is a process of the job whose steps carry a rank (its ``hello`` said which: the launcher's
``RANK``, or ``torch.distributed`` once initialised). A process that never steps (torchrun's
agent, multiprocessing's resource tracker) is the launcher side of the job: no rank, no worker.

Per rank, over its steps after the first (allocation, warm-up): steps/s and samples/s are windowed
rates, the window's steps or samples over its time (never a median of per-step rates); step time
p50/p95; the data-wait share over the steps after warm-up (as the verdict takes it). The job's step
is the straggler's where there is one (ranks in lock-step have one step time, the straggler's
cause), else the slowest rank's (the largest step p50); its samples/s is the sum over the ranks.

An elastic restart (torchrun ``--max-restarts``) starts every rank again in a new process: a
rank's steps are kept apart by process (its attempts, each with the restart count its hello gave),
and its figures are over its latest attempt's steps alone; the earlier attempts are listed with
their steps and how they ended. A process says how it ended at exit (``bye``: the uncaught exception
where there was one); a rank whose process ended without one was killed. The job failed at the
rank whose exception came first.

The straggler: in a job whose ranks step together (DDP: each step ends at the same gradient
all-reduce), a rank's step is its own work plus the time it waits for the others at the collective.
Where every rank's steps say how long it spent inside autograd's backward (the hooks time it), that
wait is read from it: DDP waits for the all-reduce before backward returns (on gloo, and on any
backend that blocks the CPU), so a rank's wait per step = its backward time - the least backward
time of any rank (the one the others wait for spends none). Elsewhere (an older recording, a job
with no backward) the wait is estimated from the one cause measured: a rank whose batch comes later
makes the others wait by the difference (the largest data wait per step of any rank - its own).
Own work per step = mean step time - that wait. The rank with the largest own work is the straggler
when it leads the median of the other ranks by at least STRAGGLER_MIN_SHARE of the job's step, else
there is none (null). Its reason is "data loader" where its data-wait share exceeds the median of
the others' by that share too; else its host thread ("host CPU"), its memory ("GPU memory
(allocator retries)") or its GPU ("GPU clocks", "GPU work"), where that stands apart from the
other ranks' (gputop.workload.causes has those rules and their thresholds); else "compute" (its
forward, backward and optimizer outside data wait), with the figures in the evidence. On NCCL
the all-reduce is waited for on the GPU's stream, not by the CPU: backward returns before it, the
wait is not in its time, and only a data-loader straggler is told apart there.

A rank that stops (``stall``, the live view's flag): a rank is quiet once it has not stepped for
STALL_STEPS of its typical steps (the median of its recent step times) and at least STALL_MIN_S.
Then, among the quiet ranks, those that stopped first (within STALL_APART_STEPS of their typical
steps, or STALL_APART_MIN_S, of the first to stop: the hooks hold steps up to 0.1 s before
writing them) are ``stalled``; quiet ranks that stopped later are ``waiting`` for them (at the
next collective); ranks that still step are ``stepping``; a rank whose process has gone while the
job runs is ``exited``, and the quiet ranks then wait for it. In a job whose ranks step in lock
step (DDP: every step ends at the same all-reduce) they all stop together, and steps alone cannot
tell which one the others wait for: all are called stalled, and the flag says so.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterable, Mapping, Sequence

from gputop import format as fmt
from gputop.model import RankRow, RankStraggler, Sample, WorkloadStep
from gputop.workload import causes, insight, rates, verdict

STRAGGLER_MIN_SHARE = 0.10  # a straggler leads the median of the others by this share of the job's step
LIVE_STRAGGLER_STEPS = 5  # the live view names a straggler once every rank has this many steps
STALL_STEPS = 10  # a rank is quiet after no step for this many of its typical steps ...
STALL_MIN_S = 10.0  # ... and never sooner than this
STALL_APART_STEPS = 3  # quiet ranks that stopped within this many typical steps of the first stopped with it
STALL_APART_MIN_S = 0.5  # ... or within this (a rank's steps reach gputop up to 0.1 s late)


@dataclass(frozen=True, slots=True)
class RankFigures:
    """One rank of a job, from its steps (rates over the steps after its first)."""

    rank: int
    pid: int | None  # its latest process
    steps: int
    samples: int | None  # None where a step's batch could not be seen
    steps_per_s: float | None
    samples_per_s: float | None
    step_p50_s: float | None
    step_p95_s: float | None
    step_mean_s: float | None
    data_wait_share: float | None  # None without a DataLoader
    data_wait_per_step_s: float | None
    device: str | None = None
    backward_per_step_s: float | None = None  # mean time inside autograd's backward (holds DDP's wait)
    local_rank: int | None = None
    world_size: int | None = None
    restart_count: int | None = None  # its latest attempt's (TORCHELASTIC_RESTART_COUNT)
    attempts: tuple[Attempt, ...] = ()  # every process that was this rank, in order; the last is the figures'
    alloc_retries: int | None = None  # its CUDA allocator's retries over its steps after warm-up (None: not read)


@dataclass(frozen=True, slots=True)
class Attempt:
    """One process that was a rank: an elastic restart starts the rank again in a new one."""

    pid: int | None
    restart_count: int | None
    steps: int
    ended: str | None  # "exited", "raised" (error says what), or None: no exit seen (killed, or still running)
    error: str | None = None
    ended_ns: int | None = None


def by_rank(steps: Iterable[WorkloadStep]) -> dict[int, list[WorkloadStep]]:
    """The steps of each rank, in their order; empty for a job without ranks."""
    out: dict[int, list[WorkloadStep]] = {}
    for s in steps:
        if s.rank is not None:
            out.setdefault(s.rank, []).append(s)
    return dict(sorted(out.items()))


def attempts(steps: Sequence[WorkloadStep]) -> list[list[WorkloadStep]]:
    """A rank's steps by process, in the order the processes began stepping (one list without restarts)."""
    out: dict[int | None, list[WorkloadStep]] = {}
    for s in steps:
        out.setdefault(s.pid, []).append(s)
    return sorted(out.values(), key=lambda mine: mine[0].ts_ns)


def attempt(steps: Sequence[WorkloadStep], hello: Mapping[str, Any], bye: Mapping[str, Any] | None) -> Attempt:
    """One process's attempt at a rank, and how it ended (its ``bye``; none seen: None)."""
    error = _text((bye or {}).get("error"))
    return Attempt(
        pid=steps[-1].pid if steps else None,
        restart_count=_int(hello.get("restart_count")),
        steps=len(steps),
        ended=None if bye is None else "raised" if error else "exited",
        error=error,
        ended_ns=_int((bye or {}).get("ts_ns")),
    )


def figures(rank: int, steps: Sequence[WorkloadStep], hello: Mapping[str, Any] | None = None, tried: Sequence[Attempt] = ()) -> RankFigures:
    """One rank's figures from its (latest attempt's) steps and, where it said so, its hello
    (device, local rank); ``tried``: every attempt, this one last."""
    hello = hello or {}
    timed = [s for s in steps if s.step != 1] or list(steps)
    wall = sum(s.wall_s for s in timed)
    counts = [s.samples for s in steps]
    p50, p95 = rates.step_time_percentiles(timed)
    after = insight.measured(steps) or list(steps)
    share = rates.data_wait_share(after)
    waits = [s.data_wait_s for s in after if s.data_wait_s is not None]
    backward = [s.backward_s for s in after if s.backward_s is not None]
    retries = [s.alloc_retries for s in after if s.alloc_retries is not None]
    return RankFigures(
        rank=rank,
        pid=steps[-1].pid if steps else None,
        steps=len(steps),
        samples=None if None in counts else sum(c for c in counts if c is not None),
        steps_per_s=len(timed) / wall if wall > 0 else None,
        samples_per_s=rates.over(timed, None, None).samples_per_s,
        step_p50_s=p50,
        step_p95_s=p95,
        step_mean_s=wall / len(timed) if timed and wall > 0 else None,
        data_wait_share=share,
        data_wait_per_step_s=sum(waits) / len(waits) if waits else None,
        device=_text(hello.get("device")),
        local_rank=_int(hello.get("local_rank")),
        world_size=_int(hello.get("world_size")),
        backward_per_step_s=sum(backward) / len(backward) if backward and len(backward) == len(after) else None,
        restart_count=_int(hello.get("restart_count")),
        attempts=tuple(tried),
        alloc_retries=max(retries) - min(retries) if retries else None,
    )


def model(
    steps: Iterable[WorkloadStep], hellos: Mapping[int, Mapping[str, Any]], byes: Mapping[int, Mapping[str, Any]] | None = None
) -> list[RankFigures]:
    """Every rank's figures (``hellos``, ``byes``: each process's hello and bye by pid)."""
    out = []
    byes = byes or {}
    for rank, mine in by_rank(steps).items():
        split = attempts(mine)
        tried = [attempt(a, _of(hellos, a[-1].pid), byes.get(a[-1].pid) if a[-1].pid is not None else None) for a in split]
        out.append(figures(rank, split[-1], _of(hellos, split[-1][-1].pid), tried))
    return out


def _of(facts: Mapping[int, Mapping[str, Any]], pid: int | None) -> Mapping[str, Any]:
    return facts.get(pid, {}) if pid is not None else {}


def failed(ranks: Sequence[RankFigures]) -> dict[str, Any] | None:
    """The attempt whose uncaught exception came first (where the job broke): ``{rank, pid,
    restart_count, steps, error, exitcode}``, or None where no rank raised."""
    raised = [(a, r.rank) for r in ranks for a in r.attempts if a.ended == "raised"]
    if not raised:
        return None
    first, rank = min(raised, key=lambda x: (x[0].ended_ns or 0, x[1]))
    return {
        "rank": rank,
        "pid": first.pid,
        "restart_count": first.restart_count,
        "steps": first.steps,
        "error": first.error,
        "exitcode": 1,  # Python's exit status after an uncaught exception
    }


def slowest(ranks: Sequence[RankFigures]) -> RankFigures | None:
    """The rank whose step (p50) is the longest: the job's step."""
    timed = [r for r in ranks if r.step_p50_s is not None]
    return max(timed, key=lambda r: (r.step_p50_s, -r.rank)) if timed else None


def job_samples_per_s(ranks: Sequence[RankFigures]) -> float | None:
    """The job's samples/s: the sum of its ranks' (None where one of them is not known)."""
    each = [r.samples_per_s for r in ranks]
    return None if not each or None in each else sum(v for v in each if v is not None)


def collective_wait_s(ranks: Sequence[RankFigures]) -> dict[int, float]:
    """Each rank's wait per step for the others (see the module's doc): from its backward time
    where every timed rank has one, else from the ranks' data waits."""
    timed = [r for r in ranks if r.step_mean_s is not None]
    backward = {r.rank: r.backward_per_step_s for r in timed}
    if timed and None not in backward.values():
        least = min(v for v in backward.values() if v is not None)
        return {rank: (v or 0.0) - least for rank, v in backward.items()}
    waits = {r.rank: r.data_wait_per_step_s or 0.0 for r in timed}
    latest = max(waits.values(), default=0.0)
    return {rank: latest - v for rank, v in waits.items()}


def own_work_s(ranks: Sequence[RankFigures]) -> dict[int, float]:
    """Each rank's own work per step (its step less its wait for the others), where its step time is known."""
    wait = collective_wait_s(ranks)
    return {r.rank: r.step_mean_s - wait[r.rank] for r in ranks if r.step_mean_s is not None}


def straggler(
    ranks: Sequence[RankFigures],
    gpus: Mapping[int, causes.GpuWindow] | None = None,
    hosts: Mapping[int, causes.HostWindow] | None = None,
) -> dict[str, Any] | None:
    """``{rank, reason, evidence}`` of the rank that holds the job back, or None (see the module;
    ``gpus``, ``hosts``: each rank's GPU and main thread over the steps, where known, for a reason
    from its host thread, memory or GPU: gputop.workload.causes)."""
    own = own_work_s(ranks)
    if len(own) < 2:
        return None
    top = max(own, key=lambda r: (own[r], -r))
    others = [v for r, v in own.items() if r != top]
    step = max(r.step_mean_s or 0.0 for r in ranks)
    lead = own[top] - (rates.median(others) or 0.0)
    if step <= 0 or lead < STRAGGLER_MIN_SHARE * step:
        return None
    mine = next(r for r in ranks if r.rank == top)
    shares = [r.data_wait_share for r in ranks if r.rank != top and r.data_wait_share is not None]
    median_share = rates.median(shares)
    if mine.data_wait_share is not None and median_share is not None and mine.data_wait_share - median_share >= STRAGGLER_MIN_SHARE:
        return {
            "rank": top,
            "reason": "data loader",
            "evidence": f"rank {top} waits {100 * mine.data_wait_share:.0f} % of its step for data, "
            f"the other ranks {100 * median_share:.1f} % (median); the others wait for it",
        }
    waits = collective_wait_s(ranks)
    waited = rates.median([v for r, v in waits.items() if r != top]) or 0.0
    how = "in backward, for the all-reduce" if mine.backward_per_step_s is not None else "(from their data waits)"
    evidence = (
        f"rank {top}'s own work is {1e3 * own[top]:.3g} ms a step, the other ranks' "
        f"{1e3 * (rates.median(others) or 0.0):.3g} ms (median), who wait {1e3 * waited:.3g} ms a step for it "
        f"{how}; its data wait is as theirs"
    )
    cause = _cause(top, lead, ranks, gpus or {}, hosts or {})
    if cause is not None:
        return {"rank": top, "reason": cause[0], "evidence": f"{cause[1]}; {evidence}"}
    return {"rank": top, "reason": "compute", "evidence": evidence}


def _cause(
    top: int, lead: float, ranks: Sequence[RankFigures], gpus: Mapping[int, causes.GpuWindow], hosts: Mapping[int, causes.HostWindow]
) -> tuple[str, str] | None:
    """The straggler's cause beyond its data wait: its host thread, its memory, its GPU, in that
    order (gputop.workload.causes)."""
    steps = {r.rank: r.step_mean_s for r in ranks if r.step_mean_s is not None}
    return (
        causes.host_cause(top, lead, steps, hosts, gpus)
        or causes.memory_cause(top, {r.rank: r.alloc_retries for r in ranks})
        or (None if top not in gpus else causes.gpu_cause(top, gpus[top], [g for r, g in gpus.items() if r != top]))
    )


def as_json(r: RankFigures) -> dict[str, Any]:
    """One rank as ``report --json``'s ``workload.ranks`` item."""
    return {
        "rank": r.rank,
        "pid": r.pid,
        "local_rank": r.local_rank,
        "world_size": r.world_size,
        "device": r.device,
        "steps": r.steps,
        "samples": r.samples,
        "steps_per_s": r.steps_per_s,
        "samples_per_s": r.samples_per_s,
        "step_p50_s": r.step_p50_s,
        "step_p95_s": r.step_p95_s,
        "data_wait_share": r.data_wait_share,
        "backward_per_step_s": r.backward_per_step_s,
        "alloc_retries": r.alloc_retries,
        "restart_count": r.restart_count,
        "ended": r.attempts[-1].ended if r.attempts else None,
        "error": r.attempts[-1].error if r.attempts else None,
        "attempts": [
            {"pid": a.pid, "restart_count": a.restart_count, "steps": a.steps, "ended": a.ended, "error": a.error} for a in r.attempts
        ],
    }


def _gpu_json(gpu: causes.GpuWindow | None) -> dict[str, Any] | None:
    """A rank's GPU over its steps, as ``workload.ranks[].gpu`` (null on the CPU or where unknown)."""
    if gpu is None:
        return None
    return {
        "index": gpu.index,
        "sm_clock_mhz": gpu.sm_clock_mhz,
        "sm_active_pct": gpu.sm_active_pct,
        "temp_c": gpu.temp_c,
        "power_w": gpu.power_w,
        "clock_event_reasons": dict(gpu.held),
    }


def _host_json(host: causes.HostWindow | None) -> dict[str, Any] | None:
    """A rank's main thread over its steps, as ``workload.ranks[].host`` (null where not measured)."""
    if host is None:
        return None
    return {
        "queued_share": host.queued_share,
        "run_share": host.run_s / host.interval_s,
        "over_s": host.interval_s,
        "cores": fmt.core_ranges(sorted(host.cores)),
    }


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def recorded_hellos(events: Iterable[Mapping[str, Any]], pid: int, name: str = "hello") -> dict[int, Mapping[str, Any]]:
    """The ``hello`` (or ``bye``) instants on the workload's pid in a trace: each process's facts
    (with the instant's ``ts_ns``), by its pid."""
    out: dict[int, Mapping[str, Any]] = {}
    for event in events:
        args = event.get("args")
        if (
            event.get("name") == name
            and event.get("pid") == pid
            and event.get("ph") == "i"
            and isinstance(args, dict)
            and _int(args.get("pid")) is not None
        ):
            ts = event.get("ts")
            out[args["pid"]] = {**args, "ts_ns": round(ts * 1000)} if isinstance(ts, (int, float)) else args
    return out


def summary(
    steps: Sequence[WorkloadStep],
    hellos: Mapping[int, Mapping[str, Any]],
    samples: Sequence[Sample] = (),
    byes: Mapping[int, Mapping[str, Any]] | None = None,
    jobs: Sequence[tuple[int, Mapping[str, Any]]] = (),
) -> dict[str, Any]:
    """``report``'s keys for a job with ranks (none without): the ranks, the straggler, the job's
    samples/s (the sum over ranks), which rank's step is the job's (and its process: the latest
    attempt), and the rank it failed at (``samples``: the recording's, for each rank's GPU over
    the ranks' steps; ``byes``: how each process ended; ``jobs``: the ``job`` instants, (ts_ns,
    args), for each rank's host thread over the ranks' steps)."""
    ranks = model(steps, hellos, byes)
    return summary_of(ranks, rank_gpus(ranks, steps, hellos, samples), rank_hosts(ranks, steps, jobs))


def rank_hosts(
    ranks: Sequence[RankFigures], steps: Sequence[WorkloadStep], jobs: Sequence[tuple[int, Mapping[str, Any]]]
) -> dict[int, causes.HostWindow]:
    """Each rank's main thread over the readings that fall within the ranks' steps after warm-up."""
    ranked = [s for s in steps if s.rank is not None and s.step > verdict.WARMUP_STEPS]
    if not (ranked and jobs):
        return {}
    begin, end = min(s.ts_ns - int(s.wall_s * 1e9) for s in ranked), max(s.ts_ns for s in ranked)
    readings = [r for ts, args in jobs if (r := causes.recorded_reading(args)) is not None and begin <= ts - int(r[0] * 1e9) and ts <= end]
    return causes.rank_hosts(readings, {r.rank: r.pid for r in ranks})


def rank_gpus(
    ranks: Sequence[RankFigures], steps: Sequence[WorkloadStep], hellos: Mapping[int, Mapping[str, Any]], samples: Sequence[Sample]
) -> dict[int, causes.GpuWindow]:
    """Each rank's GPU over the ranks' steps, from a recording's samples, where known."""
    ranked = [s for s in steps if s.rank is not None and s.step != 1]
    if not (ranked and samples):
        return {}
    devices = {r.rank: hellos.get(r.pid, {}) for r in ranks if r.pid is not None}
    begin = min(s.ts_ns - int(s.wall_s * 1e9) for s in ranked)
    return causes.rank_gpus(samples, devices, begin, max(s.ts_ns for s in ranked))


def summary_of(
    ranks: Sequence[RankFigures],
    gpus: Mapping[int, causes.GpuWindow] | None = None,
    hosts: Mapping[int, causes.HostWindow] | None = None,
) -> dict[str, Any]:
    """``summary``'s keys for ranks already modelled (those of several nodes' traces together;
    ``gpus``, ``hosts``: each rank's GPU and main thread, where known)."""
    if not ranks:
        return {}
    gpus, hosts = gpus or {}, hosts or {}
    waits = collective_wait_s(ranks)
    lagging = straggler(ranks, gpus, hosts)
    # ranks in lock-step share one step time: the straggler's is the job's (its verdict the job's)
    slow = next(r for r in ranks if r.rank == lagging["rank"]) if lagging else slowest(ranks)
    return {
        "ranks": [
            {**as_json(r), "wait_per_step_s": waits.get(r.rank), "gpu": _gpu_json(gpus.get(r.rank)), "host": _host_json(hosts.get(r.rank))}
            for r in ranks
        ],
        "straggler": lagging,
        "job_samples_per_s": job_samples_per_s(ranks),
        "job_step_rank": None if slow is None else slow.rank,
        "job_step_pid": None if slow is None else slow.pid,
        "first_failure": failed(ranks),
    }


def text_lines(w: Mapping[str, Any]) -> list[str]:
    """The per-rank table, the job's figures and the straggler, as report's text lines."""
    if not w.get("ranks"):
        return []

    def num(value: float | None, spec: str, scale: float = 1.0, unit: str = "") -> str:
        return "n/a" if value is None else format(value * scale, spec) + unit

    lines = [
        f"  {'rank':>4} {'pid':>8} {'device':<8} {'steps':>6} {'samples':>8} {'steps/s':>8} "
        f"{'samples/s':>10} {'step p50':>9} {'data wait':>9} {'waits for others':>16}"
    ]
    for r in w["ranks"]:
        samples = "n/a" if r["samples"] is None else str(r["samples"])
        lines.append(
            f"  {r['rank']:>4} {r['pid'] or '':>8} {r['device'] or 'n/a':<8} {r['steps']:>6} {samples:>8} "
            f"{num(r['steps_per_s'], '.3g'):>8} {num(r['samples_per_s'], ',.1f'):>10} "
            f"{num(r['step_p50_s'], '.3g', 1e3, ' ms'):>9} {num(r['data_wait_share'], '.1f', 100, ' %'):>9} "
            f"{num(r.get('wait_per_step_s'), '.3g', 1e3, ' ms a step'):>16}"
        )
    lines += _attempt_lines(w["ranks"], w.get("first_failure"))
    total = w.get("job_samples_per_s")
    which = "the straggler" if w.get("straggler") else "the slowest"
    step = f"its step is rank {w.get('job_step_rank')}'s ({which})"
    lines.append(f"  job         {num(total, ',.1f')} samples/s (the sum over ranks); {step}")
    s = w.get("straggler")
    lines.append(
        f"  straggler   none (no rank's own work per step leads the others by {100 * STRAGGLER_MIN_SHARE:.0f} % of a step)"
        if s is None
        else f"  straggler   rank {s['rank']} ({s['reason'] or 'cause not measured'}): {s['evidence']}"
    )
    return lines


def _attempt_lines(ranks: Sequence[Mapping[str, Any]], failed: Mapping[str, Any] | None) -> list[str]:
    """A line per rank that restarted or ended without a clean exit, and where the job failed."""
    lines = []
    for r in ranks:
        attempts = r.get("attempts") or []
        if len(attempts) > 1:
            before = ", ".join(f"pid {a['pid']}: {a['steps']} steps, {_ending(a)}" for a in attempts[:-1])
            lines.append(f"  rank {r['rank']} restarted {len(attempts) - 1}x (restart count {r.get('restart_count')}); before: {before}")
        if attempts and attempts[-1]["ended"] != "exited":
            lines.append(f"  rank {r['rank']} (pid {r['pid']}) {_ending(attempts[-1])}")
    if failed is not None:
        lines.append(
            f"  failure     first at rank {failed['rank']} (pid {failed['pid']}, exit {failed['exitcode']}) after "
            f"{failed['steps']} steps: {_short(failed['error'])}"
        )
    return lines


def _ending(a: Mapping[str, Any]) -> str:
    if a["ended"] == "raised":
        return f"raised {_short(a['error'])}"
    return "exited" if a["ended"] == "exited" else "no exit seen (killed, or still running at the end)"


def _short(text: str, width: int = 100) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


def live_samples_per_s(steps: Iterable[WorkloadStep]) -> float | None:
    """The job's samples/s now, from its recent steps: each rank's over its own window, summed
    (a window over the ranks' steps mixed together would give their mean, not their sum)."""
    each = [rates.over(rates.window(mine), None, None).samples_per_s for mine in by_rank(steps).values()]
    return None if not each or None in each else sum(v for v in each if v is not None)


class RunTotalsByRank:
    """Each rank's whole-run totals (``rates.RunTotals``), for a finished job's samples/s: the sum
    of its ranks' (their steps summed together would give their mean)."""

    def __init__(self) -> None:
        self.ranks: dict[int, rates.RunTotals] = {}

    def add(self, step: WorkloadStep) -> None:
        if step.rank is not None:
            self.ranks.setdefault(step.rank, rates.RunTotals()).add(step)

    def samples_per_s(self) -> float | None:
        each = [run.rates(None, None).samples_per_s for run in self.ranks.values()]
        return None if not each or None in each else sum(v for v in each if v is not None)


@dataclass(frozen=True, slots=True)
class RankTotal:
    """One rank's steps and samples since the job began, every attempt's (counters: they only grow)."""

    steps: int
    samples: int | None  # None once one of its steps' batch could not be seen


class RankTotals:
    """Each rank's ``RankTotal`` as its steps come (``gputop serve``'s per-rank counters)."""

    def __init__(self) -> None:
        self._steps: dict[int, int] = {}
        self._samples: dict[int, int | None] = {}

    def add(self, step: WorkloadStep) -> None:
        r = step.rank
        if r is None:
            return
        self._steps[r] = self._steps.get(r, 0) + 1
        had = self._samples.get(r, 0)
        self._samples[r] = None if had is None or step.samples is None else had + step.samples

    def totals(self) -> dict[int, RankTotal]:
        return {r: RankTotal(n, self._samples[r]) for r, n in sorted(self._steps.items())}


# ---- the live view: each rank's row, and a rank that stops --------------------------------------


@dataclass(frozen=True, slots=True)
class Stall:
    """Each rank's state (``stall``) and, where a rank stopped, the flag in words."""

    states: dict[int, str]
    text: str | None


def typical_step_s(steps: Sequence[WorkloadStep]) -> float | None:
    """A rank's typical step: the median time of its steps after its first."""
    walls = [s.wall_s for s in steps]
    return rates.median(walls[1:] or walls)


def quiet_s(steps: Sequence[WorkloadStep], now_ns: int) -> float | None:
    """Seconds since the last of ``steps`` (one series: a job without ranks) where it has stopped
    by ``stall``'s rule (no step for STALL_STEPS of its typical steps, and STALL_MIN_S at least),
    else None."""
    if not steps:
        return None
    age = (now_ns - steps[-1].ts_ns) / 1e9
    return age if age >= max(STALL_STEPS * (typical_step_s(steps) or 0.0), STALL_MIN_S) else None


def job_steps(by_rank: Mapping[int, Sequence[WorkloadStep]]) -> Sequence[WorkloadStep]:
    """The job's step series: its slowest rank's steps (the largest typical step; ``report``
    takes the job's step from that rank too), not every rank's steps mixed into one series."""
    timed = {r: typical_step_s(steps) for r, steps in by_rank.items() if steps}
    if not timed:
        return ()
    return by_rank[max(timed, key=lambda r: (timed[r] or 0.0, -r))]


def _who(ranks: Iterable[int]) -> tuple[str, bool]:
    """("rank 1", singular) or ("ranks 0-2", plural)."""
    mine = sorted(ranks)
    return (f"rank {mine[0]}", True) if len(mine) == 1 else (f"ranks {fmt.core_ranges(mine)}", False)


def stall(by_rank: Mapping[int, Sequence[WorkloadStep]], now_ns: int, exited: Iterable[int] = ()) -> Stall:
    """Each rank's state at ``now_ns`` from its own steps, and the flag where one stopped (the
    module's doc has the rule). ``exited``: the ranks whose process has gone while the job runs."""
    gone = {r for r in exited if by_rank.get(r)}
    last = {r: steps[-1].ts_ns for r, steps in by_rank.items() if steps}
    typical = {r: typical_step_s(by_rank[r]) or 0.0 for r in last}
    states = {r: "exited" if r in gone else "stepping" for r in last}
    quiet = [r for r in last if r not in gone and (now_ns - last[r]) / 1e9 >= max(STALL_STEPS * typical[r], STALL_MIN_S)]
    if not quiet:
        return Stall(states, None)
    first = min(last[r] for r in quiet)
    held = [r for r in quiet if (last[r] - first) / 1e9 <= max(STALL_APART_STEPS * typical[r], STALL_APART_MIN_S)]
    if gone:  # the quiet ranks wait for the rank that has gone
        held = []
    for r in quiet:
        states[r] = "stalled" if r in held else "waiting"
    waiting = [r for r in quiet if r not in held]
    stepping = [r for r, state in states.items() if state == "stepping"]
    age = f"no step for {max(0, (now_ns - first) // 10**9)} s"
    if gone:
        head = f"{_who(gone)[0]}: exited"
        tail = [_verb(waiting, "waits", "wait") + f" ({age})"]
    else:
        head = f"{_who(held)[0]}: {age}"
        tail = [_verb(waiting, "waits", "wait")] if waiting else []
        if not waiting and not stepping and len(held) > 1:
            tail = ["stopped together: which one the others wait for, their steps cannot tell"]
    if stepping:
        tail.append(_verb(stepping, "steps on", "step on"))
    return Stall(states, "; ".join([head, ", ".join(tail)]) if tail else head)


def _verb(ranks: Sequence[int], one: str, many: str) -> str:
    who, single = _who(ranks)
    return f"{who} {one if single else many}"


def rows(
    by_rank: Mapping[int, Sequence[WorkloadStep]],
    hellos: Mapping[int, Mapping[str, Any]],
    now_ns: int,
    *,
    gone_pids: Iterable[int] = (),
    ended: bool = False,
    samples: Sequence[Sample] = (),
    readings: Sequence[causes.Reading] = (),
) -> tuple[tuple[RankRow, ...], RankStraggler | None, str | None]:
    """The live view's ranks from each rank's recent steps (``hellos``: by pid): their rows, the
    straggler (its reason from its host thread over ``readings``, its memory, its GPU over
    ``samples``, the recent ones, where that stands apart: gputop.workload.causes) and the stall
    flag (none once the job has ended: every rank has then exited)."""
    gone = set(gone_pids)
    figs = [figures(rank, steps, hellos.get(steps[-1].pid or 0)) for rank, steps in sorted(by_rank.items()) if steps]
    exited = [f.rank for f in figs if ended or f.pid in gone]
    flag = stall(by_rank, now_ns, exited)
    out = []
    for f in figs:
        hello = hellos.get(f.pid or 0) or {}
        out.append(
            RankRow(
                rank=f.rank,
                pid=f.pid,
                device=f.device,
                device_uuid=_text(hello.get("device_uuid")),
                steps=by_rank[f.rank][-1].step,  # its own count (the steps given may be its recent ones)
                steps_per_s=f.steps_per_s,
                step_p50_s=f.step_p50_s,
                data_wait_share=f.data_wait_share,
                last_step_age_s=max(0.0, (now_ns - by_rank[f.rank][-1].ts_ns) / 1e9),
                state=flag.states.get(f.rank, "stepping"),
            )
        )
    s = None
    if all(f.steps >= LIVE_STRAGGLER_STEPS for f in figs):
        devices = {f.rank: hellos.get(f.pid or 0) or {} for f in figs}
        hosts = causes.rank_hosts(readings, {f.rank: f.pid for f in figs})
        s = straggler(figs, causes.rank_gpus(samples, devices, 0, now_ns) if samples else None, hosts)
    found = None if s is None else RankStraggler(rank=s["rank"], reason=s["reason"], evidence=s["evidence"])
    return tuple(out), found, None if ended else flag.text


def stalled(steps: Iterable[WorkloadStep], now_ns: int) -> dict[int, float]:
    """The ranks that have stopped stepping by ``stall``'s rule (stalled, or waiting for one that
    has): rank -> seconds since its last step. In a job whose ranks step together they all stop
    within a step of each other: which one holds the others is what their stacks tell."""
    mine = by_rank(steps)
    flag = stall(mine, now_ns)
    return {r: (now_ns - mine[r][-1].ts_ns) / 1e9 for r, state in flag.states.items() if state in ("stalled", "waiting")}
