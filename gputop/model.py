"""Frozen, typed samples and workload states. Units are in the field names; ``None`` means "not
available".

Field names of GpuSample and CpuSample are the metric names of ``gputop.metrics``; a test keeps
the two in step. No presentation state lives here (no colours, no formatted strings).
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass, fields
from typing import Any, Mapping


@dataclass(frozen=True, slots=True)
class GpuInfo:
    """What a device is: read once when the source opens, never per tick."""

    index: int
    name: str
    uuid: str | None
    pci_bus_id: str | None
    architecture: str | None  # "Hopper", "Ampere", ...
    sm_count: int | None
    mem_bus_width_bits: int | None
    max_mem_clock_mhz: int | None
    peak_dram_bw_bytes_per_s: float | None  # 2 x max memory clock x bus width / 8
    driver_version: str | None
    cuda_version: str | None  # of the driver, "12.4"
    gpm_supported: bool = False
    mig_enabled: bool = False
    # the PCIe link as it was when the source opened (a link trains down at idle, so the current
    # generation can be below the maximum), and the most the device and its slot allow
    pcie_link_gen: int | None = None
    pcie_link_width: int | None = None
    pcie_link_gen_max: int | None = None
    pcie_link_width_max: int | None = None
    cpu_affinity: tuple[int, ...] | None = None  # the CPUs NVML calls near the device, ascending
    numa_node: int | None = None  # where the GPU is itself a NUMA node (Grace Hopper); else None
    # whether the driver keeps an energy counter (energy_j since it loaded); False: energy_j is
    # power integrated since gputop started; None: not known (a recording from before this field)
    energy_counter: bool | None = None
    vendor: str = "nvidia"  # "nvidia" (NVML) or "amd" (amdsmi): which words the views use (SM or CU)
    # the device's number in the compute runtime where it differs from ``index`` (AMD: the HIP
    # ordinal that ``cuda:N`` means in a ROCm PyTorch); None: the same as ``index``
    runtime_index: int | None = None


@dataclass(frozen=True, slots=True)
class GpuProcess:
    """A process holding a GPU context, joined with what the host knows of it."""

    pid: int
    gpu_index: int
    kind: str  # "compute", "graphics" or "compute+graphics"
    gpu_mem_bytes: int | None
    sm_util_pct: float | None = None
    mem_util_pct: float | None = None
    # from the host (psutil); None where this namespace cannot see the pid (containers)
    name: str | None = None
    user: str | None = None
    command: str | None = None
    cpu_pct: float | None = None


@dataclass(frozen=True, slots=True)
class GpuSample:
    info: GpuInfo
    lost: bool = False  # the device stopped answering (fell off the bus); other fields are None
    gpu_util_pct: float | None = None
    mem_busy_pct: float | None = None
    sm_active_pct: float | None = None
    sm_occupancy_pct: float | None = None
    tensor_active_pct: float | None = None
    dram_bw_util_pct: float | None = None
    fp16_active_pct: float | None = None
    fp32_active_pct: float | None = None
    fp64_active_pct: float | None = None
    dram_bw_bytes_per_s: float | None = None
    mem_used_bytes: int | None = None
    mem_total_bytes: int | None = None
    power_w: float | None = None
    power_limit_w: float | None = None
    energy_j: float | None = None
    sm_clock_mhz: int | None = None
    mem_clock_mhz: int | None = None
    temp_c: float | None = None
    fan_pct: float | None = None
    pstate: int | None = None
    clock_event_reasons: tuple[str, ...] | None = None
    pcie_tx_bytes_per_s: float | None = None
    pcie_rx_bytes_per_s: float | None = None
    nvlink_tx_bytes_per_s: float | None = None
    nvlink_rx_bytes_per_s: float | None = None
    temp_hotspot_c: float | None = None  # AMD: the hottest junction (NVML gives none)
    temp_mem_c: float | None = None  # AMD: the HBM/VRAM temperature
    xgmi_read_bytes_per_s: float | None = None  # AMD: XGMI reads, all links
    xgmi_write_bytes_per_s: float | None = None  # AMD: XGMI writes, all links
    processes: tuple[GpuProcess, ...] | None = None  # None: not readable on this device

    @property
    def sms_active(self) -> float | None:
        """SM activity as a count of SMs ("118 of 132"), where both parts are known."""
        if self.sm_active_pct is None or self.info.sm_count is None:
            return None
        return self.sm_active_pct / 100.0 * self.info.sm_count


@dataclass(frozen=True, slots=True)
class CpuSample:
    cpu_util_pct: float
    core_util_pct: tuple[float, ...]
    core_freq_mhz: tuple[float | None, ...]
    cpu_power_w: float | None
    ram_used_bytes: int
    ram_total_bytes: int
    load1: float | None

    @property
    def busy_cores(self) -> float:
        """Utilization as a count of cores ("1.7 of 2 cores busy")."""
        return sum(self.core_util_pct) / 100.0


@dataclass(frozen=True, slots=True)
class Sample:
    """One tick: everything stamped once with ``time.time_ns()``."""

    ts_ns: int
    cpu: CpuSample
    gpus: tuple[GpuSample, ...] = ()
    gpu_unavailable: str | None = None  # why no GPU is shown ("NVIDIA driver not loaded"), else None


# ---------------------------------------------------------------------------------------------
# The workload contract: what a launched workload has reported (gputop.workload fills these in;
# the views, the recorder and the trace read them without importing the launcher).


@dataclass(frozen=True, slots=True)
class WorkloadStep:
    """One ``step`` event: the step ran from ``ts_ns - wall_s`` to ``ts_ns`` (time.time_ns clock)."""

    step: int
    samples: int | None  # None: not known (a detected step whose batch could not be seen)
    loss: float | None
    wall_s: float
    ts_ns: int
    joules: float | None = None  # energy of the devices it ran on during this step, where known
    source: str = "events"  # "events": reported by the workload; "auto": detected by gputop's hooks
    data_wait_s: float | None = None  # time spent waiting for the DataLoader; None without one
    waits: tuple[tuple[int, int], ...] = ()  # (begin_ns, dur_ns) of its first data waits
    pid: int | None = None  # the process that stepped, where the job has several (ranks)
    rank: int | None = None  # its rank in a distributed job; None outside one
    # its time inside autograd's backward (detected steps); in DDP on gloo that holds the wait for
    # the other ranks' gradients (the all-reduce is waited for before backward returns)
    backward_s: float | None = None
    # its process's CUDA caching allocator's retries so far (torch.cuda.memory_stats'
    # num_alloc_retries, a running count read about every second); None where not read (no CUDA)
    alloc_retries: int | None = None


@dataclass(frozen=True, slots=True)
class JobProcess:
    """One process of a launched workload's tree, over the last interval."""

    pid: int
    name: str
    role: str  # "main" | "worker" (a DataLoader or multiprocessing child of the main, or of a rank)
    # | "rank" (a process of a distributed job that steps) | "other"
    cpu_pct: float | None  # 100 = one core
    threads: int | None
    rss_bytes: int | None
    cores: frozenset[int]  # the cores its threads ran on over the interval
    ppid: int | None = None  # its parent
    # its main thread's (tid = pid) time on a core and runnable but waiting in the run queue for
    # one over the interval (schedstat; None where unreadable or first seen): a rank's host thread
    main_run_s: float | None = None
    main_queued_s: float | None = None


@dataclass(frozen=True, slots=True)
class JobUsage:
    """What a launched workload's processes used, all of them together, over the last interval."""

    cpu_pct: float | None  # 100 = one core
    main_thread_cpu_pct: float | None  # the main process's main thread (Python's), on a core
    # the main thread on a core or waiting in the run queue for one: near 100 for a thread that
    # never sleeps, even on a machine so busy that it gets little CPU
    main_thread_busy_pct: float | None
    busy_pct: float | None  # the same for all its threads together (100 = one core's worth)
    rss_bytes: int | None
    cores: frozenset[int]
    processes: tuple[JobProcess, ...]
    # (core, CPU seconds of the interval), each thread's time counted on the core it last ran on
    core_cpu_s: tuple[tuple[int, float], ...] = ()
    interval_s: float | None = None  # the time since the reading before (None: the first reading)


@dataclass(frozen=True, slots=True)
class Placement:
    """Where a job's CPU time went against the CPUs NVML calls near the GPU(s) it uses."""

    gpus: tuple[int, ...]  # the GPUs it is measured against
    # how they were told: "processes" (the job's pids in NVML's process lists), "device" (the
    # device the job announced), "all" (neither could tell: every GPU with an affinity)
    gpus_from: str
    near_cpus: tuple[int, ...]  # the CPUs near those GPUs, together
    cpu_s: float  # the job's CPU time measured
    far_cpu_s: float  # of which on CPUs not near them
    warning: str | None  # in words, when most of it is far; else None

    @property
    def far_share(self) -> float | None:
        return self.far_cpu_s / self.cpu_s if self.cpu_s > 0 else None


@dataclass(frozen=True, slots=True)
class Verdict:
    """Why the job runs as fast as it does, in words: ``kind`` is one of gputop.workload.verdict's."""

    kind: str
    evidence: str
    suggestion: str | None = None


@dataclass(frozen=True, slots=True)
class RankRow:
    """One rank of a distributed job as the views show it (gputop.workload.ranks.rows)."""

    rank: int
    pid: int | None  # its latest process
    device: str | None  # its hello's: "cuda:1", "cpu"; None where it said none
    device_uuid: str | None  # that GPU's UUID, as torch gives it (ties the rank to an NVML device)
    steps: int
    steps_per_s: float | None  # over its recent steps after its first: their count over their time
    step_p50_s: float | None
    data_wait_share: float | None  # None without a DataLoader
    last_step_age_s: float | None  # from its last step to the snapshot
    state: str  # "stepping" | "waiting" | "stalled" | "exited" (gputop.workload.ranks.stall)


@dataclass(frozen=True, slots=True)
class RankStraggler:
    """The rank that holds a distributed job back, and why (``reason`` None: not measured)."""

    rank: int
    reason: str | None
    evidence: str


@dataclass(frozen=True, slots=True)
class WorkloadState:
    """What a launched workload has reported so far, and how its process stands.

    ``None`` means "not reported": a script that writes no events still has a name, pid, status,
    pids and output, and every achievement field is None (shown as n/a, never 0).
    """

    name: str  # "cnn" for a bundled workload, else the script's file name
    argv: tuple[str, ...]  # the full command line of the child
    pid: int | None  # the main process; also its process group id. None before it started
    # "running" | "stopping" (gputop is stopping it) | "ok" (exit 0) | "failed" (non-zero exit or
    # end status error) | "stopped" (by gputop)
    status: str
    returncode: int | None  # None while running; negative: killed by that signal
    started_ns: int  # time.time_ns() when launched
    ended_ns: int | None
    events: bool  # True once any event was read
    device: str | None  # "cpu", "cuda", "cuda:1"
    device_name: str | None
    precision: str | None
    batch_size: int | None
    sample_unit: str  # "samples", "images", "tokens" (from start's extras; default "samples")
    flops_per_step: float | None
    peak_flops: float | None
    peak_flops_source: str | None  # "table" | "measured" | None
    steps_planned: int | None
    step: int | None  # the last step reported
    samples_per_s: float | None  # over the recent steps (a sliding window of wall time)
    tflops: float | None  # flops_per_step / step wall time, in TFLOP/s
    mfu_pct: float | None  # achieved / peak_flops x 100
    loss: float | None  # the last loss reported
    losses: tuple[float, ...]  # recent losses, oldest first (for a sparkline)
    joules_per_step: float | None  # GPU energy delta (or CPU package energy on CPU) per step
    recent_steps: tuple[WorkloadStep, ...]  # the last steps, oldest first
    error: str | None  # the end event's error; on a crash, the last line of stderr
    pids: frozenset[int]  # the main process and its live descendants (data-loader workers)
    output_tail: tuple[str, ...]  # the last lines of stdout and stderr, interleaved as they came
    phase: str | None = None  # the innermost phase now under way ("setup", "measure_peak", ...)
    events_ignored: int = 0  # event lines malformed, of a kind not known, or dropped unread
    # seconds from the last step's end to this snapshot (to the end, once ended); None before the
    # first step. The rates above are over the last steps *reported*: a view can call them stale
    # when this is well above their step time (a hang, a long evaluation, a data-loader stall)
    last_step_age_s: float | None = None
    # while "stopping": seconds left before SIGKILL follows the SIGTERM (0: SIGKILL sent)
    kill_in_s: float | None = None
    steps_source: str | None = None  # "auto" (detected) | "events" (reported) | None: no steps
    data_wait_share: float | None = None  # of the recent steps' time (after warm-up), waiting for data
    job: JobUsage | None = None  # its processes' CPU, memory and cores (None before the first look)
    verdict: Verdict | None = None
    placement: Placement | None = None  # None: NVML gives no CPU affinity, or no CPU time yet
    tokens_per_sample: int | None = None  # a language model's context length (start's extras)
    ranks: tuple[RankRow, ...] = ()  # a distributed job's ranks, by rank (empty: no ranks)
    # a distributed job's recent steps, every rank's, oldest first (recent_steps: its slowest rank's)
    rank_steps: tuple[WorkloadStep, ...] = ()
    straggler: RankStraggler | None = None
    # a rank that stopped while the others go on or wait, in words ("rank 1: no step for 41 s;
    # rank 0 waits"); None while every rank steps
    rank_stall: str | None = None

    @property
    def tokens_per_s(self) -> float | None:
        """samples/s x tokens per sample, where the workload said how many tokens a sample has."""
        if self.samples_per_s is None or self.tokens_per_sample is None:
            return None
        return self.samples_per_s * self.tokens_per_sample

    @property
    def running(self) -> bool:
        return self.status == "running"

    @property
    def elapsed_s(self) -> float:
        end = self.ended_ns if self.ended_ns is not None else time.time_ns()
        return max(0.0, (end - self.started_ns) / 1e9)


@dataclass(frozen=True, slots=True)
class WorkloadMark:
    """A non-step event, for a recorder: ``start``, ``end``, or ``phase`` (``ph`` "B"/"E")."""

    kind: str
    ts_ns: int
    name: str = ""
    ph: str = ""
    args: Mapping[str, Any] = dataclasses.field(default_factory=dict)


def to_dict(obj: Any) -> Any:
    """A dataclass tree as plain JSON-able data; tuples become lists, None stays None."""
    if hasattr(obj, "__dataclass_fields__"):
        return {f.name: to_dict(getattr(obj, f.name)) for f in fields(obj)}
    if isinstance(obj, (tuple, list)):
        return [to_dict(v) for v in obj]
    if isinstance(obj, dict):
        return {k: to_dict(v) for k, v in obj.items()}
    return obj
