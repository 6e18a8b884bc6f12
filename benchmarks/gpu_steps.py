"""Steps 1 and 2 of benchmarks/gpu_check.py (the cross-check and the recording) and what every
step uses: each takes the check's context and its StepResult, runs its children (every one with
a time-out), and adds checks and figures. Standard library plus gputop (its trace reader); torch
runs only in children. Steps 3 to 5 are in gpu_runs.py.
"""

from __future__ import annotations

import json
import os
import queue
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import gpu_crosscheck as xc
from gpu_summary import write_summary  # noqa: F401  (gpu_check calls it from here)

STOP_WAIT_S = 10.0


def stop_group(child: subprocess.Popen) -> tuple[str, str]:
    """SIGTERM to a timed-out child's process group (gputop stops its workload then), SIGKILL
    after STOP_WAIT_S; returns what it printed."""
    for sig, wait in ((signal.SIGTERM, STOP_WAIT_S), (signal.SIGKILL, 5.0)):
        try:
            os.killpg(child.pid, sig)
        except ProcessLookupError:
            pass
        try:
            return child.communicate(timeout=wait)
        except subprocess.TimeoutExpired:
            continue
    return "", ""


def _median(values: list[float]) -> float | None:
    present = sorted(v for v in values if v is not None)
    if not present:
        return None
    mid = len(present) // 2
    return present[mid] if len(present) % 2 else (present[mid - 1] + present[mid]) / 2


def _json(proc: Any) -> Any | None:
    try:
        return json.loads(proc.stdout) if proc.ok else None
    except json.JSONDecodeError:
        return None


def _save(ctx: Any, name: str, text: str) -> Path:
    path = ctx.out / name
    path.write_text(text)
    return path


def _py(*argv: str) -> list[str]:
    return [sys.executable, *argv]


# ------------------------------------------------------------------------ 1. cross-check

PROBE = r"""
import json, os, sys
import torch
if not torch.cuda.is_available():
    print(json.dumps({"error": "torch sees no CUDA device"}), flush=True)
    sys.exit(3)
p = torch.cuda.get_device_properties(0)
held = torch.ones(256 * 2**20, dtype=torch.float32, device="cuda")  # 1 GiB, a context to see
torch.cuda.synchronize()
print(json.dumps({"pid": os.getpid(), "name": p.name, "multi_processor_count": p.multi_processor_count,
                  "total_memory": p.total_memory, "uuid": str(getattr(p, "uuid", "")),
                  "capability": f"{p.major}.{p.minor}", "L2_cache_size": getattr(p, "L2_cache_size", None),
                  "torch": torch.__version__, "torch_cuda": torch.version.cuda}), flush=True)
print("ready", flush=True)
sys.stdin.read()  # hold the context until the check closes stdin
"""


class Probe:
    """A torch child that holds 1 GiB on GPU 0 while the readings are taken, and says what
    torch sees (SM count)."""

    def __init__(self, ctx: Any, timeout: float) -> None:
        self.child = subprocess.Popen(_py("-c", PROBE), stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                      stderr=subprocess.PIPE, text=True, env=ctx.env, cwd=ctx.out,
                                      start_new_session=True)
        lines: queue.Queue[str | None] = queue.Queue()
        threading.Thread(target=self._read, args=(lines,), daemon=True).start()
        self.props: dict[str, Any] | None = None
        deadline = time.monotonic() + timeout
        while True:
            try:
                line = lines.get(timeout=max(0.1, deadline - time.monotonic()))
            except queue.Empty:
                line = None
            if line is None or line.strip() == "ready":
                break
            if line.startswith("{"):
                self.props = json.loads(line)
        self.ready = line is not None and self.props is not None and "error" not in self.props

    def _read(self, lines: queue.Queue) -> None:
        assert self.child.stdout is not None
        for line in self.child.stdout:
            lines.put(line)
        lines.put(None)

    def stop(self) -> str:
        try:
            assert self.child.stdin is not None
            self.child.stdin.close()
            self.child.wait(timeout=20)
        except (subprocess.TimeoutExpired, BrokenPipeError, OSError):
            stop_group(self.child)
        return self.child.stderr.read() if self.child.stderr else ""


def query_smi(ctx: Any, fields: tuple[str, ...] = xc.SMI_FIELDS) -> tuple[Any, tuple[str, ...]]:
    """nvidia-smi --query-gpu; a field this driver calls invalid is dropped and the query repeated."""
    fields = tuple(fields)
    for attempt in range(8):
        proc = ctx.run(f"smi_query_{attempt}", ["nvidia-smi", f"--query-gpu={','.join(fields)}",
                                                "--format=csv"], timeout=30)
        bad = re.search(r'Field "([^"]+)" is not a valid field', proc.stdout + proc.stderr)
        if proc.ok or not bad or bad.group(1) not in fields:
            return proc, fields
        fields = tuple(f for f in fields if f != bad.group(1))
    return proc, fields


def _concurrently(*jobs: Any) -> list[Any]:
    results: list[Any] = [None] * len(jobs)
    errors: list[BaseException] = []

    def run(i: int, job: Any) -> None:
        try:
            results[i] = job()
        except BaseException as exc:  # re-raised below, on the calling thread
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(i, job)) for i, job in enumerate(jobs)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise errors[0]
    return results


def crosscheck(ctx: Any, step: Any) -> None:
    snap_argv = _py("-m", "gputop", "snapshot", "--json")
    readings = (_simulated_readings if ctx.simulated else _driver_readings)(ctx, step, snap_argv)
    if readings is not None:
        _cross_check(ctx, step, *readings)


# gputop's snapshot, the reference to check it against, the fake's snapshot (if it ran)
Readings = tuple[dict[str, Any], dict[str, Any], "dict[str, Any] | None"]


def _simulated_readings(ctx: Any, step: Any, snap_argv: list[str]) -> Readings | None:
    """gputop's snapshot, the fake's own values as the reference, and the snapshot again as the
    fake's (under --simulated the 'real' side is the fake); None where the step failed."""
    snap = ctx.run("snapshot", snap_argv, timeout=60)
    doc = _json(snap)
    if doc is None or not doc.get("gpus"):
        step.fail(f"gputop snapshot --json gave no GPU: {snap.why()}")
        return None
    _save(ctx, "snapshot.json", snap.stdout)
    ctx.data["snapshot"] = doc
    reference = xc.fake_reference(ctx.env["GPUTOP_FAKE_NVML"], doc["ts_ns"], snap.pid)
    step.notes.append("simulated: no nvidia-smi; the reference is the fake's profile and its waves "
                      "at the snapshot's moment (the same epoch in both processes)")
    fake_doc = doc
    return doc, reference, fake_doc


def _driver_readings(ctx: Any, step: Any, snap_argv: list[str]) -> Readings | None:
    """gputop's snapshot, nvidia-smi's readings taken with it (and torch's properties) as the
    reference, and a snapshot of the fake H100; None where the step failed."""
    probe = Probe(ctx, timeout=ctx.timeout(120))
    try:
        if not probe.ready:
            step.check("torch holds a context on GPU 0", json.dumps(probe.props), "ready", False)
        t0 = time.time()
        xml, (query, fields), snap = _concurrently(
            lambda: ctx.run("smi_q_x", ["nvidia-smi", "-q", "-x"], timeout=60),
            lambda: query_smi(ctx),
            lambda: ctx.run("snapshot", snap_argv, timeout=60))
    finally:
        probe_err = probe.stop()
    held = (f"while a torch process (pid {probe.props['pid']}) held 1 GiB" if probe.ready and probe.props
            else "with no torch process on the GPU (it did not start)")
    step.notes.append(f"the three readings started together at {time.strftime('%H:%M:%S', time.gmtime(t0))} "
                      f"UTC, {held}")
    if probe_err.strip():
        (ctx.logs / "probe.err").write_text(probe_err)
    for proc, name in ((xml, "smi_q.xml"), (query, "smi_query.csv"), (snap, "snapshot.json")):
        step.check(f"{name} written", proc.why() if not proc.ok else f"{len(proc.stdout)} bytes", "exit 0", proc.ok)
        if proc.ok:
            _save(ctx, name, proc.stdout)
    if probe.props:
        _save(ctx, "torch_props.json", json.dumps(probe.props, indent=2) + "\n")
    dropped = [f for f in xc.SMI_FIELDS if f not in fields]
    if dropped:
        step.notes.append(f"fields this nvidia-smi does not know (left out): {', '.join(dropped)}")
    doc = _json(snap)
    if doc is not None and doc.get("gpus"):
        ctx.data["snapshot"] = doc  # the summary's header and the screenshots' check use it
    if doc is None or not doc.get("gpus") or not query.ok:
        step.fail("no snapshot with a GPU, or no nvidia-smi row, to compare")
        return None
    reference = xc.smi_reference(xc.parse_query_csv(query.stdout), xml.stdout if xml.ok else None)
    props = probe.props or {}
    src = "torch.cuda.get_device_properties(0)"
    reference["sm_count"] = (xc.Ref(props["multi_processor_count"], src) if "multi_processor_count" in props
                             else xc.Ref(None, src, missing="torch probe gave nothing"))
    fake = ctx.run("snapshot_fake", snap_argv, timeout=60, env=ctx.fake_env("H100_SXM"))
    fake_doc = _json(fake)
    if fake_doc is not None:
        _save(ctx, "snapshot_fake_h100.json", fake.stdout)
    if "pid" in props:
        pids = [p["pid"] for p in doc["gpus"][0].get("processes") or []]
        step.check("the torch probe's pid in gputop's process table", props["pid"] in pids,
                   "True (False: NVML reports another pid namespace's pids)", None)
    if "name" in props:
        rows_torch = xc.compare("name (torch)", doc["gpus"][0]["info"].get("name"),
                                xc.Ref(props["name"], src), xc.TEXT)
        step.check("name: gputop against torch", rows_torch.verdict, "match", not rows_torch.mismatch)
    return doc, reference, fake_doc


def _cross_check(ctx: Any, step: Any, doc: dict[str, Any], reference: dict[str, Any],
                 fake_doc: dict[str, Any] | None) -> None:
    """gputop's GPU 0 against the reference, row by row; and the fake against the real one."""
    gpu = doc["gpus"][0]
    rows = xc.cross_check(gpu, reference)
    ctx.data["crosscheck"] = rows
    _save(ctx, "crosscheck.md", xc.table(rows))
    _save(ctx, "crosscheck.json", json.dumps([r.as_dict() for r in rows], indent=2) + "\n")
    compared = [r for r in rows if r.verdict in ("match", "both n/a") or r.mismatch]
    for r in rows:
        if r.mismatch:
            step.check(f"cross-check {r.field}", f"gputop {r.gputop}, driver {r.driver}", r.rule, False)
    step.check("cross-check rows that match", f"{sum(not r.mismatch for r in compared)} of {len(compared)} compared "
               f"({len(rows) - len(compared)} unchecked or not shown)", "all", not any(r.mismatch for r in rows))
    if fake_doc is not None:
        diffs = xc.fake_differences(doc, fake_doc)
        ctx.data["fake_differences"] = diffs
        _save(ctx, "fake_differences.json", json.dumps(diffs, indent=2) + "\n")
        step.check("fields where the fake (H100_SXM) differs in kind", len(diffs),
                   "0 under --simulated (the 'real' side is the fake)" if ctx.simulated else "-",
                   (len(diffs) == 0) if ctx.simulated else None)


# ---------------------------------------------------------------------------- 2. record

def analyse_run(path: Path) -> dict[str, Any]:
    """GPU 0 over a `record --run` trace: before the first step, and during the steps."""
    from gputop.trace import load

    trace = load(path)
    samples, steps = trace.samples(), trace.workload_steps()
    out: dict[str, Any] = {"samples": len(samples), "steps": len(steps), "complete": trace.complete}
    if not samples or not samples[0].gpus:
        return out
    span = (samples[-1].ts_ns - samples[0].ts_ns) / 1e9
    out["span_s"] = span
    out["rate_hz"] = (len(samples) - 1) / span if span > 0 else None
    if steps:
        begin = steps[0].ts_ns - int(steps[0].wall_s * 1e9)
        end = steps[-1].ts_ns
        during = [s.gpus[0] for s in samples if begin <= s.ts_ns <= end and s.gpus]
        before = [s.gpus[0] for s in samples if s.ts_ns < begin and s.gpus]
        for metric in ("sm_active_pct", "tensor_active_pct", "sm_occupancy_pct", "dram_bw_util_pct",
                       "dram_bw_bytes_per_s", "gpu_util_pct", "power_w", "sm_clock_mhz", "temp_c"):
            out[f"during_{metric}"] = _median([getattr(g, metric) for g in during])
        out["before_power_w"] = _median([g.power_w for g in before])
        out["samples_during"], out["samples_before"] = len(during), len(before)
    ts = [s.ts_ns for s in samples if s.gpus and s.gpus[0].power_w is not None and s.gpus[0].energy_j is not None]
    power = [s.gpus[0].power_w for s in samples if s.gpus and s.gpus[0].power_w is not None
             and s.gpus[0].energy_j is not None]
    energy = [s.gpus[0].energy_j for s in samples if s.gpus and s.gpus[0].power_w is not None
              and s.gpus[0].energy_j is not None]
    if len(ts) >= 2:
        out["energy_counter_j"] = energy[-1] - energy[0]
        out["power_integral_j"] = sum((power[i] + power[i - 1]) / 2 * (ts[i] - ts[i - 1]) / 1e9
                                      for i in range(1, len(ts)))
    out["power_series"] = [(s.ts_ns, s.gpus[0].power_w) for s in samples if s.gpus]
    return out


def record(ctx: Any, step: Any) -> None:
    """30 s at 10 Hz on the GPU, the workload stopped at --duration. Simulated: until a short
    fp32 matmul on the CPU ends (its start-up there varies too much for a fixed window; in bf16
    its peak measurement alone, up to 4096^3 bf16 matmuls, took over 30 s on a loaded machine)."""
    duration, interval = ctx.s(30, 60), 0.1
    trace = ctx.out / "matmul_trace.json"
    # simulated: steps long enough (~20-50 ms each here) that the GPU reads, every 0.1 s, fall
    # inside them whatever the machine's speed (40 steps at --n 256 could end within 0.1 s)
    workload = (["--device", "cpu", "--precision", "fp32", "--n", "512", "--batch-size", "4", "--steps", "60"]
                if ctx.simulated else ["--device", "cuda", "--precision", "bf16", "--steps", "1000000"])
    rec = ctx.gputop("record", "record", "--out", str(trace), "--interval", str(interval), "--duration",
                     str(duration), "--force", "--run", "matmul", "--", *workload, "--quiet",
                     timeout=duration + 60)
    ends = "finished" if ctx.simulated else "stopped by gputop at --duration"
    last = rec.stderr.strip().splitlines()[-1:]
    step.check("gputop record --run matmul", rec.why() if not rec.ok else last, f"exit 0, {ends}",
               rec.ok and any(ends in line for line in last))
    if not trace.exists():
        return step.fail("no trace written")
    rep = ctx.gputop("report", "report", str(trace), "--json", timeout=60)
    report = _json(rep)
    step.check("gputop report --json", rep.why() if report is None else "ok", "exit 0", report is not None)
    if report is not None:
        _save(ctx, "matmul_report.json", rep.stdout)
        ctx.data["record_report"] = report
    a = analyse_run(trace)
    ctx.data["record"] = {k: v for k, v in a.items() if k != "power_series"}
    span, rate = a.get("span_s") or 0.0, a.get("rate_hz")
    step.check("samples at 10 Hz", f"{a['samples']} in {span:.1f} s ({_f(rate)} Hz)",
               ">= 8 Hz" + ("" if ctx.simulated else f" over >= {0.9 * duration:g} s"),
               rate is not None and rate >= 8 and (ctx.simulated or span >= 0.9 * duration))
    step.check("workload steps recorded", a["steps"], ">= 3", a["steps"] >= 3)
    if not a["steps"]:
        return
    on = "the fake's fixed values" if ctx.simulated else "the GPU during the steps"
    sm, tensor = a.get("during_sm_active_pct"), a.get("during_tensor_active_pct")
    step.check("GPM SM activity (median during steps)", _pct(sm), f">= 50 % ({on})", sm is not None and sm >= 50)
    step.check("GPM tensor activity (median)", _pct(tensor), ">= 20 %", tensor is not None and tensor >= 20)
    bw, util = a.get("during_dram_bw_bytes_per_s"), a.get("during_dram_bw_util_pct")
    step.check("DRAM bandwidth (median)", f"{_f(bw and bw / 1e9)} GB/s ({_pct(util)} of peak)", "> 0",
               bw is not None and bw > 0)
    step.check("NVML util (median)", _pct(a.get("during_gpu_util_pct")), "-", None)
    step.check("SM clock (median)", _f(a.get("during_sm_clock_mhz")), "-", None)
    before, during = a.get("before_power_w"), a.get("during_power_w")
    rising = f"{_f(before)} W before the first step -> {_f(during)} W during ({a.get('samples_before')} / " \
             f"{a.get('samples_during')} samples)"
    if ctx.simulated:
        step.check("power rising", rising, "n/a: the fake's power is a fixed wave, not the load", None)
    else:
        step.check("power rising", rising, ">= 1.3 x before", before is not None and during is not None
                   and during >= 1.3 * before)
    counter, integral = a.get("energy_counter_j"), a.get("power_integral_j")
    ok = counter is not None and integral and abs(counter - integral) <= 0.10 * integral
    step.check("energy counter delta vs power x time", f"{_f(counter)} J vs {_f(integral)} J",
               "within 10 % (power is a ~1 s average)", bool(ok))
    if ctx.simulated:
        errors = [abs(w - xc.fake_power_w(ctx.env["GPUTOP_FAKE_NVML"], ts)) / xc.fake_power_w(ctx.env["GPUTOP_FAKE_NVML"], ts)
                  for ts, w in a["power_series"] if w is not None]
        worst = max(errors) if errors else None
        step.check("recorded power vs the fake's own wave (worst sample)", _pct(worst and worst * 100),
                   "<= 5 %", worst is not None and worst <= 0.05)
    w = (report or {}).get("workload") or {}
    _mfu(step, "matmul MFU (median step)", w)


def _mfu(step: Any, what: str, w: dict[str, Any]) -> None:
    """MFU against the datasheet must be <= 100 %; against a peak the workload measured on a
    CPU (shared with the recorder and anything else) it is a figure only."""
    mfu, peak, source = w.get("mfu_pct_median"), w.get("peak_flops"), w.get("peak_flops_source")
    value = f"{_f(w.get('tflops_median'))} TFLOP/s = {_pct(mfu)} of {_f(peak and peak / 1e12)} TFLOP/s"
    if source == "table":
        step.check(what, value + " (datasheet)", "MFU <= 100 %", mfu is not None and mfu <= 100)
    else:
        step.check(what, value + f" ({source or 'no'} peak)", "- (no datasheet peak for this device)", None)


def _f(value: Any) -> str:
    if value is None:
        return "n/a"
    return f"{value:,.0f}" if abs(value) >= 100 else f"{value:.3g}"


def _pct(value: Any) -> str:
    return "n/a" if value is None else f"{value:.1f} %"
