"""The verdict's signals gathered for the live view (from the recent steps, the job's processes
and the latest sample), and the pieces ``report`` shares to gather them from a recording: which
GPU is the job's, and how steps after warm-up are chosen. The rules themselves are
gputop.workload.verdict's."""

from __future__ import annotations

from typing import Mapping, Sequence

from gputop.model import GpuSample, JobUsage, Sample, Verdict, WorkloadStep
from gputop.workload import rates, verdict
from gputop.workload.energy import gpu_uuid, visible_gpu


def measured(steps: Sequence[WorkloadStep]) -> list[WorkloadStep]:
    """The steps after warm-up (by index)."""
    return [s for s in steps if s.step > verdict.WARMUP_STEPS]


def job_gpu(gpus: Sequence[GpuSample], device: str | None, device_uuid: str | None,
            env: Mapping[str, str]) -> GpuSample | None:
    """The GPU a job on ``device`` runs on (by its UUID where known, else by its CUDA ordinal
    through CUDA_VISIBLE_DEVICES); on the CPU, the least busy GPU (the one left idle)."""
    if device is None or not device.startswith("cuda"):
        live = [g for g in gpus if not g.lost and g.gpu_util_pct is not None]
        return min(live, key=lambda g: g.gpu_util_pct or 0.0) if live else None
    key = ("uuid", gpu_uuid(device_uuid)) if device_uuid else visible_gpu(device, env)
    for gpu in gpus:
        if key == ("index", str(gpu.info.index)) or (
                key is not None and key[0] == "uuid" and (gpu.info.uuid or "").lower().startswith(key[1])):
            return gpu
    return None


def dram_pct(gpu: GpuSample | None) -> float | None:
    if gpu is None:
        return None
    return gpu.dram_bw_util_pct if gpu.dram_bw_util_pct is not None else gpu.mem_busy_pct


def workers(job: JobUsage | None) -> tuple[int | None, float | None]:
    """(count, CPU % together) of the main process's worker processes."""
    if job is None:
        return None, None
    mine = [p for p in job.processes if p.role == "worker"]
    known = [p.cpu_pct for p in mine if p.cpu_pct is not None]
    return len(mine), (sum(known) if known else None)


def live_verdict(steps: Sequence[WorkloadStep], device: str | None, job: JobUsage | None,
                 sample: Sample | None, env: Mapping[str, str], device_uuid: str | None = None) -> Verdict:
    """The verdict over the recent steps and the latest readings."""
    after = measured(steps)
    gpus = sample.gpus if sample is not None else ()
    gpu = job_gpu(gpus, device, device_uuid, env)
    count, workers_cpu = workers(job)
    cores = len(sample.cpu.core_util_pct) if sample is not None else None
    idle = None if sample is None or cores is None else max(0.0, cores - sample.cpu.busy_cores)
    return verdict.decide(verdict.Signals(
        steps=len(after), device=device, data_wait_share=rates.data_wait_share(after),
        loader_workers=count, workers_cpu_pct=workers_cpu,
        job_cpu_pct=None if job is None else job.cpu_pct,
        main_thread_cpu_pct=None if job is None else job.main_thread_cpu_pct,
        main_thread_busy_pct=None if job is None else job.main_thread_busy_pct,
        job_busy_pct=None if job is None else job.busy_pct,
        cores=cores, idle_cores=idle, gpus=len(gpus),
        gpu_label=None if gpu is None else f"GPU{gpu.info.index}",
        gpu_sm_active_pct=None if gpu is None else gpu.sm_active_pct,
        gpu_util_pct=None if gpu is None else gpu.gpu_util_pct, gpu_dram_pct=dram_pct(gpu)))
