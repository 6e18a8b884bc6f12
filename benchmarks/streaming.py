"""Long recordings: `gputop report`, `replay` (time to its first frame) and `merge`, each a real
subprocess, its wall time, CPU time and peak RSS (``os.wait4``'s rusage of that child).

Run by hand:  .venv/bin/python benchmarks/streaming.py [--sizes 300,1000] [--repeats 3]
                  [--source REC.json] [--baseline DIR] [--tmp /tmp] [--torch-mb 100]
                  [--cases report,replay,merge]

The recordings are made by ``benchmarks/long_trace.py`` from a real one (``--source``, else a
30 s ``gputop record --interval 0.01`` on the NVML fake: 100 Hz, one H100), repeated with
shifted timestamps to each size in MB, in ``--tmp`` (never committed; deleted at the end).
"replay" is a child that opens the recording (``replay.open_feed``), runs the app headless
(Textual's ``run_test``) until the first sample is on screen, prints that time, then waits for
the index to finish and prints that too; its peak RSS covers the whole index pass.
"merge" joins the recording with the real 7 KB profile (tests/data), and, at the smallest size,
with a ``--torch-mb`` profile made from it by ``long_trace.build_torch`` (its events repeated with
shifted ts, indented as torch writes it). ``--baseline DIR`` (e.g. ``git archive 15a934d | tar -x
-C /tmp/base``) runs report and merge from that tree too, on the smallest size, interleaved with
this tree's runs, ``--repeats`` times each.
"""

from __future__ import annotations

import argparse
import os
import pathlib
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = pathlib.Path(__file__).resolve().parents[1]
TORCH_TRACE = ROOT / "tests" / "data" / "torch_cpu_profile.json"
sys.path.insert(0, str(ROOT / "benchmarks"))
import long_trace  # noqa: E402  (beside this file)

REPLAY_CHILD = """
import asyncio, sys, time
t0 = time.perf_counter()
from gputop.commands import replay
from gputop.tui.app import GputopApp
from gputop.tui.widgets.gpulist import GpuList

async def main():
    feed = replay.open_feed(sys.argv[1], playing=False)
    app = GputopApp(feed)
    async with app.run_test(size=(160, 50)) as pilot:
        while app.sample is None or not app.query(GpuList):
            await pilot.pause()
        await pilot.pause()
        print(f"first_frame_s {time.perf_counter() - t0:.3f}", flush=True)
        while not feed.index.wait(0.05):
            await pilot.pause()
        print(f"indexed_s {time.perf_counter() - t0:.3f} samples {len(feed.index)}", flush=True)
    feed.close()

asyncio.run(main())
"""


def env(root: pathlib.Path = ROOT) -> dict[str, str]:
    out = dict(os.environ, GPUTOP_FAKE_NVML="H100_SXM")
    tests = ROOT / "tests"
    out["PYTHONPATH"] = os.pathsep.join([str(root), str(tests / "sitecustom"), str(tests)])
    return out


def timed(argv: list[str], root: pathlib.Path = ROOT) -> tuple[float, float, float, str]:
    """(wall s, CPU s, peak RSS MiB, stdout) of one child."""
    start = time.perf_counter()
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env(root), cwd=root, text=True)
    assert proc.stdout is not None
    out = proc.stdout.read()
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise SystemExit(f"{argv} exited {proc.returncode}")
    return wall, usage.ru_utime + usage.ru_stime, usage.ru_maxrss / 1024, out


def interleaved(argv: list[str], roots: list[pathlib.Path], repeats: int) -> dict[pathlib.Path, list[tuple[float, float, float, str]]]:
    """``argv`` run from each tree in turn, ``repeats`` rounds (so load changes hit both alike)."""
    runs: dict[pathlib.Path, list[tuple[float, float, float, str]]] = {root: [] for root in roots}
    for _ in range(repeats):
        for root in roots:
            runs[root].append(timed(argv, root=root))
    return runs


def source_recording(tmp: pathlib.Path) -> pathlib.Path:
    out = tmp / "source.json"
    subprocess.run(
        [sys.executable, "-m", "gputop", "record", "--out", str(out), "--interval", "0.01", "--duration", "30", "--force"],
        check=True,
        env=env(),
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    return out


def row(name: str, mb: float, runs: list[tuple[float, float, float, str]], extra: str = "") -> str:
    wall = statistics.median(r[0] for r in runs)
    cpu = statistics.median(r[1] for r in runs)
    rss = max(r[2] for r in runs)
    return f"| {name} | {mb:,.0f} MB | {len(runs)} | {wall:.1f} s | {cpu:.1f} s | {mb / cpu:.0f} MB/s | {rss:.0f} MiB |{extra}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="300,1000", help="MB, comma-separated")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--source", type=pathlib.Path)
    parser.add_argument("--baseline", type=pathlib.Path)
    parser.add_argument("--tmp", type=pathlib.Path, default=pathlib.Path(tempfile.gettempdir()))
    parser.add_argument("--torch-mb", type=float, default=100.0, help="the long profile, MB (0: none)")
    parser.add_argument("--cases", default="report,replay,merge", help="which of report, replay, merge")
    args = parser.parse_args()
    work = pathlib.Path(tempfile.mkdtemp(prefix="gputop-bench-", dir=args.tmp))
    try:
        source = args.source or source_recording(work)
        print(f"# source {source} ({source.stat().st_size / 1e6:.1f} MB); load average {os.getloadavg()[0]:.2f} at the start", flush=True)
        print("| case | size | runs | wall (median) | CPU (median) | MB per CPU s | peak RSS (max) | notes |")
        print("|---|---:|---:|---:|---:|---:|---:|---|")
        cases = set(args.cases.split(","))
        if "replay" in cases:
            replay_floor(args.repeats)
        sizes = [float(s) for s in args.sizes.split(",")]
        for mb in sizes:
            path = work / f"long-{mb:.0f}.json"
            size = long_trace.build(str(source), str(path), int(mb * 1e6)) / 1e6
            smallest = mb == min(sizes)  # the size run --repeats times, and beside --baseline
            repeats = args.repeats if smallest else 1
            base = args.baseline.resolve() if args.baseline is not None and smallest else None
            roots = [ROOT] if base is None else [ROOT, base]
            if "report" in cases:
                bench_report(path, size, roots, repeats)
            if "replay" in cases:
                bench_replay(path, size, repeats)
            if "merge" in cases:
                bench_merge(path, size, roots, repeats, work, args.torch_mb if smallest else 0.0)
            path.unlink()
        print(f"# load average {os.getloadavg()[0]:.2f} at the end")
    finally:
        for p in work.iterdir():
            p.unlink()
        work.rmdir()


def replay_floor(repeats: int) -> None:
    """The replay of the 22 KB fixture: Python, textual and the app, the floor under the rest."""
    fixture = ROOT / "tests" / "data" / "h100_fake.json"
    floor = [timed([sys.executable, "-c", REPLAY_CHILD, str(fixture)]) for _ in range(repeats)]
    first = statistics.median(float(r[3].split()[1]) for r in floor)
    print(row("replay of the 22 KB fixture (the floor)", 0.022, floor, f" first frame {first:.2f} s |"), flush=True)


def bench_report(path: pathlib.Path, size: float, roots: list[pathlib.Path], repeats: int) -> None:
    reports = interleaved([sys.executable, "-m", "gputop", "report", str(path), "--json"], roots, repeats)
    for root in roots:
        name = "report (streamed)" if root == ROOT else f"report (baseline {root.name})"
        print(row(name, size, reports[root]), flush=True)


def bench_replay(path: pathlib.Path, size: float, repeats: int) -> None:
    replays = [timed([sys.executable, "-c", REPLAY_CHILD, str(path)]) for _ in range(repeats)]
    first = statistics.median(float(r[3].split()[1]) for r in replays)
    indexed = statistics.median(float(r[3].split()[3]) for r in replays)
    print(
        row("replay (first frame; RSS over the index pass)", size, replays, f" first frame {first:.2f} s, indexed {indexed:.1f} s |"),
        flush=True,
    )


def bench_merge(path: pathlib.Path, size: float, roots: list[pathlib.Path], repeats: int, work: pathlib.Path, torch_mb: float) -> None:
    """The merge with the real 7 KB profile; then, if ``torch_mb``, with a profile that long."""
    py, merged = sys.executable, work / "merged.json"
    merges = interleaved([py, "-m", "gputop", "merge", str(path), str(TORCH_TRACE), "--out", str(merged), "--force"], roots, repeats)
    for root in roots:
        name = "merge (streamed)" if root == ROOT else f"merge (baseline {root.name})"
        print(row(name, size, merges[root]), flush=True)
    if torch_mb:
        profile = work / "torch.json"
        torch_size = long_trace.build_torch(str(TORCH_TRACE), str(profile), int(torch_mb * 1e6)) / 1e6
        long_argv = [py, "-m", "gputop", "merge", str(path), str(profile), "--out", str(merged), "--force"]
        longs = interleaved(long_argv, roots, repeats)
        for root in roots:
            name = "merge (streamed)" if root == ROOT else f"merge (baseline {root.name})"
            print(row(f"{name}, {torch_size:,.0f} MB profile", size + torch_size, longs[root]), flush=True)
        profile.unlink()
    merged.unlink(missing_ok=True)


if __name__ == "__main__":
    main()
