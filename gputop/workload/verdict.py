"""The verdict: why a training job runs as fast as it does, in words, from a few numbers. One
pure function over ``Signals`` (the live view and ``report`` gather them, each its own way), and
the thresholds it uses, documented in the README ("Your own training script").

Kinds, tried in this order:

- ``unknown``: fewer than MIN_STEPS steps after the WARMUP_STEPS first, or nothing to go on;
- ``input_bound``: the steps wait for the DataLoader INPUT_BOUND_SHARE of their time or more (the
  suggestion: twice the workers where they are busy under WORKER_BUSY_PCT, waiting on I/O; else as
  many as there are idle cores; else a cheaper ``__getitem__``);
- on a GPU (``device`` cuda): ``gpu_memory_bound`` (GPU busy, DRAM bandwidth at
  GPU_MEMORY_PCT or more), ``gpu_compute_bound`` (GPU busy: SM activity, else GPU utilization,
  at GPU_BUSY_PCT or more), ``host_bound`` (GPU below GPU_BUSY_PCT while the main thread holds a
  core at HOST_THREAD_PCT or more: Python or kernel-launch overhead);
- on the CPU: ``gpu_idle`` (a GPU is there and under GPU_IDLE_PCT), ``cpu_compute`` (no GPU,
  and the job's threads are on a core, or queued for one, CPU_BUSY_PCT of a core's time or more:
  they wait for nothing but the CPU, however many other jobs share it; where it gets under
  CROWDED_SHARE of the time its threads want, the suggestion says other processes hold the cores);
- ``unknown`` otherwise (signals that disagree, or are missing), with what was seen.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from gputop.model import Verdict

KINDS = ("input_bound", "host_bound", "gpu_compute_bound", "gpu_memory_bound", "gpu_idle", "cpu_compute", "unknown")
WARMUP_STEPS = 2  # the first steps (allocation, autotuning, compiling) are left out
MIN_STEPS = 5  # steps after warm-up needed for any verdict
INPUT_BOUND_SHARE = 0.30  # of each step's time waiting for the DataLoader
GPU_BUSY_PCT = 80.0  # SM activity (else GPU utilization) at which the GPU is the limit
GPU_MEMORY_PCT = 60.0  # DRAM bandwidth use (of peak) at which a busy GPU is memory-bound
HOST_THREAD_PCT = 85.0  # the main thread's CPU (100 = one core) at which Python is the limit
GPU_IDLE_PCT = 10.0  # a GPU below this utilization is idle
WORKER_BUSY_PCT = 50.0  # a loader's workers below this (each, on average) wait more than they compute
CPU_BUSY_PCT = 80.0  # the job's threads' busy time (on a core or queued; 100 = one core)
CROWDED_SHARE = 0.5  # a cpu_compute job that gets under this share of the CPU time it wants: crowded out


@dataclass(frozen=True, slots=True)
class Signals:
    """What the verdict is drawn from; None where not known."""

    steps: int  # after warm-up
    device: str | None  # "cpu", "cuda", "cuda:1"
    data_wait_share: float | None = None  # 0..1
    loader_workers: int | None = None  # the main process's worker processes
    workers_cpu_pct: float | None = None  # theirs, together (100 = one core)
    job_cpu_pct: float | None = None  # the whole job's
    main_thread_cpu_pct: float | None = None
    main_thread_busy_pct: float | None = None  # on a core or queued for one
    job_busy_pct: float | None = None  # all the job's threads: on a core or queued (100 = one core)
    cores: int | None = None  # of the machine
    idle_cores: float | None = None  # of the machine, mean
    gpus: int = 0  # GPUs the machine has
    gpu_label: str | None = None  # "GPU0"
    gpu_sm_active_pct: float | None = None
    gpu_util_pct: float | None = None
    gpu_dram_pct: float | None = None  # DRAM bandwidth use (GPM), else NVML's memory busy


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.0f} %"


def _cores(pct: float | None) -> str:
    return "n/a" if pct is None else f"{pct / 100:.1f}"


def _known(value: float | None) -> bool:
    return value is not None and math.isfinite(value)


def decide(s: Signals) -> Verdict:
    """The verdict for ``s`` (see the module's docstring for the rules)."""
    if s.steps < MIN_STEPS:
        return Verdict("unknown", f"{s.steps} steps after the first {WARMUP_STEPS}: at least {MIN_STEPS} are needed for a verdict")
    gpu = s.gpu_label or "the GPU"
    on_gpu = s.device is not None and s.device.startswith("cuda")
    busy = s.gpu_sm_active_pct if _known(s.gpu_sm_active_pct) else s.gpu_util_pct
    busy_what = "SMs" if _known(s.gpu_sm_active_pct) else "utilization"
    if s.data_wait_share is not None and s.data_wait_share >= INPUT_BOUND_SHARE:
        return _input_bound(s, on_gpu, gpu, busy, busy_what)
    if on_gpu:
        if busy is None:
            return Verdict("unknown", f"training on {s.device}, whose activity cannot be read")
        if busy >= GPU_BUSY_PCT:
            if _known(s.gpu_dram_pct) and (s.gpu_dram_pct or 0) >= GPU_MEMORY_PCT:
                return Verdict(
                    "gpu_memory_bound",
                    f"{gpu} {busy_what} {_pct(busy)} active, its memory bandwidth {_pct(s.gpu_dram_pct)} used",
                    "Fewer bytes per step: lower precision (bf16), fused kernels, larger batches for more reuse",
                )
            return Verdict(
                "gpu_compute_bound",
                f"{gpu} {busy_what} {_pct(busy)} active",
                "The GPU is the limit: mixed precision, tensor cores (bf16/tf32), or torch.compile",
            )
        host = s.main_thread_busy_pct if s.main_thread_busy_pct is not None else s.main_thread_cpu_pct
        if host is not None and host >= HOST_THREAD_PCT:
            return Verdict(
                "host_bound",
                f"the main thread holds a core at {_pct(host)} while {gpu} {busy_what} are {_pct(busy)} active",
                "Python or kernel launches are the limit: larger batches, torch.compile or CUDA graphs",
            )
        return Verdict(
            "unknown",
            f"{gpu} {busy_what} {_pct(busy)} active, main thread "
            f"{_pct(s.main_thread_cpu_pct)} of a core, data wait {_pct(_share(s))}: "
            "no single limit stands out",
        )
    if s.gpus and _known(s.gpu_util_pct) and (s.gpu_util_pct or 0) < GPU_IDLE_PCT:
        return Verdict(
            "gpu_idle",
            f"training on {s.device or 'the CPU'} while {gpu} is {_pct(s.gpu_util_pct)} busy",
            "Move the model and batches to the GPU (model.to('cuda'))",
        )
    if not s.gpus and s.job_busy_pct is not None and s.job_busy_pct >= CPU_BUSY_PCT:
        crowded = s.job_cpu_pct is not None and s.job_cpu_pct < CROWDED_SHARE * s.job_busy_pct
        return Verdict(
            "cpu_compute",
            f"training on the CPU, with no GPU: the job's threads want "
            f"{_cores(s.job_busy_pct)} cores and get {_cores(s.job_cpu_pct)}{_of_cores(s)}, "
            f"data wait {_pct(_share(s))}",
            f"Other processes hold the cores: the job gets {_pct(100 * (s.job_cpu_pct or 0) / s.job_busy_pct)}"
            " of the CPU time it wants, so its speed here says little; on a machine of its own, a GPU "
            "or a smaller model"
            if crowded
            else "The CPU's arithmetic is the limit: a GPU, or a smaller model",
        )
    return Verdict(
        "unknown",
        f"training on {s.device or 'an unknown device'}: the job keeps {_cores(s.job_cpu_pct)} cores busy, data wait {_pct(_share(s))}",
    )


def _share(s: Signals) -> float | None:
    return None if s.data_wait_share is None else 100 * s.data_wait_share


def _of_cores(s: Signals) -> str:
    return "" if s.cores is None else f" of {s.cores}"


def _input_bound(s: Signals, on_gpu: bool, gpu: str, busy: float | None, busy_what: str) -> Verdict:
    parts = [f"{100 * (s.data_wait_share or 0):.0f} % of each step waits for the DataLoader"]
    workers = s.loader_workers or 0
    if workers and s.workers_cpu_pct is not None:
        cores = f" of {s.cores}" if s.cores is not None else ""
        parts.append(f"its {workers} workers keep {_cores(s.workers_cpu_pct)}{cores} cores busy")
    elif not workers:
        parts.append("it loads in the main process (num_workers=0)")
    if s.idle_cores is not None and s.cores is not None:
        parts[-1] += f" while {s.idle_cores:.0f} of {s.cores} cores are idle"
    if on_gpu and busy is not None:
        parts.append(f"{gpu} {busy_what} {busy:.0f} % active")
    spare = int(s.idle_cores) if s.idle_cores is not None else 0
    waiting = workers and s.workers_cpu_pct is not None and s.workers_cpu_pct / workers < WORKER_BUSY_PCT
    if waiting:  # they wait (I/O, a remote store) more than they compute: more of them overlap it
        suggestion = (
            f"Try num_workers={2 * workers}: the workers are busy under {WORKER_BUSY_PCT:.0f} % "
            "of the time (waiting on I/O), so more of them overlap the waits"
        )
    elif spare >= 1:
        suggestion = f"Try num_workers={workers + spare}"
    elif not workers:
        suggestion = "Try num_workers=2 or more, or make __getitem__ cheaper"
    else:
        suggestion = "Every core is busy: make __getitem__ cheaper (decode once, cache, smaller samples)"
    return Verdict("input_bound", "; ".join(parts), suggestion)
