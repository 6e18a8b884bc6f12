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
2. **End to end**: the same 2-rank ``--steps``-step job, launched ``--repeats`` times as
   ``torchrun`` alone and as ``gputop record --run torchrun``, alternating which goes first. Each
   rank times its own loop (``perf_counter`` from its first step to its last: the job's wall, free
   of start-up), and the whole command's wall time is taken from outside too.

Per step in-process: wall, the main thread's CPU time and the whole process's (the difference of
the last two is the hooks' writer thread); medians over blocks. End to end: medians over repeats,
side by side in one run.
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time

ROOT = pathlib.Path(__file__).resolve().parents[1]

RANK = textwrap.dedent("""\
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
    out = {"rank": rank, "loop_ns": loop(steps)[0]}
    if "_gputop_autostep" in sys.modules and blocks:
        import functools
        import torch.optim.optimizer as optimizer
        from torch.utils.data import dataloader

        iterator, autograd = dataloader._BaseDataLoaderIter, torch.autograd
        wrapped = (autograd.backward, iterator.__next__)
        pre, post = optimizer._global_optimizer_pre_hooks, optimizer._global_optimizer_post_hooks
        hooks = (dict(pre), dict(post))

        def armed(on):
            autograd.backward, iterator.__next__ = wrapped if on else (wrapped[0].__wrapped__, wrapped[1].__wrapped__)
            pre.clear(), post.clear()
            if on:
                pre.update(hooks[0]), post.update(hooks[1])

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


def run(argv: list[str], env: dict[str, str], cwd: str, ranks: int = 2) -> tuple[float, list[dict[str, object]]]:
    t0 = time.perf_counter()
    out = subprocess.run(argv, env=env, cwd=cwd, capture_output=True, text=True, timeout=600)
    wall = time.perf_counter() - t0
    if out.returncode != 0:
        raise SystemExit(f"benchmarks/ranks.py: {argv[:4]} failed: {out.stderr[-2000:]}")
    text = out.stdout + out.stderr  # record echoes the job's output
    found = [json.loads(m) for m in re.findall(r"BENCH (\{.*\})", text)]
    if len(found) != ranks:
        raise SystemExit(f"benchmarks/ranks.py: expected {ranks} ranks' figures, got {len(found)}: {text[-2000:]}")
    return wall, found


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
    with tempfile.TemporaryDirectory() as tmp:
        script = str(pathlib.Path(tmp) / "rank.py")
        pathlib.Path(script).write_text(RANK)

        def gputop(blocks: int) -> list[str]:
            out = str(pathlib.Path(tmp) / "trace.json")
            record = [sys.executable, "-m", "gputop", "record", "--force", "--out", out, "--interval", a.interval]
            return [*record, "--run", "torchrun", "--", *launch[1:], script, str(a.steps), str(blocks)]

        genv = {**env, "PYTHONPATH": str(ROOT)}
        _, inside = run(gputop(a.blocks), genv, tmp)
        record = gputop(a.blocks)
        _, single = run([*record[: record.index("--run") + 1], script, "--", str(a.steps), str(a.blocks)], genv, tmp, ranks=1)
        ends: dict[bool, list[tuple[float, float]]] = {True: [], False: []}
        for k in range(a.repeats):
            for with_gputop in (True, False) if k % 2 == 0 else (False, True):
                argv = gputop(0) if with_gputop else [*launch, script, str(a.steps), "0"]
                wall, ranks = run(argv, genv if with_gputop else env, tmp)
                ends[with_gputop].append((wall, max(float(r["loop_ns"]) for r in ranks) / 1e9))  # type: ignore[arg-type]

    print(f"2 ranks (torchrun, gloo), tiny DDP model, {a.steps} steps; medians")
    for r in sorted(inside + single, key=lambda r: int(r["rank"])):  # type: ignore[call-overload]
        who = "one process" if r["rank"] == -1 else f"rank {r['rank']}"
        print(f"{who}: {a.blocks} x {r['block_steps']} steps each way, in-process, per step (us): bare, hooked, difference")
        for i, what in enumerate(("wall", "main thread CPU", "process CPU")):
            bare = statistics.median(b[i] for b in r["bare_ns"]) / 1e3  # type: ignore[attr-defined]
            armed = statistics.median(b[i] for b in r["armed_ns"]) / 1e3  # type: ignore[attr-defined]
            print(f"  {what:18}{bare:10.1f}{armed:10.1f}{armed - bare:+10.2f}")
    print(f"{'':34}{'torchrun':>12}{'gputop record':>15}{'difference':>12}")
    for i, label in ((1, f"the ranks' {a.steps}-step loop (s)"), (0, "the whole command (s)")):
        p = statistics.median(x[i] for x in ends[False])
        g = statistics.median(x[i] for x in ends[True])
        print(f"{label:34}{p:12.3f}{g:15.3f}{100 * (g - p) / p:+11.2f}%")
    print("each run, (command s, loop s):")
    for which, label in ((False, "torchrun"), (True, "gputop record")):
        print(f"  {label:14}" + "  ".join(f"({w:.2f}, {loop:.3f})" for w, loop in ends[which]))


if __name__ == "__main__":
    main()
