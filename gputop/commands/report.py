"""`gputop report trace.json`: what a recording says, as a table and a terminal chart (or JSON).

Per device and metric: mean, p50, p95 and max over the samples that have a value (a gap is left
out, never counted as 0), kept as the trace streams by (gputop.commands.stats: bounded memory, percentiles
exact up to 4,096 distinct values, within 0.1 % beyond). Energy: each GPU's energy counter (last minus first), or its power
integrated over time where there is no counter; the CPU package's RAPL power integrated over
time. The "util trap": the share of samples where NVML's utilization.gpu says busy while few SMs
are active (format.util_trap). plotext is imported only to draw the chart.

A recording made with ``record --run`` also gets a workload summary: steps, the median of each
step's samples/s, TFLOP/s and MFU (step 1 left out: allocation, autotuning, compiling), and the
median of the joules-per-step counter recorded while it ran; and, from gputop.workload.insight,
where its steps came from (``auto``: detected in an unmodified script; ``events``: reported),
steps/s, step time p50/p95, the share of step time waiting for the DataLoader, what its
processes used, a verdict, and the last lines of its output.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import time
from typing import Any, Callable, Iterable, Sequence

from gputop import format as fmt
from gputop import metrics
from gputop.commands.progress import Progress
from gputop.commands.stats import EXACT_VALUES, RELATIVE_ERROR, SampleStats, Thinned
from gputop.environment import Environment
from gputop.exitstatus import ExitStatus
from gputop.model import GpuInfo, Sample
from gputop.trace import Trace, TraceError, ts_ns
from gputop.trace.marks import WorkloadEnd, WorkloadExit, WorkloadStart, text
from gputop.trace.reader import recorder_running
from gputop.trace.stream import TraceStream, WorkloadEvents, decoder_for, samples
from gputop.workload import insight, insight_text, nodes, ranks, rates

PROG = "gputop report"
EXAMPLES = """\
examples:
  gputop report trace.json              table of mean / p50 / p95 / max, energy, and a chart
  gputop report trace.json --json       the same numbers as JSON (no chart)
  gputop report node-a.json node-b.json one distributed job recorded node by node (matched by
                                        its run id): the whole job's ranks and straggler
"""
CPU_STATS = ("cpu_util_pct", "busy_cores", "cpu_power_w", "ram_used_bytes", "load1")
GPU_STATS = tuple(m for m in metrics.GPU_METRICS if metrics.metric(m).kind == "gauge")
CHART_POINTS = 4000  # the chart is a terminal wide: a longer recording is drawn from every k-th sample


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "report",
        help="summarize a recorded trace",
        description="Summarize a trace written by 'gputop record': per device and metric mean, "
        "p50, p95 and max; energy; time spent with busy NVML util but idle SMs; a chart. The file "
        "is read once as a stream, in bounded memory whatever its length: n, mean and max are "
        f"exact; p50 and p95 are exact while a metric has at most {EXACT_VALUES:,} distinct "
        f"values, and within {RELATIVE_ERROR * 100:g} % of the exact value beyond (a bounded "
        "logarithmic histogram).",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "trace",
        metavar="TRACE",
        nargs="+",
        help="trace file written by 'gputop record'; several: the nodes' traces of one distributed run",
    )
    parser.add_argument("--json", action="store_true", help="print the summary as JSON")
    parser.add_argument("--no-chart", action="store_true", help="leave out the terminal chart")
    return parser


def run(args: argparse.Namespace, env: Environment) -> int:
    paths = [args.trace] if isinstance(args.trace, str) else list(args.trace)  # one path, as callers in Python give it
    if len(paths) > 1:
        return _run_job(paths, args.json, env)
    try:
        summary, points, _ = _read_shown(paths[0], env)
    except TraceError as exc:
        return env.error(str(exc))
    if args.json:
        env.stdout.write(json.dumps(summary, indent=2) + "\n")
        return ExitStatus.OK
    env.stdout.write(to_text(summary))
    if not args.no_chart and len(points) >= 2:
        env.stdout.write(chart(points, width=shutil.get_terminal_size((100, 24)).columns, color=env.stdout_isatty))
    return ExitStatus.OK


def _read_shown(path: str, env: Environment) -> tuple[dict[str, Any], list[Sample], Trace]:
    """``_read`` with its progress on stderr (cleared, however it ends)."""
    size = os.path.getsize(path) if os.path.isfile(path) else 0
    progress = Progress(size, f"{PROG}: reading {os.path.basename(path)}", env.stderr, clock=env.clock, tty=env.stderr_isatty)
    try:
        return _read(path, progress)
    finally:
        progress.clear()


def _run_job(paths: Sequence[str], as_json: bool, env: Environment) -> int:
    """Several traces: the nodes of one distributed run, joined (gputop.workload.nodes)."""
    summaries, recordings = [], []
    try:
        for path in paths:
            summary, points, trace = _read_shown(path, env)
            summaries.append(summary)
            recordings.append(_node(trace, summary, points))
        job = nodes.join(recordings)
    except TraceError as exc:
        return env.error(str(exc))
    except nodes.JobMismatch as exc:
        return env.error(str(exc), ExitStatus.USAGE)
    if as_json:
        env.stdout.write(json.dumps({"workload": job, "traces": summaries}, indent=2) + "\n")
    else:
        env.stdout.write("\n".join(nodes.text_lines(job)) + "\n")
    return ExitStatus.OK


def _node(trace: Trace, summary: dict[str, Any], samples: Sequence[Sample]) -> nodes.NodeRecording:
    w = trace.workload
    steps, hellos = ([], {}) if w is None else (trace.workload_steps(), ranks.recorded_hellos(trace.events, w["pid"]))
    ended = (summary.get("workload") or {}).get("ended")
    return nodes.node(trace.path, steps, hellos, samples, host=summary["host"], duration_s=summary["duration_s"], ended=ended)


def read(path: str, progress: Callable[[int], None] | None = None) -> tuple[dict[str, Any], list[Sample]]:
    """The summary of the recording at ``path``, read once as a stream in bounded memory, and
    the samples the chart draws (at most CHART_POINTS of them, evenly thinned). TraceError for
    a file that is not a readable trace or holds no complete sample."""
    summary, points, _ = _read(path, progress)
    return summary, points


def _read(path: str, progress: Callable[[int], None] | None = None) -> tuple[dict[str, Any], list[Sample], Trace]:
    with TraceStream(path, progress) as stream:
        header = stream.header
        workload = WorkloadEvents(header)
        decoder = decoder_for(header, on_event=workload.event, on_counter=workload.counter)
        acc = SampleStats(header.gpus, CPU_STATS, GPU_STATS)
        points: Thinned[Sample] = Thinned(CHART_POINTS)
        for sample in samples(stream, decoder):
            acc.add(sample)
            points.add(sample)
        if not acc.samples:
            raise TraceError(f"{path} has no complete sample")
        trace = workload.trace(header, stream.complete)
    # the verdict's means over the steps come from the thinned samples (bounded, evenly spread)
    summary = _summary(trace, acc, points.items)
    summary["unreadable_events"] = decoder.unreadable
    return summary, points.items, trace


# ---------------------------------------------------------------------------------------------
# Numbers


def stats(values: Iterable[float | None]) -> dict[str, float | int | None]:
    """mean / p50 / p95 / max of the values present (linear interpolation between ranks)."""
    present = sorted(float(v) for v in values if v is not None and math.isfinite(v))
    if not present:
        return {"n": 0, "mean": None, "p50": None, "p95": None, "max": None}
    return {
        "n": len(present),
        "mean": sum(present) / len(present),
        "p50": rates.percentile(present, 50),
        "p95": rates.percentile(present, 95),
        "max": present[-1],
    }


def integrate_j(ts_ns: Sequence[int], power_w: Sequence[float | None]) -> float | None:
    """Energy from power by the trapezoid rule, over intervals where both ends are known."""
    total, any_interval = 0.0, False
    for i in range(1, len(ts_ns)):
        a, b = power_w[i - 1], power_w[i]
        if a is None or b is None:
            continue
        total += (a + b) / 2.0 * (ts_ns[i] - ts_ns[i - 1]) / 1e9
        any_interval = True
    return total if any_interval else None


def summarize(trace: Trace, samples: Sequence[Sample]) -> dict[str, Any]:
    """The summary of samples already in memory (``read`` streams a file instead)."""
    acc = SampleStats(trace.gpus, CPU_STATS, GPU_STATS)
    for sample in samples:
        acc.add(sample)
    return _summary(trace, acc, samples)


def _no_sm_activity(info: GpuInfo, lost: int) -> str:
    """Why a GPU's recording holds no sample with both NVML util and SM activity."""
    if info.vendor == "amd":
        return "an AMD GPU gives none, only the CUs' busy share (GFX activity)"
    if info.gpm_supported and not info.mig_enabled:
        return "the GPU was lost before GPM gave a reading" if lost else "GPM gave no reading beside NVML util"
    return fmt.sm_gap(info.architecture, info.gpm_supported, info.mig_enabled)


def _summary(trace: Trace, acc: SampleStats, samples: Sequence[Sample]) -> dict[str, Any]:
    acc.finish()
    assert acc.first_ns is not None and acc.last_ns is not None
    cpu_energy = acc.cpu_energy.joules
    gpus = []
    for info, g in zip(trace.gpus, acc.gpu):
        energy, source = g.energy_delta, "energy counter"
        if info.energy_counter is False:  # the recorder integrated power itself: say so
            source = "power integrated over time (the GPU keeps no energy counter)"
        if energy is None:
            energy, source = g.power.joules, "power integrated over time"
        gpus.append(
            {
                "index": info.index,
                "name": info.name,
                "uuid": info.uuid,
                "sm_count": info.sm_count,
                "metrics": {m: d.summary() for m, d in g.metrics.items()},
                "energy_j": energy,
                "energy_source": source if energy is not None else None,
                "util_trap_share": g.trapped / g.both if g.both else None,
                "util_trap_na_reason": None if g.both else _no_sm_activity(info, g.lost),
                "util_trap_samples": g.both,
                "lost_samples": g.lost,
            }
        )
    complete = trace.complete
    return {
        "path": trace.path,
        "trace_version": trace.version,
        "gputop_version": trace.header.get("gputop_version"),
        "host": trace.header.get("host"),
        "settings": trace.settings,
        "complete": complete,
        "being_written": not complete and recorder_running(trace),
        "unreadable_events": 0,  # of the samples' events, left out: a time stamp that is no time
        "start_ns": acc.first_ns,
        "duration_s": (acc.last_ns - acc.first_ns) / 1e9,
        "samples": acc.samples,
        "cpu": {
            "cores": acc.cores,
            "metrics": {m: d.summary() for m, d in acc.cpu.items()},
            "energy_j": cpu_energy,
            "energy_source": "RAPL package power integrated over time" if cpu_energy is not None else None,
        },
        "gpus": gpus,
        "gpu_unavailable": trace.gpu_unavailable,
        "util_trap_rule": {"gpu_util_pct_at_least": fmt.UTIL_TRAP_GPU_PCT, "sm_active_pct_below": fmt.UTIL_TRAP_SM_PCT},
        "workload": workload_summary(trace, samples),
    }


def workload_summary(trace: Trace, samples: Sequence[Sample] | None = None) -> dict[str, Any] | None:
    """What the launched workload achieved, from its recorded steps (and ``samples``, the
    trace's, for the verdict); None without one."""
    workload = trace.workload
    if workload is None:
        return None
    start = WorkloadStart.of(trace.workload_mark("start"))
    end = WorkloadEnd.of(trace.workload_mark("end"))
    exit_ = WorkloadExit.of(trace.workload_mark("exit"))
    steps = trace.workload_steps()
    # a distributed job: its ranks, and the job's step as its slowest rank's (gputop.workload.ranks)
    if samples is None:
        samples = trace.samples()
    hellos, byes = (ranks.recorded_hellos(trace.events, workload["pid"], name) for name in ("hello", "bye"))
    jobs, output = _job_and_output(trace, workload["pid"])
    per_rank = ranks.summary(steps, hellos, samples, byes, jobs)
    if per_rank:  # its latest attempt's (an elastic restart starts a rank again in a new process)
        steps = [s for s in steps if s.rank == per_rank["job_step_rank"] and s.pid == per_rank["job_step_pid"]]
    measured = [s for s in steps if s.step != 1 and s.wall_s > 0] or [s for s in steps if s.wall_s > 0]
    flops, peak = start.flops_per_step, start.peak_flops
    each = [rates.per_step(s, flops, peak) for s in measured]
    joules = trace.workload_counter("joules_per_step")
    source = "auto" if steps and steps[-1].source == "auto" else "events" if steps else None
    tokens = start.tokens_per_sample  # a language model's context: tokens/s too
    per_s = rates.median(r.samples_per_s for r in each)
    # the rates to quote: the measured steps' samples (FLOPs) over their time, never a median of
    # per-step rates (steps of 1 ms and 66 ms in turn: a loader's workers); a job of ranks: the sum
    window = rates.over(measured, flops, peak)
    rate = per_rank["job_samples_per_s"] if per_rank else window.samples_per_s
    return {
        **insight.recorded(
            steps,
            jobs,
            samples,
            source,
            device=start.device,
            device_uuid=start.device_uuid,
            rank_pid=steps[-1].pid if per_rank and steps else None,
            rank_pids=frozenset(pid for pid, hello in hellos.items() if isinstance(hello.get("rank"), int)),
        ),
        **per_rank,
        "stacks": _stacks(trace, workload["pid"]),
        "output_lines": len(output),
        "output_tail": output[-OUTPUT_TAIL:],
        "name": text(workload.get("name")),
        "pid": workload["pid"],
        "argv": workload.get("argv"),
        "device": start.device,
        "device_name": start.device_name,
        "precision": start.precision,
        "batch_size": start.batch_size,
        "sample_unit": start.sample_unit or "samples",
        "tokens_per_sample": tokens,
        "steps": len(steps),
        "steps_measured": len(measured),
        "steps_planned": start.steps_planned,
        "end_status": end.status,
        "end_error": end.error,
        "exit_status": exit_.status,
        "exit_returncode": exit_.returncode,
        "exit_error": exit_.error,
        "exit_signal": exit_.signal,
        "stopped_by": exit_.stopped_by,
        "ended": _ended(exit_, end, trace.complete),
        "lost": dict(exit_.losses),
        "samples_per_s": rate,
        "tokens_per_s": rate * tokens if tokens and rate is not None else None,
        "tflops": window.tflops,
        "mfu_pct": window.mfu_pct,
        "samples_per_s_median": per_s,
        "tokens_per_s_median": per_s * tokens if tokens and per_s is not None else None,
        "tflops_median": rates.median(r.tflops for r in each),
        "mfu_pct_median": rates.median(r.mfu_pct for r in each),
        "peak_flops": peak,
        "peak_flops_source": source if source in ("table", "measured") else None,
        "joules_per_step_median": rates.median(joules),
        "step_time_s_median": rates.median(s.wall_s for s in measured),
    }


OUTPUT_TAIL = 10  # lines of the workload's output in the report


def _job_and_output(trace: Trace, pid: int) -> tuple[list[tuple[int, dict[str, Any]]], list[str]]:
    """The workload's ``job`` instants, (ts_ns, args), and its output lines, in file order."""
    jobs, output = [], []
    for event in trace.events:
        if event.get("ph") != "i" or event.get("pid") != pid:
            continue
        args, name = event.get("args"), event.get("name")
        if not isinstance(args, dict):
            continue
        if name == "job":
            at = ts_ns(event.get("ts"))
            if at is not None:
                jobs.append((at, args))
        elif name in ("stdout", "stderr") and isinstance(args.get("line"), str) and not args.get("progress"):
            output.append(args["line"])
    return jobs, output


def _stacks(trace: Trace, pid: int) -> list[dict[str, Any]]:
    """The Python stacks ``record`` captured from every rank where it ended on a stall."""
    keys = ("rank", "pid", "root", "stalled", "threads", "stacks", "error")
    return [
        {k: event["args"].get(k) for k in keys}
        for event in trace.events
        if event.get("name") == "stacks" and event.get("pid") == pid and event.get("ph") == "i" and isinstance(event.get("args"), dict)
    ]


def _stacks_text(stacks: list[dict[str, Any]]) -> list[str]:
    if not stacks:
        return []
    lines = [f"  stalled at the end: {stacks[0]['stalled']}; each process's Python stacks:"]
    for s in stacks:
        who = f"rank {s['rank']}" if s["rank"] is not None else "first process" if s["root"] else "process"
        if s["stacks"] is None:
            lines.append(f"  {who}: {s['error'] or 'no stacks'}")
            continue
        lines.append(f"  {who} (pid {s['pid']}), {s['threads']} threads:")
        lines += [f"    {line}" for line in s["stacks"].rstrip("\n").split("\n")]
    return lines


_LOSSES = {
    "events_ignored": "event lines ignored (malformed, unknown, or unread)",
    "pending_dropped": "events dropped unwritten",
    "steps_trimmed": "steps drawn from the previous step's end (rates use their own wall time)",
    "steps_out_of_order": "steps out of order (kept, as instants)",
    "phases_unmatched": "phase ends without a begin (left out)",
}


def _ended(exit_: WorkloadExit, end: WorkloadEnd, complete: bool) -> str:
    """How the workload ended, in words: from the recorder's ``exit`` mark (the process's own
    fate) where there is one, else from the workload's ``end`` event."""
    status, rc, error = exit_.status, exit_.returncode, exit_.error
    if status in ("ok", "stopped"):
        return fmt.ended(status, exit_.stopped_by)
    if status == "failed":
        if rc is not None and rc < 0:
            return f"killed by {exit_.signal or f'signal {-rc}'}"
        code = "" if rc is None else f" (exit {rc})"
        return f"failed: {error}{code}" if error else f"failed{code}"
    if end.status == "ok":
        return "finished"
    if end.status == "error":
        return f"ended with an error: {end.error}" if end.error else "ended with an error (no message)"
    if not complete:
        return "no end recorded (the recording was cut off)"
    return "no end recorded"


# ---------------------------------------------------------------------------------------------
# Text


def _value(metric: str, value: float | None) -> str:
    if value is None:
        return fmt.NA
    unit = "cores" if metric == "busy_cores" else metrics.metric(metric).unit
    if unit == "%":
        return f"{value:.1f} %"
    if unit == "bytes":
        return fmt.bytes_(value)
    if unit == "bytes/s":
        return fmt.rate(value)
    if unit == "W":
        return f"{value:.1f} W"
    if unit == "MHz":
        return fmt.mhz(value)
    if unit == "C":
        return fmt.celsius(value)
    return f"{value:.2f}"


def _table(title: str, rows: dict[str, dict[str, Any]]) -> list[str]:
    lines = [f"{title:<24}{'mean':>12}{'p50':>12}{'p95':>12}{'max':>12}"]
    missing = []
    for metric, st in rows.items():
        if not st["n"]:
            missing.append(metric)
            continue
        cells = "".join(f"{_value(metric, st[k]):>12}" for k in ("mean", "p50", "p95", "max"))
        lines.append(f"  {metric:<22}{cells}")
    if missing:
        lines.append(f"  n/a: {', '.join(missing)}")
    return lines


def to_text(summary: dict[str, Any]) -> str:
    start = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(summary["start_ns"] / 1e9))
    interval = summary["settings"].get("interval_s")
    every = f" every {interval:g} s" if isinstance(interval, (int, float)) else ""
    lines = [
        f"{summary['path']}: {summary['host']}, {start}, {summary['duration_s']:.1f} s, "
        f"{summary['samples']} samples{every} (gputop {summary['gputop_version']})"
    ]
    if summary.get("being_written"):
        pid = summary["settings"].get("pid")
        lines.append(
            f"  the recording is still being written (its recorder, pid {pid}, is running; or it was cut off): showing the samples so far"
        )
    elif not summary["complete"]:
        lines.append("  the recording did not finish cleanly (no closing ']'): showing every complete sample")
    if summary["unreadable_events"]:
        lines.append(f"  {summary['unreadable_events']} time stamps are no time: their events left out (the rest of the recording is read)")
    cpu = summary["cpu"]
    lines += ["", *_table(f"CPU ({cpu['cores']} cores)", cpu["metrics"])]
    for gpu in summary["gpus"]:
        lines += ["", *_table(f"GPU {gpu['index']} {gpu['name']}", gpu["metrics"])]
        if gpu["lost_samples"]:
            lines.append(f"  lost (not answering) in {gpu['lost_samples']} samples")
    if not summary["gpus"]:
        lines += ["", f"GPU  none recorded: {summary['gpu_unavailable'] or 'no NVIDIA GPU found'}"]
    lines += ["", "Energy"]
    for gpu in summary["gpus"]:
        lines.append(
            f"  GPU {gpu['index']}   {fmt.joules(gpu['energy_j']):>10}" + (f"  ({gpu['energy_source']})" if gpu["energy_source"] else "")
        )
    lines.append(
        f"  CPU     {fmt.joules(cpu['energy_j']):>10}"
        + (f"  ({cpu['energy_source']})" if cpu["energy_source"] else "  (RAPL not readable)")
    )
    if summary["gpus"]:
        rule = summary["util_trap_rule"]
        lines += [
            "",
            f"Util trap: NVML util >= {rule['gpu_util_pct_at_least']:g} % while SM "
            f"activity < {rule['sm_active_pct_below']:g} % (kernels running on few SMs)",
        ]
        for gpu in summary["gpus"]:
            share = gpu["util_trap_share"]
            text = (
                f"{share * 100:.0f} % of {gpu['util_trap_samples']} samples"
                if share is not None
                else f"n/a (no SM activity: {gpu['util_trap_na_reason']})"
            )
            lines.append(f"  GPU {gpu['index']}   {text}")
    if summary.get("workload"):
        lines += ["", *_workload_text(summary["workload"])]
    return "\n".join(lines) + "\n"


def _workload_text(w: dict[str, Any]) -> list[str]:
    end = w.get("ended") or "no end recorded"
    planned = f" of {w['steps_planned']}" if w["steps_planned"] else ""
    on = " on ".join(x for x in (w["device"], w["device_name"]) if x) or "n/a"
    lines = [
        f"Workload {w['name']} (pid {w['pid']}): {on}, {w['precision'] or 'n/a'}, "
        f"batch {w['batch_size'] or 'n/a'}; {w['steps']}{planned} steps, {end}"
    ]
    if w["steps_measured"] != w["steps"]:
        lines.append(
            f"  over {w['steps_measured']} steps (step 1 is warm-up, left out): rates are their work over their time, "
            "step time and J/step medians"
        )
    for key, count in (w.get("lost") or {}).items():
        lines.append(f"  {count} {_LOSSES[key]}")

    def cell(value: float | None, text: str) -> str:
        return fmt.NA if value is None else text

    rate, tf, mfu, j, st = (
        w["samples_per_s"],
        w["tflops"],
        w["mfu_pct"],
        w["joules_per_step_median"],
        w["step_time_s_median"],
    )
    peak = " (peak measured by the workload)" if w["peak_flops_source"] == "measured" else ""
    rows = [(f"{w['sample_unit']}/s", cell(rate, f"{rate:,.1f}" if rate is not None else ""))]
    tokens, tok = w.get("tokens_per_sample"), w.get("tokens_per_s")
    if tokens:  # a language model: tokens/s, the figure its users quote
        per = w["sample_unit"][:-1] if w["sample_unit"].endswith("s") else w["sample_unit"]
        rows.append(("tokens/s", cell(tok, f"{tok:,.0f}" if tok is not None else "") + f"   ({tokens} per {per})"))
    rows += [
        ("step time", fmt.step_time(st)),  # the unit of step p50 below
        ("TFLOP/s", fmt.tflops(tf)),
        ("MFU", cell(mfu, f"{mfu:.1f} %" if mfu is not None else "") + (peak if mfu is not None else "")),
        ("J/step", fmt.amount(j)),
    ]
    width = max(12, *(len(label) + 3 for label, _ in rows))
    lines += [f"  {label:<{width}}{value}" for label, value in rows]
    return lines + ranks.text_lines(w) + _stacks_text(w.get("stacks") or []) + insight_text.lines(w)


def chart(samples: Sequence[Sample], width: int = 100, height: int = 18, color: bool = True) -> str:
    """CPU busy cores (as % of all cores) and each GPU's SM activity over time, as text."""
    import plotext as plt  # only here: the report's numbers need no plotting library

    t0 = samples[0].ts_ns
    plt.clear_figure()
    plt.plotsize(max(40, width), height)
    xs = [(s.ts_ns - t0) / 1e9 for s in samples]
    plt.plot(xs, [s.cpu.cpu_util_pct for s in samples], label="CPU busy cores %")
    for k in range(len(samples[0].gpus)):
        points = [(x, s.gpus[k].sm_active_pct) for x, s in zip(xs, samples) if k < len(s.gpus) and s.gpus[k].sm_active_pct is not None]
        label = f"GPU {k} SM active %"
        if not points:  # no GPM: NVML's coarser utilization, labelled as such
            points = [(x, s.gpus[k].gpu_util_pct) for x, s in zip(xs, samples) if k < len(s.gpus) and s.gpus[k].gpu_util_pct is not None]
            amd = samples[0].gpus[k].info.vendor == "amd"
            label = f"GPU {k} CUs busy % (GFX activity)" if amd else f"GPU {k} util % (NVML; no SM activity)"
        if points:
            plt.plot([p[0] for p in points], [p[1] for p in points], label=label)
    plt.ylim(0, 100)
    plt.xlabel("seconds")
    plt.title("CPU busy cores % vs GPU SM activity %")
    text: str = plt.build()
    plt.clear_figure()
    if not color:
        text = plt.uncolorize(text)
    return "\n" + text + "\n"
