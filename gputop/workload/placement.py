"""Whether a job runs on the CPUs near its GPU: the job's CPU time by core (``JobUsage.core_cpu_s``,
summed over the run) against the CPUs NVML calls near the GPU(s) it uses
(``GpuInfo.cpu_affinity``). Pure; the live view (gputop.workload.insight.live_placement) and
``report`` (insight.recorded) both end here.

Which GPUs are the job's: those whose NVML process lists hold one of its pids; else the device it
announced (``cuda:N``); else, where neither tells, every GPU (said so in the words). A job that
announced the CPU as its device has no GPU to be near: nothing is said.
"""

from __future__ import annotations

from typing import Collection, Iterable, Mapping, Sequence

from gputop import format as fmt
from gputop.model import GpuInfo, GpuSample, Placement

FAR_SHARE = 0.5  # "most": more than half of the job's CPU time on CPUs not near its GPUs
MIN_CPU_S = 1.0  # below this much CPU time in all, no warning (too little to tell)
GPUS_FROM = {
    "processes": "its GPU processes",
    "device": "the device it announced",
    "all": "every GPU: which is the job's could not be told",
}


def job_gpus(gpus: Iterable[GpuSample], pids: Collection[int]) -> set[int]:
    """The GPUs whose NVML process lists hold one of ``pids``."""
    return {g.info.index for g in gpus if g.processes and any(p.pid in pids for p in g.processes)}


def choose(
    infos: Sequence[GpuInfo], seen: Collection[int], device: str | None, device_gpu: int | None
) -> tuple[tuple[int, ...], str] | None:
    """(the job's GPUs, how they were told), or None for a job on the CPU."""
    if seen:
        return tuple(sorted(seen)), "processes"
    if device is not None and not device.startswith("cuda"):
        return None
    if device_gpu is not None:
        return (device_gpu,), "device"
    return tuple(i.index for i in infos), "all"


def add(total: dict[int, float], core_cpu_s: Iterable[tuple[int, float]]) -> None:
    """Add one interval's (core, seconds) to ``total``."""
    for core, seconds in core_cpu_s:
        total[core] = total.get(core, 0.0) + seconds


def place(infos: Sequence[GpuInfo], gpus: Sequence[int], gpus_from: str, core_cpu_s: Mapping[int, float]) -> Placement | None:
    """The job's CPU time near and far from ``gpus``; None where NVML gave none of them a CPU
    affinity or the job has used no CPU time yet."""
    by_index = {i.index: i for i in infos}
    known = [by_index[g] for g in gpus if g in by_index and by_index[g].cpu_affinity]
    cpu_s = sum(core_cpu_s.values())
    if not known or cpu_s <= 0:
        return None
    near = frozenset().union(*(frozenset(i.cpu_affinity or ()) for i in known))
    far_cores = sorted(c for c, s in core_cpu_s.items() if c not in near and s > 0)
    far_s = sum(core_cpu_s[c] for c in far_cores)
    label = gpu_label([i.index for i in known])
    warning = None
    if cpu_s >= MIN_CPU_S and far_s / cpu_s > FAR_SHARE:
        warning = (
            f"{100 * far_s / cpu_s:.0f} % of the job's CPU time ran on CPUs {fmt.core_ranges(far_cores)}, "
            f"not near {label} (near: CPUs {fmt.core_ranges(near)}; GPUs from "
            f"{GPUS_FROM.get(gpus_from, gpus_from)}). Pin it near: taskset -c {fmt.core_ranges(near)}"
        )
    return Placement(
        gpus=tuple(i.index for i in known),
        gpus_from=gpus_from,
        near_cpus=tuple(sorted(near)),
        cpu_s=cpu_s,
        far_cpu_s=far_s,
        warning=warning,
    )


def gpu_label(indices: Sequence[int]) -> str:
    """[4] as "GPU4", [0, 1, 2, 3] as "GPUs 0-3"."""
    return f"GPU{indices[0]}" if len(indices) == 1 else f"GPUs {fmt.core_ranges(indices)}"


def as_dict(p: Placement | None) -> dict[str, object] | None:
    """``report --json``'s ``workload.placement``."""
    if p is None:
        return None
    return {
        "gpus": list(p.gpus),
        "gpus_from": p.gpus_from,
        "near_cpus": fmt.core_ranges(p.near_cpus),
        "cpu_s": p.cpu_s,
        "far_cpu_s": p.far_cpu_s,
        "far_share": p.far_share,
        "warning": p.warning,
    }
