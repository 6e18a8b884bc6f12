"""What each monitor costs the GPU driver, side by side, on the NVML fake's driver cost model.

Run by hand (nvitop and gpustat installed in the same venv: ``pip install nvitop gpustat``):

    .venv/bin/python benchmarks/driver_cost.py [--window 30] [--warmup 5] [--reads 50]

For each of four set-ups (1 and 8 simulated H100s; with the PCIe byte-counter field ids and
without them, where ``nvmlDeviceGetPcieThroughput`` is the only way to PCIe throughput) every
monitor runs at once, each a process of its own over the fake with its cost model on
(tests/fakenvml.py, spec option ``cost``): gputop's live view at 1 Hz (its default) and at 10 Hz,
``gputop record`` at 1 Hz and 100 Hz, ``gputop serve`` (1 Hz), ``nvitop --interval 1`` and
``gpustat --interval 1`` (these two in their ordinary code path: benchmarks/peer_site gives them
the few symbols they ask for that the fake lacks). The terminal ones run in one tmux session
(benchmarks/peers.py's ``Session``). Each process's fake writes its calls and modelled driver
time per symbol to a file (``GPUTOP_FAKE_NVML_STATS``); after ``--warmup`` seconds those are read
at the start and the end of the same ``--window``: driver time per second, calls per second and
the costliest symbols over that window. The driver time is the model's (each call charged its
cost), not measured: the same calls give the same figure on a loaded machine.

"its header showed" is the mean of the driver time (ms/s) gputop's live view showed in its
header, read every 4 s within the window, and its ratio to the model's charge. The column "in the
fake" is the same calls' own wall time inside the fake (entry to exit: the
cost, a wait for the fake's driver lock, a late wake-up on a loaded machine, the fake's Python
where it takes longer than the cost), per second: how much the machine stretched the calls.

``--baseline DIR`` adds the live view (1 Hz) of another gputop tree, with that tree's own fake,
to every set-up: before and after in one run.

Then, in this process: one read of every GPU (``NvmlSource.sample()``) on the model, ``--reads``
reads 0.1 s apart, side by side (as gputop reads them) and one after another: the median wall
time and CPU time (this process, every thread) of a read; and over the same reads what gputop
shows as its own driver time (``NvmlSource.driver_time()``: each NVML call's wall time, every
thread summed) against what the model charged for them (the ratio; 1.0 would be a call's wall
holding nothing but its time in the driver), and how much of what it shows was spent outside the
fake (pynvml's Python, waits for the GIL after a call, the timing itself). Last, what counting
gputop's own driver time adds to each NVML call.

Prints Markdown on stdout; progress on stderr.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from peers import Session, Tool  # noqa: E402  (benchmarks/ is not a package)

ROOT = Path(__file__).resolve().parents[1]
TESTS = ROOT / "tests"
PEER_SITE = ROOT / "benchmarks" / "peer_site"
PCIE = "nvmlDeviceGetPcieThroughput"
TARGETS = (
    "targets (issue #25), 8 GPUs: live view at 1 Hz <= 0.5x nvitop's driver time with the PCIe "
    "counters and <= 1x without; record at 100 Hz <= 150 ms/s without the counters (PCIe "
    "throughput still recorded); one read of 8 GPUs <= 10 ms wall with the counters"
)


@dataclass
class Monitor:
    label: str
    argv: list[str]
    terminal: bool  # run in tmux (a TUI), else a plain child process
    peer: bool = False  # nvitop/gpustat: the fake through peer_site
    ready: str = "H100"  # on screen once it shows the GPUs (terminal ones)
    tree: Path = ROOT  # the gputop tree it runs (another one: --baseline)


def monitors(tmp: Path, baseline: Path | None = None) -> list[Monitor]:
    py = sys.executable
    bindir = Path(sys.executable).parent
    port = _free_port()
    before = (
        [] if baseline is None else [Monitor(f"gputop live, 1 Hz, baseline {baseline.name}", [py, "-m", "gputop"], True, tree=baseline)]
    )
    return before + [
        Monitor("gputop live, 1 Hz (default)", [py, "-m", "gputop", "--interval", "1"], True),
        Monitor("gputop live, 10 Hz", [py, "-m", "gputop", "--interval", "0.1"], True),
        Monitor("gputop record, 1 Hz", [py, "-m", "gputop", "record", "--interval", "1", "--out", str(tmp / "r1.json")], False),
        Monitor("gputop record, 100 Hz", [py, "-m", "gputop", "record", "--interval", "0.01", "--out", str(tmp / "r100.json")], False),
        Monitor("gputop serve, 1 Hz", [py, "-m", "gputop", "serve", "--port", str(port)], False),
        Monitor("nvitop --interval 1", [str(bindir / "nvitop"), "--interval", "1"], True, peer=True),
        Monitor("gpustat --interval 1", [str(bindir / "gpustat"), "--interval", "1"], True, peer=True),
    ]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _env(spec: str, stats: Path, m: Monitor) -> dict[str, str]:
    tests = m.tree / "tests"
    path = [str(PEER_SITE), str(TESTS)] if m.peer else [str(m.tree), str(tests / "sitecustom"), str(tests)]
    return {"GPUTOP_FAKE_NVML": spec, "GPUTOP_FAKE_NVML_STATS": str(stats), "PYTHONPATH": os.pathsep.join(path)}


def _stats(stats: Path, pid: int) -> dict[str, object] | None:
    try:
        return json.loads((stats / f"{pid}.json").read_text())  # type: ignore[no-any-return]
    except (OSError, ValueError):
        return None


Result = tuple[str, "dict[str, object] | None", "dict[str, object] | None", "float | None"]
HEADER = re.compile(r"driver (\d+(?:\.\d+)?) ms/s")  # what the live view's header shows
HEADER_EVERY_S = 4.0


def run_setup(spec: str, warmup_s: float, window_s: float, baseline: Path | None = None) -> list[Result]:
    """Every monitor at once over ``spec``; each one's stats at the window's start and end, and
    for gputop's live views the mean of what their header showed as driver time, read every
    HEADER_EVERY_S within the window."""
    with tempfile.TemporaryDirectory(prefix="gputop-driver-cost-") as tmp_name:
        tmp = Path(tmp_name)
        stats = tmp / "stats"
        stats.mkdir()
        chosen = monitors(tmp, baseline)
        terminal = [m for m in chosen if m.terminal]
        base_env = {k: v for k, v in os.environ.items() if not k.startswith("TMUX")}
        base_env.update(LANG="C.UTF-8", LC_ALL="C.UTF-8")
        session = Session(base_env, len(terminal))
        children: list[subprocess.Popen[bytes]] = []
        pids: dict[str, int] = {}
        try:
            for w, m in enumerate(terminal):
                run = session.start(w, Tool(m.label, m.label, m.argv, (re.compile(m.ready),), _env(spec, stats, m), str(m.tree)))
                if run.first_frame_ms is None:
                    print(f"    {m.label}: {run.note}", file=sys.stderr, flush=True)
                    continue
                pids[m.label] = int(session.pane(w, "#{pane_pid}"))
            for m in chosen:
                if not m.terminal:
                    child = subprocess.Popen(
                        m.argv, env={**base_env, **_env(spec, stats, m)}, cwd=m.tree, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
                    )
                    children.append(child)
                    pids[m.label] = child.pid
            time.sleep(warmup_s)
            first = {label: _stats(stats, pid) for label, pid in pids.items()}
            shown = _watch_headers(session, [m.label for m in terminal], window_s)
            last = {label: _stats(stats, pid) for label, pid in pids.items()}
            for child in children:
                if child.poll() is not None:
                    err = (child.stderr.read() if child.stderr else b"").decode(errors="replace").strip()
                    print(f"    exited early: {child.args}: {err[:300]}", file=sys.stderr, flush=True)
        finally:
            session.kill()
            for child in children:
                if child.poll() is None:
                    child.terminate()
                try:
                    child.wait(10)
                except subprocess.TimeoutExpired:
                    child.kill()
                    child.wait()
        return [(m.label, first.get(m.label), last.get(m.label), shown.get(m.label)) for m in chosen]


def _watch_headers(session: Session, labels: list[str], window_s: float) -> dict[str, float]:
    """Sleep out ``window_s``, reading every terminal's header every HEADER_EVERY_S: per label, the
    mean of the driver times its header showed (gputop's live views; the others show none). The
    mean, not the median: a PCIe round every 16 s is in few of the header's 3 s windows."""
    seen: dict[str, list[float]] = {}
    end = time.monotonic() + window_s
    while (left := end - time.monotonic()) > 0:
        time.sleep(min(HEADER_EVERY_S, left))
        for w, label in enumerate(labels):
            found = HEADER.search(session.screen(w))
            if found:
                seen.setdefault(label, []).append(float(found.group(1)))
    return {label: statistics.mean(values) for label, values in seen.items()}


def _delta(a: dict[str, object], b: dict[str, object], key: str) -> dict[str, int]:
    old, new = a.get(key, {}), b.get(key, {})  # (a baseline's fake may not count wall_ns)
    assert isinstance(old, dict) and isinstance(new, dict)
    return {k: int(v) - int(old.get(k, 0)) for k, v in new.items() if int(v) - int(old.get(k, 0)) > 0}


def row(label: str, a: dict[str, object] | None, b: dict[str, object] | None, shown: float | None) -> str:
    if a is None or b is None:
        return f"| {label} | n/a (no stats) | | | | | | |"
    seconds = (int(str(b["t_ns"])) - int(str(a["t_ns"]))) / 1e9
    cost, calls, wall = _delta(a, b, "cost_ns"), _delta(a, b, "calls"), _delta(a, b, "wall_ns")
    total_ms = sum(cost.values()) / 1e6 / seconds
    pcie_ms = cost.get(PCIE, 0) / 1e6 / seconds
    lists_ms = sum(ns for name, ns in cost.items() if "RunningProcesses" in name) / 1e6 / seconds
    top = sorted(cost.items(), key=lambda kv: -kv[1])[:3]
    costliest = ", ".join(f"{name.removeprefix('nvmlDevice')} {ns / 1e6 / seconds:.1f}" for name, ns in top)
    wall_ms, calls_per_s = sum(wall.values()) / 1e6 / seconds, sum(calls.values()) / seconds
    header = "" if shown is None else f"{shown:.1f} ({shown / total_ms:.1f}x)"
    in_fake = f"{wall_ms:.1f}" if "wall_ns" in b else "n/a"
    return f"| {label} | {total_ms:.1f} | {pcie_ms:.1f} | {lists_ms:.1f} | {calls_per_s:.0f} | {in_fake} | {header} | {costliest} |"


@dataclass
class Reads:
    wall_ms: float  # median wall time of one read
    cpu_ms: float  # median CPU time (this process, every thread) during one read
    shown_ms: float  # gputop's own driver time over the reads (what it shows)
    fake_ms: float  # the same calls' wall time inside the fake
    charged_ms: float  # what the model charged for them


def read_walls(spec: str, reads: int) -> tuple[Reads, Reads]:
    """One NvmlSource.sample() after another over ``spec``, ``reads`` of them 0.1 s apart: side by
    side (as gputop reads), then one device after another."""
    sys.path[:0] = [str(ROOT), str(TESTS)]
    import fakenvml
    from gputop.sources.nvml import NvmlSource

    fake = fakenvml.install_from_spec(spec)
    assert fake is not None
    src = NvmlSource.open()
    try:
        out = []
        for side_by_side in (True, False):
            pool = src._pool  # (benchmark only: the same reads without the pool)
            if not side_by_side:
                src._pool = None
            src.sample()
            time.sleep(0.1)
            walls, cpus = [], []
            shown0, fake0, charged0 = src.driver_time()[0], sum(fake.wall_ns.values()), sum(fake.cost_ns.values())
            for _ in range(reads):
                t0, c0 = time.perf_counter(), time.process_time()
                src.sample()
                walls.append(time.perf_counter() - t0)
                cpus.append(time.process_time() - c0)
                time.sleep(0.1)
            src._pool = pool
            out.append(
                Reads(
                    statistics.median(walls) * 1e3,
                    statistics.median(cpus) * 1e3,
                    (src.driver_time()[0] - shown0) / 1e6,
                    (sum(fake.wall_ns.values()) - fake0) / 1e6,
                    (sum(fake.cost_ns.values()) - charged0) / 1e6,
                )
            )
        return out[0], out[1]
    finally:
        src.close()


def read_row(gpus: int, counters: bool, both: Reads, series: Reads) -> str:
    def ratio(r: Reads) -> str:
        return f"{r.shown_ms / r.charged_ms:.2f} ({r.shown_ms:.0f} / {r.charged_ms:.0f})"

    outside = 100.0 * (both.shown_ms - both.fake_ms) / both.shown_ms
    return (
        f"| {gpus} | {'yes' if counters else 'no'} | {both.wall_ms:.2f} | {both.cpu_ms:.2f} | {series.wall_ms:.2f} | {series.cpu_ms:.2f} "
        f"| {ratio(both)} | {ratio(series)} | {outside:.1f} % |"
    )


def counting_cost_ns(n: int = 200_000) -> float:
    """What query's timing adds to one call: two perf_counter_ns and DriverTime.add."""
    from gputop.sources.gpu import DriverTime

    clock, tally = time.perf_counter_ns, DriverTime()
    t0 = time.perf_counter_ns()
    for _ in range(n):
        start = clock()
        tally.add(clock() - start)
    return (time.perf_counter_ns() - t0) / n


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--window", type=float, default=30.0, help="seconds measured (default 30)")
    parser.add_argument("--warmup", type=float, default=5.0, help="seconds after the last start (default 5)")
    parser.add_argument("--reads", type=int, default=50, help="reads timed in this process (default 50)")
    parser.add_argument("--gpus", type=int, nargs="+", default=[1, 8], help="GPU counts (default 1 8)")
    parser.add_argument("--baseline", type=Path, help="another gputop tree (a worktree of an older commit): its live view at 1 Hz too")
    args = parser.parse_args(argv)
    bindir = Path(sys.executable).parent
    missing = [t for t in ("nvitop", "gpustat") if not (bindir / t).exists()] + [t for t in ("tmux",) if shutil.which(t) is None]
    if missing:
        parser.exit(1, f"benchmarks/driver_cost.py: error: needs {', '.join(missing)} (pip install nvitop gpustat; apt-get install tmux)\n")
    load0, started = os.getloadavg(), time.strftime("%Y-%m-%d %H:%M", time.gmtime())
    sections = []
    for gpus in args.gpus:
        for counters in (True, False):
            spec = f"H100_SXM*{gpus}:cost" + ("" if counters else ":no_pcie_counters")
            name = f"{gpus} GPU{'s' if gpus > 1 else ''}, {'with' if counters else 'without'} the PCIe byte counters"
            print(f"[{name}] {spec}", file=sys.stderr, flush=True)
            results = run_setup(spec, args.warmup, args.window, args.baseline.resolve() if args.baseline else None)
            lines = [
                f"**{name}** (`GPUTOP_FAKE_NVML={spec}`)",
                "",
                "| monitor | driver time, ms/s | of it PCIe throughput | of it process lists | calls/s | in the fake, ms/s "
                "| its header showed, ms/s | costliest symbols, ms/s |",
                "|---|---:|---:|---:|---:|---:|---:|---|",
            ]
            lines += [row(*r) for r in results]
            sections.append("\n".join(lines) + "\n")
    reads = []
    for gpus in args.gpus:
        for counters in (True, False):
            spec = f"H100_SXM*{gpus}:cost" + ("" if counters else ":no_pcie_counters")
            print(f"[reads] {spec}", file=sys.stderr, flush=True)
            reads.append(read_row(gpus, counters, *read_walls(spec, args.reads)))
    load1 = os.getloadavg()
    print(
        f"`benchmarks/driver_cost.py --window {args.window:g} --warmup {args.warmup:g} --reads {args.reads}`, "
        f"{started}-{time.strftime('%H:%M UTC', time.gmtime())}, {os.cpu_count()} cores, Python {platform.python_version()}, "
        f"load average {load0[0]:.2f} at the start, {load1[0]:.2f} at the end. Driver time: the model's, over the same "
        f"{args.window:g} s window for every monitor.\n"
    )
    print("\n".join(sections))
    print(
        f"**One read of every GPU** (`NvmlSource.sample()`, this process, {args.reads} reads 0.1 s apart, medians; "
        "shown / charged over the same reads)\n"
    )
    print(
        "| GPUs | PCIe counters | side by side: wall ms | CPU ms | one after another: wall ms | CPU ms "
        "| shown / charged, side by side (ms) | one after another (ms) | of shown, outside the fake |\n"
        "|---:|---|---:|---:|---:|---:|---:|---:|---:|"
    )
    print("\n".join(reads))
    print(f"\n- counting gputop's own driver time adds {counting_cost_ns():.0f} ns to each NVML call.")
    print(f"- {TARGETS}.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
