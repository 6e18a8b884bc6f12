"""CPU time per sampler tick with 0, 1 and 8 simulated H100s, broken down by source.

Run by hand:  .venv/bin/python benchmarks/sampler_tick.py [--ticks 2000]

Each figure is the median over ``--ticks`` ticks of ``time.process_time_ns()`` around one call
(CPU time of this process, so time the kernel spends reading /proc counts; sleeping does not).
The NVML fake is Python too, so part of every NVML figure is the fake's own cost, which a real
driver spends in C (ioctls) instead. It is measured separately: a cProfile run attributes each
tick's time to functions in tests/fakenvml.py or elsewhere, and that share is applied to the
unprofiled median ("ours" = total x (1 - fake share)). The process scan runs on its own slower
cadence in the product (every 2 s); here it is timed on its own, every tick.
"""

from __future__ import annotations

import argparse
import cProfile
import pathlib
import pstats
import statistics
import sys
import time

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

import fakenvml  # noqa: E402
from gputop.sampler import Sampler  # noqa: E402
from gputop.sources.cpu import CpuSource  # noqa: E402
from gputop.sources.nvml import NvmlSource  # noqa: E402


def median_us(fn, ticks: int) -> float:
    times = []
    for _ in range(ticks):
        t0 = time.process_time_ns()
        fn()
        times.append(time.process_time_ns() - t0)
    return statistics.median(times) / 1000


def fake_share(fn, ticks: int) -> float:
    """Share of fn's profiled time spent inside the fake's own code."""
    prof = cProfile.Profile()
    prof.enable()
    for _ in range(ticks):
        fn()
    prof.disable()
    stats = pstats.Stats(prof)
    total = fake = 0.0
    for (filename, _, _), (_, _, tottime, _, _) in stats.stats.items():
        total += tottime
        if filename.endswith("fakenvml.py"):
            fake += tottime
    return fake / total if total else 0.0


def bench(n_gpus: int, ticks: int) -> dict[str, float]:
    cpu = CpuSource()
    gpu = None
    if n_gpus:
        fakenvml.install(fakenvml.FakeNvml(devices=[fakenvml.H100_SXM] * n_gpus, real_time=True))
        gpu = NvmlSource.open()
    sampler = Sampler(cpu, gpu, gpu_unavailable="benchmark without GPUs")
    for _ in range(20):  # warm: GPM pairs exist, psutil caches are filled
        sampler.sample()
    row = {"host (psutil)": median_us(cpu.sample, ticks)}
    if gpu is not None:
        row["nvml sample"] = median_us(gpu.sample, ticks)
        row["nvml fake share"] = fake_share(gpu.sample, min(ticks, 500))
        row["process scan"] = median_us(sampler._scan_processes, max(ticks // 4, 50))
        row["scan fake share"] = fake_share(sampler._scan_processes, min(ticks // 4, 200))
    row["full tick"] = median_us(sampler.sample, ticks)
    sampler.close()
    return row


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ticks", type=int, default=2000)
    args = parser.parse_args()
    print(f"median CPU time per call, {args.ticks} ticks, python {sys.version.split()[0]}")
    print(f"{'GPUs':>4}  {'host':>9}  {'nvml (ours)':>16}  {'proc scan (ours)':>18}  {'full tick':>10}  {'full tick, ours':>15}")
    for n in (0, 1, 8):
        r = bench(n, args.ticks)
        if n:
            nv, ns = r["nvml sample"], r["nvml fake share"]
            ps, ss = r["process scan"], r["scan fake share"]
            ours_tick = r["full tick"] - nv * ns
            print(
                f"{n:>4}  {r['host (psutil)']:>7.0f}us  {nv:>6.0f}us ({nv * (1 - ns):>5.0f}us)  "
                f"{ps:>7.0f}us ({ps * (1 - ss):>5.0f}us)  {r['full tick']:>8.0f}us  {ours_tick:>13.0f}us"
            )
        else:
            print(f"{n:>4}  {r['host (psutil)']:>7.0f}us  {'-':>16}  {'-':>18}  {r['full tick']:>8.0f}us  {r['full tick']:>13.0f}us")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
