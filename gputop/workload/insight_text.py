"""The insight part of ``report``'s workload summary (gputop.workload.insight.recorded's keys)
as text lines: steps/s, step time p50/p95, data wait, the job's CPU and cores, the verdict, and
the tail of the output."""

from __future__ import annotations

from typing import Any

from gputop import format as fmt
from gputop.workload import placement


def lines(w: dict[str, Any]) -> list[str]:
    """Steps/s, step time p50/p95, data wait, the job's processes, the verdict, the output's tail."""
    if "verdict" not in w:
        return []
    sps, p50, p95, share = w["steps_per_s"], w["step_time_s_p50"], w["step_time_s_p95"], w["data_wait_share"]
    source = {"auto": "detected by gputop's hooks", "events": "reported by the workload"}.get(w["steps_source"] or "")
    lines = [
        f"  steps       {fmt.NA if sps is None else f'{fmt.amount(sps)}/s'}" + (f" ({source})" if source else ""),
        f"  step p50    {fmt.step_time(p50)}   p95 {fmt.step_time(p95)}",
        f"  data wait   {fmt.NA if share is None else f'{100 * share:.0f} % of step time'}",
    ]
    job = w.get("job") or {}
    cpu, cores = job.get("cpu_pct"), job.get("cores")
    if cpu is not None or cores:
        where = f" on cores {fmt.core_ranges(cores)}" if cores else ""
        workers = f", {job['workers']} worker processes" if job.get("workers") else ""
        lines.append(f"  job CPU     {fmt.NA if cpu is None else f'{cpu / 100:.2f} cores'}{where}{workers}")
    v = w["verdict"]
    lines.append(f"  verdict     {v['kind'].replace('_', '-')}: {v['evidence']}" + (f". {v['suggestion']}." if v.get("suggestion") else ""))
    lines.append(f"  placement   {placement_text(w.get('placement'))}")
    if w.get("output_tail"):
        lines.append(f"  output ({w['output_lines']} lines, the last {len(w['output_tail'])}):")
        lines += [f"    {line}" for line in w["output_tail"]]
    return lines


def placement_text(p: dict[str, Any] | None) -> str:
    """``workload.placement`` in words: the warning, or how much of the job's CPU time was near."""
    if p is None:
        return f"{fmt.NA} (the job ran on the CPU, NVML gives its GPUs no CPU affinity, or it used no CPU time)"
    if p["warning"]:
        return f"⚠ {p['warning']}"
    near = 1.0 - (p["far_share"] or 0.0)
    return (
        f"{100 * near:.0f} % of the job's {p['cpu_s']:.1f} s of CPU time ran near "
        f"{placement.gpu_label(p['gpus'])} (CPUs {p['near_cpus']}; GPUs from "
        f"{placement.GPUS_FROM.get(p['gpus_from'], p['gpus_from'])})"
    )
