"""What gputop's hooks cost the ranks of a distributed job (gloo on this CPU, 2 ranks by torchrun).

Run by hand:  .venv/bin/python benchmarks/ranks.py [--repeats 5] [--steps 500] [--blocks 20]

1. **Per step, inside a rank** (one torchrun job under ``gputop record``): each rank runs a tiny
   DDP loop (Linear 32->32, batch 8, SGD, a DataLoader, one torch thread) in ``--blocks`` blocks of
   ``--steps`` / 10 steps, alternately with the hooks in place and with them taken out again (the
   wrappers unwrapped, the global optimizer hooks removed: the benchmark reaches into torch's
   private hook dictionaries for that, the hooks never do), in the same process, so that the
   difference is the hooks' and not another process's memory layout, CPU or neighbours (the hooks'
   own CPU time per call: ``benchmarks/hooks.py``). The same
   loop in one process (no process group, ``gputop record --run rank.py``) too.
2. **End to end**: the same 2-rank ``--steps``-step job, launched ``--repeats`` times each as
   ``torchrun`` alone, as ``gputop record --no-instrument --run torchrun`` (gputop sampling, no
   hooks) and as ``gputop record --run torchrun``, the order rotated each repeat. Each rank times
   its own loop (``perf_counter`` from its first step to its last: the job's wall, free of
   start-up) and its process's CPU over it; the whole command's wall is taken from outside, and its
   CPU (user + sys of every process of the command, gputop's too: ``os.wait4``'s usage, which
   counts each waited-for descendant) too. CPU does not stretch with the machine's load as wall
   does: on a shared machine it is the figure to read.

Per step in-process: wall, the main thread's CPU time and the whole process's (the difference of
the last two is the hooks' writer thread); medians over blocks. End to end: medians over repeats,
side by side in one run; the difference of the commands' CPU per job step is what gputop costs in
all (hooks, its own reading of their events, its sampling), the ranks' loop CPU difference the
part inside the ranks.
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import shutil
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

from hooks import SWITCH  # noqa: E402

RANK = SWITCH + textwrap.dedent("""\
    import json, os, sys, time
    import torch
    import torch.distributed as dist
    from torch.utils.data import DataLoader, TensorDataset

    steps, blocks = int(sys.argv[1]), int(sys.argv[2])
    torch.manual_seed(0)
    torch.set_num_threads(1)
    ranked = "RANK" in os.environ  # else one process, no process group: the single-process puzzle
    if ranked:
        dist.init_process_group("gloo")
    rank = dist.get_rank() if ranked else -1
    model = torch.nn.parallel.DistributedDataParallel(torch.nn.Linear(32, 32)) if ranked else torch.nn.Linear(32, 32)
    opt = torch.optim.SGD(model.parameters(), lr=1e-3)

    def loop(n):
        data = DataLoader(TensorDataset(torch.randn(n * 8, 32), torch.randn(n * 8, 32)), batch_size=8)
        t0, c0, p0 = time.perf_counter_ns(), time.thread_time_ns(), time.process_time_ns()
        for x, y in data:
            opt.zero_grad()
            torch.nn.functional.mse_loss(model(x), y).backward()
            opt.step()
        return time.perf_counter_ns() - t0, time.thread_time_ns() - c0, time.process_time_ns() - p0

    loop(20)  # warm-up: the first steps allocate
    wall_ns, _, cpu_ns = loop(steps)
    out = {"rank": rank, "loop_ns": wall_ns, "loop_cpu_ns": cpu_ns}
    if "_gputop_autostep" in sys.modules and blocks:
        armed = hooks_switch()
        block = max(10, steps // 10)
        times = {True: [], False: []}
        for k in range(blocks):
            for on in (True, False) if k % 2 == 0 else (False, True):
                armed(on)
                if ranked:
                    dist.barrier()  # both ranks in the same state
                times[on].append([t / block for t in loop(block)])
        armed(True)
        out["block_steps"] = block
        out["armed_ns"] = times[True]  # per step: [wall, this thread's CPU, the process's CPU] each block
        out["bare_ns"] = times[False]
    print("BENCH " + json.dumps(out), flush=True)
    if ranked:
        dist.barrier()
        dist.destroy_process_group()
""")


def torchrun() -> str:
    found = shutil.which("torchrun", path=os.path.dirname(sys.executable) + os.pathsep + os.environ.get("PATH", ""))
    if found is None:
        raise SystemExit("benchmarks/ranks.py: torchrun is not installed beside this Python")
    return found


def own_cpu(pid: int) -> float:
    """A process's own CPU time (s: user + sys, its children's left out), from /proc; it may be a
    zombie not yet reaped."""
    fields = pathlib.Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def run(argv: list[str], env: dict[str, str], cwd: str, ranks: int = 2) -> tuple[float, float, float, list[dict[str, object]]]:
    """The command's wall (s), its CPU (s: user + sys of it and every descendant it waited for),
    its first process's own CPU (s: gputop's, where it is gputop) and each rank's figures."""
    with tempfile.TemporaryFile() as stdout:
        t0 = time.perf_counter()
        proc = subprocess.Popen(argv, env=env, cwd=cwd, stdout=stdout, stderr=subprocess.STDOUT)
        try:
            os.waitid(os.P_PID, proc.pid, os.WEXITED | os.WNOWAIT)  # ended, not reaped: /proc still has it
            own = own_cpu(proc.pid)
            _, status, usage = os.wait4(proc.pid, 0)
        except BaseException:
            proc.kill()
            raise
        wall = time.perf_counter() - t0
        proc.returncode = os.waitstatus_to_exitcode(status)
        stdout.seek(0)
        text = stdout.read().decode(errors="replace")  # record echoes the job's output
    if proc.returncode != 0:
        raise SystemExit(f"benchmarks/ranks.py: {argv[:4]} failed: {text[-2000:]}")
    # each rank prints one line; unbuffered (gputop sets PYTHONUNBUFFERED) two ranks' lines may interleave
    found = [json.JSONDecoder().raw_decode(part)[0] for part in text.split("BENCH ")[1:]]
    if len(found) != ranks:
        raise SystemExit(f"benchmarks/ranks.py: expected {ranks} ranks' figures, got {len(found)}: {text[-2000:]}")
    return wall, usage.ru_utime + usage.ru_stime, own, found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--steps", type=int, default=500)
    parser.add_argument("--blocks", type=int, default=20)
    parser.add_argument("--interval", default="0.5", help="record's sampling interval (s)")
    a = parser.parse_args()
    env = {k: v for k, v in os.environ.items() if not k.startswith("GPUTOP_") and k != "PYTHONPATH"}
    env["PYTHONWARNINGS"] = "ignore"
    launch = [torchrun(), "--standalone", "--nproc_per_node=2"]
    env["PATH"] = os.path.dirname(launch[0]) + os.pathsep + env.get("PATH", "")  # `--run torchrun` finds the same one
    with tempfile.TemporaryDirectory() as tmp:
        script = str(pathlib.Path(tmp) / "rank.py")
        pathlib.Path(script).write_text(RANK)

        def gputop(blocks: int, *flags: str) -> list[str]:
            out = str(pathlib.Path(tmp) / "trace.json")
            record = [sys.executable, "-m", "gputop", "record", "--force", "--out", out, "--interval", a.interval, *flags]
            return [*record, "--run", "torchrun", "--", *launch[1:], script, str(a.steps), str(blocks)]

        genv = {**env, "PYTHONPATH": str(ROOT)}
        *_, inside = run(gputop(a.blocks), genv, tmp)
        record = gputop(a.blocks)
        *_, single = run([*record[: record.index("--run") + 1], script, "--", str(a.steps), str(a.blocks)], genv, tmp, ranks=1)
        arms = {
            ARMS[0]: ([*launch, script, str(a.steps), "0"], env),
            ARMS[1]: (gputop(0, "--no-instrument"), genv),
            ARMS[2]: (gputop(0), genv),
        }
        ends: dict[str, list[tuple[float, float, float, float, float]]] = {arm: [] for arm in ARMS}
        for k in range(a.repeats):
            for arm in ARMS[k % 3 :] + ARMS[: k % 3]:  # each arm first in turn
                wall, cpu, own, ranks = run(*arms[arm], tmp)
                loop = max(float(r["loop_ns"]) for r in ranks) / 1e9  # type: ignore[arg-type]
                loop_cpu = sum(float(r["loop_cpu_ns"]) for r in ranks) / 1e9  # type: ignore[arg-type, misc]
                ends[arm].append((loop, wall, cpu, loop_cpu, own if arm != ARMS[0] else 0.0))

    print(f"2 ranks (torchrun, gloo), tiny DDP model, {a.steps} steps; medians")
    for r in sorted(inside + single, key=lambda r: int(r["rank"])):  # type: ignore[call-overload]
        who = "one process" if r["rank"] == -1 else f"rank {r['rank']}"
        print(f"{who}: {a.blocks} x {r['block_steps']} steps each way, in-process, per step (us): bare, hooked, difference")
        for i, what in enumerate(("wall", "main thread CPU", "process CPU")):
            bare = statistics.median(b[i] for b in r["bare_ns"]) / 1e3  # type: ignore[attr-defined]
            armed = statistics.median(b[i] for b in r["armed_ns"]) / 1e3  # type: ignore[attr-defined]
            print(f"  {what:18}{bare:10.1f}{armed:10.1f}{armed - bare:+10.2f}")
    _end_to_end(ends, a.steps, a.repeats)


ARMS = ("torchrun", "gputop, no hooks", "gputop")


def _end_to_end(ends: dict[str, list[tuple[float, float, float, float, float]]], steps: int, repeats: int) -> None:
    print(f"end to end, {repeats} runs each, medians: " + ", ".join(f"{i + 1} {arm}" for i, arm in enumerate(ARMS)))
    rows = (
        (0, f"the ranks' {steps}-step loop, slower rank (s)"),
        (1, "the whole command, wall (s)"),
        (2, "the whole command, CPU (s)"),
        (3, "the ranks' loops, CPU, both (s)"),
        (4, "gputop's own process, CPU (s)"),
    )
    print(f"{'':46}" + "".join(f"{i + 1:>10}" for i in range(len(ARMS))) + f"{'3 - 1':>10}{'3 - 2':>10}")
    for i, label in rows:
        m = [statistics.median(x[i] for x in ends[arm]) for arm in ARMS]
        first = f"{100 * (m[2] - m[0]) / m[0]:+9.2f}%" if m[0] else f"{'':10}"
        print(f"{label:46}" + "".join(f"{v:10.3f}" for v in m) + first + f"{100 * (m[2] - m[1]) / m[1]:+9.2f}%")
    for i, label in ((2, "the whole command's CPU"), (3, "the ranks' loops' CPU"), (4, "gputop's own CPU")):
        m = [statistics.median(x[i] for x in ends[arm]) for arm in ARMS]
        first = f"3 - 1 {1e6 * (m[2] - m[0]) / steps:+.1f}, " if m[0] else ""
        print(f"{label}, per job step (us): {first}3 - 2 {1e6 * (m[2] - m[1]) / steps:+.1f}")
    print("each run, (loop s, command wall s, command CPU s, loops' CPU s, gputop's own CPU s):")
    for arm in ARMS:
        print(f"  {arm:17}" + "  ".join("(" + ", ".join(f"{v:.2f}" for v in x) + ")" for x in ends[arm]))


if __name__ == "__main__":
    main()
