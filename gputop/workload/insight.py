"""The verdict's signals gathered for the live view (from the recent steps, the job's processes
and the latest sample), and the pieces ``report`` shares to gather them from a recording: which
GPU is the job's, and how steps after warm-up are chosen; and the same for the job's placement
against its GPU's CPUs. The rules themselves are gputop.workload.verdict's and placement's."""

from __future__ import annotations

from typing import Collection, Mapping, Sequence

from gputop.model import GpuInfo, GpuSample, JobUsage, Placement, Sample, Verdict, WorkloadStep
from gputop.workload import placement, rates, verdict
from gputop.workload.energy import gpu_uuid, is_gpu, visible_gpu


def measured(steps: Sequence[WorkloadStep]) -> list[WorkloadStep]:
    """The steps after warm-up (by index)."""
    return [s for s in steps if s.step > verdict.WARMUP_STEPS]


def job_gpu(gpus: Sequence[GpuSample], device: str | None, device_uuid: str | None, env: Mapping[str, str]) -> GpuSample | None:
    """The GPU a job on ``device`` runs on (by its UUID where known, else by its CUDA ordinal
    through CUDA_VISIBLE_DEVICES); on the CPU, the least busy GPU (the one left idle)."""
    if device is None or not device.startswith("cuda"):
        live = [g for g in gpus if not g.lost and g.gpu_util_pct is not None]
        return min(live, key=lambda g: g.gpu_util_pct or 0.0) if live else None
    key = ("uuid", gpu_uuid(device_uuid)) if device_uuid else visible_gpu(device, env)
    return next((gpu for gpu in gpus if is_gpu(gpu.info, key)), None)


def dram_pct(gpu: GpuSample | None) -> float | None:
    if gpu is None:
        return None
    return gpu.dram_bw_util_pct if gpu.dram_bw_util_pct is not None else gpu.mem_busy_pct


def workers(job: JobUsage | None, parent: int | None = None) -> tuple[int | None, float | None]:
    """(count, CPU % together) of the main process's worker processes (``parent``: of that rank's)."""
    if job is None:
        return None, None
    mine = [p for p in job.processes if p.role == "worker" and (parent is None or p.ppid == parent)]
    known = [p.cpu_pct for p in mine if p.cpu_pct is not None]
    return len(mine), (sum(known) if known else None)


def live_verdict(
    steps: Sequence[WorkloadStep],
    device: str | None,
    job: JobUsage | None,
    sample: Sample | None,
    env: Mapping[str, str],
    device_uuid: str | None = None,
    rank_pid: int | None = None,
) -> Verdict:
    """The verdict over the recent steps and the latest readings (``rank_pid``: in a distributed
    job, the rank whose steps these are: only its own loader workers count)."""
    after = measured(steps)
    gpus = sample.gpus if sample is not None else ()
    gpu = job_gpu(gpus, device, device_uuid, env)
    count, workers_cpu = workers(job, rank_pid)
    cores = len(sample.cpu.core_util_pct) if sample is not None else None
    idle = None if sample is None or cores is None else max(0.0, cores - sample.cpu.busy_cores)
    return verdict.decide(
        verdict.Signals(
            steps=len(after),
            device=device,
            data_wait_share=rates.data_wait_share(after),
            loader_workers=count,
            workers_cpu_pct=workers_cpu,
            job_cpu_pct=None if job is None else job.cpu_pct,
            main_thread_cpu_pct=None if job is None else job.main_thread_cpu_pct,
            main_thread_busy_pct=None if job is None else job.main_thread_busy_pct,
            job_busy_pct=None if job is None else job.busy_pct,
            cores=cores,
            idle_cores=idle,
            gpus=len(gpus),
            gpu_label=None if gpu is None else f"GPU{gpu.info.index}",
            gpu_sm_active_pct=None if gpu is None else gpu.sm_active_pct,
            gpu_util_pct=None if gpu is None else gpu.gpu_util_pct,
            gpu_dram_pct=dram_pct(gpu),
        )
    )


def live_placement(
    sample: Sample | None,
    seen: Collection[int],
    device: str | None,
    device_uuid: str | None,
    env: Mapping[str, str],
    core_cpu_s: Mapping[int, float],
) -> Placement | None:
    """The job's CPU time (by core, since it started) against its GPUs' CPUs; ``seen``: the GPUs
    whose process lists held one of its pids."""
    if sample is None or not sample.gpus:
        return None
    return _placement([g.info for g in sample.gpus], seen, device, device_uuid, env, core_cpu_s, sample.gpus)


def _placement(
    infos: Sequence[GpuInfo],
    seen: Collection[int],
    device: str | None,
    device_uuid: str | None,
    env: Mapping[str, str],
    core_cpu_s: Mapping[int, float],
    gpus: Sequence[GpuSample],
) -> Placement | None:
    gpu = job_gpu(gpus, device, device_uuid, env) if device and device.startswith("cuda") else None
    chosen = placement.choose(infos, seen, device, None if gpu is None else gpu.info.index)
    return None if chosen is None else placement.place(infos, *chosen, core_cpu_s)


def _recorded_placement(
    window: Sequence[Mapping[str, object]], samples: Sequence[Sample], device: str | None, device_uuid: str | None
) -> Placement | None:
    """The same from the ``job`` instants' ``core_cpu_s`` and the GPUs the recorder saw the job on."""
    total: dict[int, float] = {}
    seen: set[int] = set()
    for args in window:
        pairs = args.get("core_cpu_s")
        if isinstance(pairs, list):
            placement.add(
                total,
                (
                    (c, float(t))
                    for c, t in (p for p in pairs if isinstance(p, list) and len(p) == 2)
                    if isinstance(c, int) and _number(t) is not None
                ),
            )
        gpus = args.get("placement_gpus")
        if args.get("placement_from") == "processes" and isinstance(gpus, list):
            seen.update(g for g in gpus if isinstance(g, int))
    if not samples or not samples[0].gpus:
        return None
    return _placement([g.info for g in samples[0].gpus], seen, device, device_uuid, {}, total, samples[0].gpus)


def _mean(values: Sequence[float | None]) -> float | None:
    known = [v for v in values if v is not None]
    return sum(known) / len(known) if known else None


def _number(value: object) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value)


def recorded(
    steps: Sequence[WorkloadStep],
    jobs: Sequence[tuple[int, Mapping[str, object]]],
    samples: Sequence[Sample],
    source: str | None,
    *,
    device: str | None = None,
    device_uuid: str | None = None,
    rank_pid: int | None = None,
    rank_pids: Collection[int] = (),
) -> dict[str, object]:
    """What ``report`` says of a recorded job beyond its rates: steps/s, step time p50/p95, the
    data-wait share, what its processes used, and the verdict, all over the steps after warm-up
    (``jobs``: the ``job`` instants' (ts_ns, args) in order; ``device``, ``device_uuid``: the
    start event's, as gputop.trace.marks read them; ``rank_pid``: the rank whose steps these are,
    in a distributed job: only its own workers count; ``rank_pids``: every rank's process, never a
    worker, even in a job reading taken before its hello came: Lightning's ranks are rank 0's children)."""
    after = measured(steps) or list(steps)
    # steps/s and step times over the steps report's medians are taken over (all but step 1)
    timed = [s for s in steps if s.step != 1] or list(steps)
    wall = sum(s.wall_s for s in timed)
    p50, p95 = rates.step_time_percentiles(timed)
    begin = (after[0].ts_ns - int(after[0].wall_s * 1e9)) if after else 0
    end = after[-1].ts_ns if after else 0
    # a job reading covers the time since the one before: those that overlap the steps
    # (without steps: all of them, so a job that reports none still says what it used)
    window = [args for (before, _), (ts, args) in zip([(0, {}), *jobs], jobs) if not after or (before < end and ts > begin)]
    in_steps = [s for s in samples if begin <= s.ts_ns <= end] if after else []
    gpus = [g for g in (job_gpu(s.gpus, device, device_uuid, {}) for s in in_steps) if g is not None]
    cores = len(samples[0].cpu.core_util_pct) if samples else None
    idle = _mean([max(0.0, len(s.cpu.core_util_pct) - s.cpu.busy_cores) for s in in_steps])
    worker_counts, worker_cpu = [], []
    for args in window:
        listed = args.get("processes")
        procs = (
            [
                p
                for p in listed
                if isinstance(p, dict)
                and p.get("role") == "worker"
                and (rank_pid is None or p.get("ppid") == rank_pid)
                and p.get("pid") not in rank_pids
            ]
            if isinstance(listed, list)
            else []
        )
        worker_counts.append(len(procs))
        known = [_number(p.get("cpu_pct")) for p in procs]
        worker_cpu.append(sum(v for v in known if v is not None) if any(v is not None for v in known) else None)
    used: set[int] = set()
    for args in window:
        listed = args.get("cores")
        if isinstance(listed, list):
            used.update(c for c in listed if isinstance(c, int))
    job = {
        key: _mean([_number(a.get(key)) for a in window]) for key in ("cpu_pct", "busy_pct", "main_thread_cpu_pct", "main_thread_busy_pct")
    }
    rss = [_number(a.get("rss_bytes")) for a in window]
    label = None if not gpus else f"GPU{gpus[0].info.index}"
    signals = verdict.Signals(
        steps=len(measured(steps)),
        device=device,
        data_wait_share=rates.data_wait_share(after),
        loader_workers=max(worker_counts) if worker_counts else None,
        workers_cpu_pct=_mean(worker_cpu),
        job_cpu_pct=job["cpu_pct"],
        main_thread_cpu_pct=job["main_thread_cpu_pct"],
        main_thread_busy_pct=job["main_thread_busy_pct"],
        job_busy_pct=job["busy_pct"],
        cores=cores,
        idle_cores=idle,
        gpus=len(samples[0].gpus) if samples else 0,
        gpu_label=label,
        gpu_sm_active_pct=_mean([g.sm_active_pct for g in gpus]),
        gpu_util_pct=_mean([g.gpu_util_pct for g in gpus]),
        gpu_dram_pct=_mean([dram_pct(g) for g in gpus]),
    )
    v = verdict.decide(signals)
    return {
        "steps_source": source,
        "steps_per_s": len(timed) / wall if wall > 0 else None,
        "step_time_s_p50": p50,
        "step_time_s_p95": p95,
        "data_wait_share": signals.data_wait_share,
        "job": {
            **job,
            "rss_bytes_max": max((r for r in rss if r is not None), default=None),
            "cores": sorted(used) if window else None,
            "workers": signals.loader_workers,
        },
        "verdict": {"kind": v.kind, "evidence": v.evidence, "suggestion": v.suggestion},
        "placement": placement.as_dict(_recorded_placement(window, samples, device, device_uuid)),
    }
