"""A loaded trace back into model objects: one ``Sample`` per sample timestamp (GPU counters
carried between reads, the CPU's slow group carried between changes) and the workload's steps."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import TYPE_CHECKING, Any, Mapping

from gputop import metrics
from gputop.model import CpuSample, GpuSample, Sample, WorkloadStep
from gputop.trace.schema import (
    CAT_CLOCKS,
    CAT_EMPTY,
    CAT_LOST,
    CAT_WORKLOAD,
    CPU_PID,
    CPU_SLOW,
    GPU_COUNTERS,
    RawNumber,
    gpu_pid,
    plain,
)

if TYPE_CHECKING:
    from gputop.trace.reader import Trace


def ts_ns(value: Any) -> int | None:
    """An event's ``ts`` (microseconds) as integer nanoseconds, exactly where it was written so."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    if isinstance(value, int):
        return value * 1000
    text = value.text if isinstance(value, RawNumber) else repr(value)
    try:
        return int((Decimal(text) * 1000).to_integral_value())
    except (InvalidOperation, ValueError, OverflowError):
        return None


def workload_steps(trace: Trace) -> list[WorkloadStep]:
    """The ``step`` slices on the workload's pid, back as WorkloadSteps (``ts_ns`` = the end)."""
    workload = trace.workload
    if workload is None:
        return []
    pid, steps = workload["pid"], []
    for event in trace.events:
        ph = event.get("ph")
        if event.get("pid") != pid or event.get("cat") != CAT_WORKLOAD or event.get("name") != "step":
            continue
        if ph == "X":  # drawn from begin for dur; args.wall_s (where written) is its true length
            begin, dur = ts_ns(event.get("ts")), ts_ns(event.get("dur"))
            end = None if begin is None or dur is None else begin + dur
        elif ph == "i":  # a step that could not be drawn: at its end, with args.wall_s
            end, dur = ts_ns(event.get("ts")), None
        else:
            continue
        args = event.get("args")
        if end is None or not isinstance(args, dict):
            continue
        step, samples, loss, wall = args.get("step"), args.get("samples"), args.get("loss"), args.get("wall_s")
        source = "auto" if args.get("source") == "auto" else "events"
        # a detected step whose batch could not be seen has no samples (n/a)
        if not isinstance(step, int) or not (isinstance(samples, int) or (samples is None and source == "auto")):
            continue
        loss = float(loss) if isinstance(loss, (int, float)) and not isinstance(loss, bool) else None
        if isinstance(wall, (int, float)) and not isinstance(wall, bool) and math.isfinite(wall) and wall >= 0:
            wall_s = float(wall)
        elif dur is not None:
            wall_s = dur / 1e9
        else:
            continue
        wait, joules = _seconds(args.get("data_wait_s")), _seconds(args.get("joules"))
        steps.append(WorkloadStep(step=step, samples=samples, loss=loss, wall_s=wall_s, ts_ns=end,
                                  joules=joules, source=source, data_wait_s=wait))
    steps.sort(key=lambda s: s.ts_ns)
    return steps


def _seconds(value: Any) -> float | None:
    """A finite, non-negative number as a float, else None."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
        return None
    return float(value)


@dataclass
class _Group:
    cpu: dict[str, Any] = field(default_factory=dict)
    cores: dict[str, dict[int, Any]] = field(default_factory=dict)
    gpus: dict[int, dict[str, Any]] = field(default_factory=dict)
    changes: list[tuple[int, str, Any]] = field(default_factory=list)  # (pid, what, value)


def counter_value(event: Mapping[str, Any]) -> tuple[str, int | None, Any] | None:
    """(metric, core or None, value) of one of gputop's counters, or None for anything else."""
    name, args = event.get("name"), event.get("args")
    if not isinstance(name, str) or not isinstance(args, dict) or len(args) != 1:
        return None
    (value,) = args.values()
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    core = None
    if name.startswith("core") and "." in name:
        index, _, name = name.partition(".")
        if not index[4:].isdigit():
            return None
        core = int(index[4:])
    if name not in metrics.CATALOGUE:
        return None
    return name, core, plain(value)


def to_samples(trace: Trace) -> list[Sample]:
    """Rebuild one Sample per timestamp: counters by pid and name, GpuInfo from the header,
    throttle reasons and lost state carried forward from their instants. A GPU with no counter
    at a timestamp was not read then (GPUs are read about every 0.1 s at most, the CPU at every
    sample): its last counters are carried forward. Otherwise a metric with no event at a
    timestamp is None. A timestamp whose CPU part is incomplete (a cut inside the last sample)
    is left out."""
    gpu_by_pid = {gpu_pid(info.index): info for info in trace.gpus}
    cores = trace.header.get("cpu_cores")
    groups: dict[int, _Group] = {}
    for event in trace.events:
        ph, pid = event.get("ph"), event.get("pid")
        if ph not in ("C", "i") or (pid != CPU_PID and pid not in gpu_by_pid):
            continue
        at = ts_ns(event.get("ts"))
        if at is None:
            continue
        group = groups.get(at)
        if group is None:
            group = groups[at] = _Group()
        if ph == "C":
            parsed = counter_value(event)
            if parsed is None:
                continue
            metric, core, value = parsed
            if pid == CPU_PID:
                if core is None:
                    group.cpu[metric] = value
                else:
                    group.cores.setdefault(metric, {})[core] = value
            else:
                group.gpus.setdefault(pid, {})[metric] = value
        elif event.get("cat") == CAT_CLOCKS:
            raw = (event.get("args") or {}).get("clock_event_reasons")
            held = None if raw is None else tuple(r for r in str(raw).split(",") if r)
            group.changes.append((pid, "reasons", held))
        elif event.get("cat") == CAT_EMPTY:  # read at this timestamp, every value n/a
            group.gpus.setdefault(pid, {})
        elif event.get("cat") == CAT_LOST:
            group.changes.append((pid, "lost", bool((event.get("args") or {}).get("lost"))))

    reasons: dict[int, tuple[str, ...] | None] = {}
    lost: dict[int, bool] = {}
    carried: dict[int, dict[str, Any]] = {}  # each GPU's counters as last written
    slow: tuple[dict[str, Any], dict[int, Any]] | None = None  # RAM, load, core clocks as last written
    out: list[Sample] = []
    for at in sorted(groups):
        group = groups[at]
        for pid, what, value in group.changes:
            if what == "reasons":
                reasons[pid] = value
            else:
                lost[pid] = bool(value)
        if "ram_total_bytes" in group.cpu:  # the slow group was written here (else: carried)
            slow = ({m: group.cpu.get(m) for m in CPU_SLOW}, group.cores.get("core_freq_mhz", {}))
        cpu = _cpu_sample(group, cores, slow)
        if cpu is None:
            continue
        gpus = []
        for pid, info in gpu_by_pid.items():
            if lost.get(pid):
                gpus.append(GpuSample(info, lost=True))
                continue
            values = group.gpus.get(pid)
            if values is None:  # not read at this sample (GPUs: about every 0.1 s at most)
                values = carried.get(pid, {})
            carried[pid] = values
            counters: dict[str, Any] = {m: values.get(m) for m in GPU_COUNTERS}
            gpus.append(GpuSample(info, clock_event_reasons=reasons.get(pid), **counters))
        out.append(Sample(ts_ns=at, cpu=cpu, gpus=tuple(gpus), gpu_unavailable=trace.gpu_unavailable))
    return out


def _cpu_sample(group: _Group, cores: int | None,
                slow: tuple[dict[str, Any], dict[int, Any]] | None) -> CpuSample | None:
    """The CPU at one timestamp: its own counters, and RAM, load and core clocks as last written
    (at this timestamp or before). None where incomplete."""
    cpu = group.cpu
    util = group.cores.get("core_util_pct", {})
    n = cores if isinstance(cores, int) else len(util)
    if cpu.get("cpu_util_pct") is None or len(util) < n or slow is None:
        return None
    scalars, freq = slow
    if scalars["ram_used_bytes"] is None or scalars["ram_total_bytes"] is None:
        return None
    return CpuSample(
        cpu_util_pct=cpu["cpu_util_pct"],
        core_util_pct=tuple(util[i] for i in range(n)),
        core_freq_mhz=tuple(freq.get(i) for i in range(n)),
        cpu_power_w=cpu.get("cpu_power_w"),
        ram_used_bytes=scalars["ram_used_bytes"],
        ram_total_bytes=scalars["ram_total_bytes"],
        load1=scalars["load1"],
    )
