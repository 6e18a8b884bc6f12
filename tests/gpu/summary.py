"""The GPU check's one summary: each test marked ``gpu``, its outcome, time and figures (what it
recorded with the ``figure`` fixture, pytest's user properties), and the files it left.
tests/gpu/conftest.py writes it to summary.md in the check's folder after every test, so a check
cut off by its time limit still leaves one."""

from __future__ import annotations

import platform
import socket
import time
from dataclasses import dataclass, field
from pathlib import Path

# small real outputs worth keeping under tests/data/ as golden fixtures
FIXTURES = (
    "snapshot.json",
    "smi_q.xml",
    "smi_query.csv",
    "torch_props.json",
    "crosscheck.json",
    "snapshot_fake_h100.json",
    "nvml_latency.json",
    "matmul_report.json",
    "compare_mlp.json",
    "compare_cnn.json",
    "compare_transformer.json",
    "compare_matmul.json",
    "plain_report.json",
)
FIXTURE_MAX_BYTES = 200_000


@dataclass
class Result:
    """One test's outcome: ``outcome`` is pytest's (passed, failed, skipped), ``message`` the
    failure's or the skip's one line."""

    nodeid: str
    outcome: str
    seconds: float
    figures: list[tuple[str, str]] = field(default_factory=list)
    message: str | None = None


def _cell(text: object) -> str:
    return str(text).replace("|", "/").replace("\n", " ")


def render(results: list[Result], out: Path) -> str:
    """summary.md: the counts, one row a test, then each test's figures, then the outputs."""
    counts = {k: sum(r.outcome == k for r in results) for k in ("passed", "failed", "skipped")}
    lines = [
        "# GPU check (pytest -m gpu)",
        "",
        (
            f"- when: {time.strftime('%Y-%m-%d %H:%M:%S UTC', time.gmtime())}; host {socket.gethostname()}; "
            f"Python {platform.python_version()}"
        ),
        f"- result: {counts['passed']} passed, {counts['failed']} failed, {counts['skipped']} skipped"
        + "".join(f"; **{r.nodeid.split('::')[-1]} FAILED**" for r in results if r.outcome == "failed"),
        "",
        "| test | outcome | seconds | why |",
        "|---|---|---:|---|",
    ]
    for r in results:
        outcome = f"**{r.outcome}**" if r.outcome == "failed" else r.outcome
        lines.append(f"| {_cell(r.nodeid.split('::', 1)[-1])} | {outcome} | {r.seconds:.1f} | {_cell(r.message or '-')} |")
    for r in results:
        if r.figures:
            lines += ["", f"## {r.nodeid.split('::', 1)[-1]}: {r.outcome}", "", "| figure | value |", "|---|---|"]
            lines += [f"| {_cell(name)} | {_cell(value)} |" for name, value in r.figures]
    kept = [p for p in (out / name for name in FIXTURES) if p.exists()]
    lines += ["", "## Outputs", ""]
    if kept:
        lines.append("Small real outputs, to copy under tests/data/ as golden fixtures:")
        lines += [
            f"- `{p.name}` ({p.stat().st_size:,} bytes)" + (" (large: trim before keeping)" if p.stat().st_size > FIXTURE_MAX_BYTES else "")
            for p in kept
        ]
    lines.append("- traces: " + (", ".join(f"`{p.name}`" for p in sorted(out.glob("*_trace.json"))) or "none"))
    lines.append("- screenshots: " + (", ".join(f"`screenshots/{p.name}`" for p in sorted(out.glob("screenshots/*.svg"))) or "none"))
    lines.append("- every child's command line, exit and output: `logs/`")
    return "\n".join(lines) + "\n"
