"""What a recording beside a workload shows of GPU 0: read from the trace file with gputop's own
reader (tests/gpu/test_gpu_workloads.py on a GPU; tests/gpu/test_gpu_rules.py here)."""

from __future__ import annotations

import statistics
from pathlib import Path
from typing import Any


def _median(values: list[Any]) -> float | None:
    present = [v for v in values if v is not None]
    return statistics.median(present) if present else None


def analyse_run(path: Path) -> dict[str, Any]:
    """GPU 0 over a `record --run` trace: the sample rate, medians before the first step and
    during the steps, and the energy counter's delta against power integrated over time."""
    from gputop.trace import load

    trace = load(path)
    samples, steps = trace.samples(), trace.workload_steps()
    out: dict[str, Any] = {"samples": len(samples), "steps": len(steps), "complete": trace.complete}
    if not samples or not samples[0].gpus:
        return out
    span = (samples[-1].ts_ns - samples[0].ts_ns) / 1e9
    out["span_s"], out["rate_hz"] = span, (len(samples) - 1) / span if span > 0 else None
    if steps:
        begin, end = steps[0].ts_ns - int(steps[0].wall_s * 1e9), steps[-1].ts_ns
        during = [s.gpus[0] for s in samples if begin <= s.ts_ns <= end and s.gpus]
        before = [s.gpus[0] for s in samples if s.ts_ns < begin and s.gpus]
        for metric in (
            "sm_active_pct",
            "tensor_active_pct",
            "sm_occupancy_pct",
            "dram_bw_util_pct",
            "dram_bw_bytes_per_s",
            "gpu_util_pct",
            "power_w",
            "sm_clock_mhz",
            "temp_c",
        ):
            out[f"during_{metric}"] = _median([getattr(g, metric) for g in during])
        out["before_power_w"] = _median([g.power_w for g in before])
        out["samples_during"], out["samples_before"] = len(during), len(before)
    read = [
        (s.ts_ns, s.gpus[0].power_w, s.gpus[0].energy_j)
        for s in samples
        if s.gpus and s.gpus[0].power_w is not None and s.gpus[0].energy_j is not None
    ]
    if len(read) >= 2:
        out["energy_counter_j"] = read[-1][2] - read[0][2]
        out["power_integral_j"] = sum((a[1] + b[1]) / 2 * (b[0] - a[0]) / 1e9 for a, b in zip(read, read[1:]))
    return out
