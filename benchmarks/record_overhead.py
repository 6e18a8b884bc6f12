"""CPU cost of `gputop record` in steady state, as a share of one core.

Run by hand:  .venv/bin/python benchmarks/record_overhead.py [--seconds 20] [--repeats 3]
                  [--baseline DIR]

Each case starts a real `python -m gputop record` subprocess, waits 3 s for start-up to finish,
then reads the child's utime+stime from /proc/<pid>/stat at the start and end of a window of
``--seconds`` and divides by the window's wall time. With a simulated GPU the NVML fake (pure
Python, in the same process) is part of the figure; its share is measured in-process by cProfile
over the same tick loop and reported beside it, since a real driver spends that time in C.

``--baseline DIR`` (another checkout, e.g. ``git worktree add /tmp/base HEAD~3``) runs the same
cases from that tree too, interleaved with this one's in every repeat, so both see the same
machine; the ratio of the medians is printed.
"""

from __future__ import annotations

import argparse
import cProfile
import os
import pathlib
import pstats
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = pathlib.Path(__file__).resolve().parents[1]
TICKS_PER_S = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    fields = pathlib.Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS_PER_S  # utime, stime


def measure(interval: float, fake: str | None, seconds: float, root: pathlib.Path = ROOT) -> float:
    env = dict(os.environ)
    path = [str(root)]  # the tree measured, ahead of whatever gputop is installed
    if fake:
        env["GPUTOP_FAKE_NVML"] = fake
        path += [str(ROOT / "tests" / "sitecustom"), str(ROOT / "tests")]
    env["PYTHONPATH"] = os.pathsep.join(path)
    with tempfile.TemporaryDirectory() as tmp:
        out = pathlib.Path(tmp) / "trace.json"
        proc = subprocess.Popen(
            [sys.executable, "-m", "gputop", "record", "--out", str(out), "--interval", str(interval), "--duration", str(seconds + 10)],
            env=env,
            cwd=root,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            time.sleep(3)
            c0, t0 = cpu_seconds(proc.pid), time.monotonic()
            time.sleep(seconds)
            c1, t1 = cpu_seconds(proc.pid), time.monotonic()
        finally:
            proc.terminate()
            proc.wait(10)
    return 100 * (c1 - c0) / (t1 - t0)


def fake_share(interval: float, seconds: float) -> float:
    """Share of the record loop's CPU time spent inside the fake, by cProfile."""
    sys.path.insert(0, str(ROOT / "tests"))
    import fakenvml
    from gputop.sampler import iter_samples
    from gputop.trace import TraceWriter

    fakenvml.install(fakenvml.FakeNvml(devices=[fakenvml.H100_SXM], real_time=True))
    from gputop.sampler import open_real

    sampler = open_real()
    with tempfile.TemporaryDirectory() as tmp:
        writer = TraceWriter.create(pathlib.Path(tmp) / "t.json")
        prof = cProfile.Profile()
        prof.enable()
        for sample in iter_samples(sampler, interval, seconds):
            writer.write_sample(sample)
        prof.disable()
        writer.close()
    sampler.close()
    total = fake = 0.0
    for (filename, _, func), (_, _, tottime, _, _) in pstats.Stats(prof).stats.items():
        if func in ("sleep", "<built-in method time.sleep>"):
            continue
        total += tottime
        if filename.endswith("fakenvml.py"):
            fake += tottime
    return fake / total if total else 0.0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=20)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument(
        "--baseline", type=pathlib.Path, default=None, metavar="DIR", help="another checkout to measure beside this one, interleaved"
    )
    args = parser.parse_args()
    roots = [ROOT] + ([args.baseline.resolve()] if args.baseline else [])
    print(f"steady-state CPU % of one core, median of {args.repeats} windows of {args.seconds:.0f} s")
    for interval in (1.0, 0.01):
        for fake in (None, "H100_SXM"):
            runs: dict[pathlib.Path, list[float]] = {root: [] for root in roots}
            for _ in range(args.repeats):
                for root in roots:
                    runs[root].append(measure(interval, fake, args.seconds, root))
            label = "host + 1 simulated H100" if fake else "host only (no GPU)"
            medians = {root: statistics.median(r) for root, r in runs.items()}
            for root, r in runs.items():
                tree = "" if len(roots) == 1 else f"  [{'this tree' if root == ROOT else root}]"
                line = f"  every {interval:>5} s  {label:<26} {medians[root]:5.2f} %  (runs: {', '.join(f'{x:.2f}' for x in r)}){tree}"
                if fake and interval == 0.01 and root == ROOT:
                    share = fake_share(interval, 5)
                    line += f"   fake's share {share:.0%} -> ours ~{medians[root] * (1 - share):.2f} %"
                print(line, flush=True)
            if len(roots) > 1 and medians[roots[1]] > 0:
                print(f"    this tree / baseline: {medians[ROOT] / medians[roots[1]]:.2f}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
