"""DIR/summary.md and DIR/results.json of benchmarks/gpu_check.py: what matched, what did not,
the figures, the fields the fake gets wrong, and which small outputs to keep as fixtures."""

from __future__ import annotations

import json
import platform
import socket
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import gpu_crosscheck as xc

# small real outputs worth keeping under tests/data/ as golden fixtures (when they are real)
FIXTURES = ("snapshot.json", "smi_q.xml", "smi_query.csv", "torch_props.json", "crosscheck.json",
            "snapshot_fake_h100.json", "matmul_report.json", "compare_mlp.json", "compare_cnn.json")
FIXTURE_MAX_BYTES = 200_000


def _cell(text: Any) -> str:
    return str(text).replace("|", "/").replace("\n", " ")


def write_summary(ctx: Any, results: list[Any]) -> Path:
    out: Path = ctx.out
    snap = ctx.data.get("snapshot") or {}
    gpu = (snap.get("gpus") or [{}])[0]
    info = gpu.get("info") or {}
    passed = sum(r.status != "FAILED" for r in results)
    mode = "SIMULATED (the NVML fake, tests/fakenvml.py, and this CPU): no figure here is a GPU measurement" \
        if ctx.simulated else "real hardware"
    lines = [
        f"# gpu_check: {'simulated' if ctx.simulated else info.get('name', 'GPU')}",
        "",
        f"- mode: {mode}",
        (f"- when: {time.strftime('%Y-%m-%d %H:%M:%S UTC', time.gmtime())}; host {socket.gethostname()}; "
         f"Python {platform.python_version()}"),
        (f"- GPU: {info.get('name', 'n/a')}, {info.get('sm_count', 'n/a')} SMs, "
         f"driver {info.get('driver_version', 'n/a')}, CUDA {info.get('cuda_version', 'n/a')}, "
         f"GPM {'yes' if info.get('gpm_supported') else 'no'}"),
        f"- result: {passed} of {len(results)} steps passed or skipped"
        + "".join(f"; **{r.name} FAILED**" for r in results if r.status == "FAILED"),
        "",
        "| step | status | seconds | failed checks |",
        "|---|---|---:|---|",
    ]
    for r in results:
        bad = ", ".join(c.what for c in r.checks if c.verdict == "FAIL") or "-"
        lines.append(f"| {r.name} | {r.status} | {r.seconds:.1f} | {_cell(bad)} |")
    rows = ctx.data.get("crosscheck")
    if rows:
        against = "the fake's own values" if ctx.simulated else "nvidia-smi and torch, at the same moment"
        counts = (f"{sum(r.verdict == 'match' for r in rows)} match, {sum(r.mismatch for r in rows)} mismatch "
                  f"(in bold), {sum(r.verdict == 'both n/a' for r in rows)} n/a on both sides, "
                  f"{sum(r.verdict.startswith('unchecked') or r.verdict == xc.NOT_SHOWN for r in rows)} "
                  "unchecked or not shown by gputop.")
        lines += ["", f"## Cross-check: gputop snapshot against {against}", "", counts, "", xc.table(rows).rstrip()]
    for r in results:
        lines += ["", f"## {r.name}: {r.status} ({r.seconds:.1f} s)"]
        if r.checks:
            lines += ["", "| check | value | expected | verdict |", "|---|---|---|---|"]
            lines += [f"| {_cell(c.what)} | {_cell(c.value)} | {_cell(c.expected)} | "
                      f"{'**FAIL**' if c.verdict == 'FAIL' else c.verdict} |" for c in r.checks]
        if r.notes:
            lines += [""] + [f"- {_cell(n)}" for n in r.notes]
    lines += ["", "## Fields the fake gets wrong (to fix in tests/fakenvml.py)", ""]
    diffs = ctx.data.get("fake_differences")
    if ctx.simulated:
        lines.append("Not measurable under --simulated: the 'real' side is the fake itself "
                     f"({len(diffs or [])} differences found, 0 expected).")
    elif diffs is None:
        lines.append("n/a: the cross-check step gave no real and fake snapshots to compare.")
    elif not diffs:
        lines.append("None in kind: every metric the GPU gives, the fake gives, and the reverse.")
    else:
        lines += [("`gputop snapshot --json` over the fake's H100_SXM profile against the same on this GPU "
                   "(values that move with the load are left out):"), "",
                  "| field | fake (H100_SXM) | real | note |", "|---|---|---|---|"]
        lines += [f"| {d['field']} | {_cell(d['fake'])} | {_cell(d['real'])} | {d['note']} |" for d in diffs]
    mismatched = [r for r in rows or [] if r.mismatch]
    if mismatched and not ctx.simulated:
        lines += ["", "Cross-check mismatches are gputop's (or the driver tool's) to explain: "
                  + ", ".join(r.field for r in mismatched) + "."]
    lines += ["", "## Outputs", ""]
    kept = [p for p in (out / name for name in FIXTURES) if p.exists()]
    if kept:
        lines.append("Small outputs" + (" (simulated: not fixtures)" if ctx.simulated else
                                        ", to copy under tests/data/ as golden fixtures") + ":")
        lines += [f"- `{p.name}` ({p.stat().st_size:,} bytes)"
                  + (" (large: trim before keeping)" if p.stat().st_size > FIXTURE_MAX_BYTES else "") for p in kept]
    lines.append("- traces: " + ", ".join(f"`{p.name}`" for p in sorted(out.glob("*_trace.json"))))
    lines.append("- screenshots: " + (", ".join(f"`{s}`" for s in ctx.data.get("screenshots", [])) or "none"))
    lines.append("- every child's command line, exit and output: `logs/`")
    path = out / "summary.md"
    path.write_text("\n".join(lines) + "\n")
    doc = {"simulated": ctx.simulated, "steps": [asdict(r) for r in results],
           "crosscheck": [r.as_dict() for r in rows or []],
           "fake_differences": diffs, "record": ctx.data.get("record"),
           "references": ctx.data.get("references"), "screenshots": ctx.data.get("screenshots")}
    (out / "results.json").write_text(json.dumps(doc, indent=2, default=str) + "\n")
    return path
