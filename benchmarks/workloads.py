"""The bundled workloads' CPU throughput, and what reporting events costs them.

Run by hand:  .venv/bin/python benchmarks/workloads.py [--steps 10] [--repeats 3] [--only mlp,cnn]
              (--steps 0: each workload's own CPU default number of steps; slow on 2 cores)

Every workload runs in this process (torch is imported here, as in a workload child), on the CPU,
at its CPU-default sizes (model, batch), ``--quiet``. The run is repeated ``--repeats`` times with
events and as often without, alternating (with, without, without, with, ...) so that whatever else
the machine is doing lands on both sides alike.

- "with events": GPUTOP_EVENTS_FD names a pipe that a ``cat > /dev/null`` child drains (what
  gputop's reader does, minus parsing, which happens in gputop's own process), so the workload
  really formats and writes every event.
- "without": no GPUTOP_EVENTS_FD: EventWriter is off, each call a no-op (a script run on its own).

Figures (steps 2 and on; step 1 is warm-up: allocation, thread pool start):

- samples/s: the workloads' own measure, samples over the step's wall time (the timed region
  inside the loop: forward, backward, optimizer, ``loss.item()``), median over the steps of all runs.
- loop time per step: the time from one step's end of loop body to the next, taken where the
  loop calls Progress.update, so it includes the event write, which happens outside the timed
  region. Median per mode; the difference is what events cost end to end (noise included).
- event call cost: ``EventWriter.step(...)`` alone, to the same drained pipe, median ns per
  call over 20 batches of 10,000 calls, and as a share of each workload's median step time.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
import warnings

warnings.filterwarnings("ignore", message=".*Failed to initialize NumPy.*")

ORDER = ("mlp", "cnn", "transformer", "matmul")


class Recorder:
    """Patches Progress.update to keep (step, samples, wall_s, perf_counter at the call)."""

    def __init__(self, common) -> None:
        self.rows: list[tuple[int, int, float, float]] = []
        original = common.Progress.update
        recorder = self

        def update(progress, step, samples, loss, wall_s):
            recorder.rows.append((step, samples, wall_s, time.perf_counter()))
            return original(progress, step, samples, loss, wall_s)

        common.Progress.update = update


def run_once(module, steps: int | None, events_fd: int | None, recorder: Recorder) -> list[tuple]:
    if events_fd is None:
        os.environ.pop("GPUTOP_EVENTS_FD", None)
    else:
        os.environ["GPUTOP_EVENTS_FD"] = str(events_fd)
    os.environ.pop("GPUTOP_EVENTS_FILE", None)
    recorder.rows = []
    argv = ["--device", "cpu", "--quiet"] + ([] if steps is None else ["--steps", str(steps)])
    module.main(argv)
    return recorder.rows


def call_cost_ns(events_module, fd: int) -> float:
    writer = events_module.EventWriter(fd)
    batches = []
    for _ in range(20):
        t0 = time.perf_counter_ns()
        for k in range(10_000):
            writer.step(step=k + 1, samples=256, loss=2.302585092994046, wall_s=0.012345678)
        batches.append((time.perf_counter_ns() - t0) / 10_000)
    return statistics.median(batches)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=10, help="steps per run (default 10; 0: the workload's CPU default)")
    parser.add_argument("--repeats", type=int, default=3, help="runs per mode (default 3)")
    parser.add_argument("--only", default=",".join(ORDER), help="comma-separated workloads")
    args = parser.parse_args()
    names = [n for n in args.only.split(",") if n]

    import importlib

    import torch

    from gputop.workloads import common, events

    recorder = Recorder(common)
    read_fd, write_fd = os.pipe()
    drain = subprocess.Popen(["cat"], stdin=read_fd, stdout=subprocess.DEVNULL)
    os.close(read_fd)
    steps = None if args.steps == 0 else args.steps
    print(
        f"python {sys.version.split()[0]}, torch {torch.__version__}, {torch.get_num_threads()} "
        f"threads, {os.cpu_count()} cpus, load average {os.getloadavg()[0]:.2f} at start; "
        f"{'default' if steps is None else steps} steps a run, {args.repeats} runs per mode"
    )
    try:
        call_ns = call_cost_ns(events, write_fd)
        print(f"EventWriter.step to a drained pipe: {call_ns / 1000:.2f} us per call (median of 20 x 10,000)")
        print()
        print(
            f"{'workload':<12}{'batch':>6}{'samples/s':>12}{'step':>10}{'loop/step, events':>20}"
            f"{'loop/step, none':>18}{'difference':>12}{'call/step':>11}"
        )
        for name in names:
            module = importlib.import_module(f"gputop.workloads.{name}")
            walls, loops = [], {True: [], False: []}
            batch = None
            for r in range(args.repeats):
                for with_events in (True, False) if r % 2 == 0 else (False, True):
                    rows = run_once(module, steps, write_fd if with_events else None, recorder)
                    later = [row for row in rows if row[0] > 1]
                    batch = rows[0][1]
                    walls += [(n, w) for _, n, w, _ in later]
                    stamps = [row[3] for row in rows]
                    loops[with_events] += [b - a for a, b in zip(stamps[1:], stamps[2:])]
            rate = statistics.median(n / w for n, w in walls)
            step = statistics.median(w for _, w in walls)
            with_ev, without = statistics.median(loops[True]), statistics.median(loops[False])
            print(
                f"{name:<12}{batch:>6}{rate:>12,.1f}{step * 1e3:>8.1f}ms{with_ev * 1e3:>18.2f}ms"
                f"{without * 1e3:>16.2f}ms{100 * (with_ev - without) / without:>+11.2f}%"
                f"{100 * call_ns / 1e9 / step:>10.4f}%",
                flush=True,
            )
    finally:
        os.close(write_fd)
        drain.wait(10)
    print(f"\nload average at the end {os.getloadavg()[0]:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
