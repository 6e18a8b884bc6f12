"""CPU cost of `gputop record` in steady state, as a share of one core.

Run by hand:  .venv/bin/python benchmarks/record_overhead.py [--seconds 20] [--repeats 3]

Each case starts a real `python -m gputop record` subprocess, waits 3 s for start-up to finish,
then reads the child's utime+stime from /proc/<pid>/stat at the start and end of a window of
``--seconds`` and divides by the window's wall time. With a simulated GPU the NVML fake (pure
Python, in the same process) is part of the figure; its share is measured in-process by cProfile
over the same tick loop and reported beside it, since a real driver spends that time in C.
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


def measure(interval: float, fake: str | None, seconds: float) -> float:
    env = dict(os.environ)
    if fake:
        env["GPUTOP_FAKE_NVML"] = fake
        env["PYTHONPATH"] = f"{ROOT / 'tests' / 'sitecustom'}:{ROOT / 'tests'}"
    with tempfile.TemporaryDirectory() as tmp:
        out = pathlib.Path(tmp) / "trace.json"
        proc = subprocess.Popen([sys.executable, "-m", "gputop", "record", "--out", str(out),
                                 "--interval", str(interval), "--duration", str(seconds + 10)],
                                env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
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

    from gputop.cli import build_sampler
    from gputop.sampler import iter_samples
    from gputop.trace import TraceWriter

    fakenvml.install(fakenvml.FakeNvml(devices=[fakenvml.H100_SXM], real_time=True))
    sampler = build_sampler()
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
    args = parser.parse_args()
    print(f"steady-state CPU % of one core, median of {args.repeats} windows of {args.seconds:.0f} s")
    for interval in (1.0, 0.01):
        for fake in (None, "H100_SXM"):
            runs = [measure(interval, fake, args.seconds) for _ in range(args.repeats)]
            label = "host + 1 simulated H100" if fake else "host only (no GPU)"
            line = f"  every {interval:>5} s  {label:<26} {statistics.median(runs):5.2f} %  (runs: {', '.join(f'{r:.2f}' for r in runs)})"
            if fake and interval == 0.01:
                share = fake_share(interval, 5)
                line += f"   fake's share {share:.0%} -> ours ~{statistics.median(runs) * (1 - share):.2f} %"
            print(line, flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
