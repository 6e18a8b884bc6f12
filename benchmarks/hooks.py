"""What gputop's step-detection hooks (gputop/workload/inject) cost a training script, per step.

Run by hand:  .venv/bin/python benchmarks/hooks.py [--repeats 3] [--steps 200] [--blocks 10] [--calls 20000] [--callgrind]

One child script (it never imports gputop) runs instrumented (the launcher's environment: the
inject directory on PYTHONPATH, the token, an events pipe that this process drains), ``--repeats``
times. Inside it a tiny training loop (Linear 32->32, batch 8, SGD, a DataLoader with
num_workers=0, one torch thread) runs in ``--blocks`` blocks of ``--steps`` steps each way,
alternately with the hooks in place and taken out again (the wrappers unwrapped, the global
optimizer hooks removed: the benchmark reaches into torch's private hook dictionaries for that,
the hooks never do), in the same process, so that the difference is the hooks' and not another
process's memory layout, start-up or neighbours. Per step, each block: wall
(``perf_counter_ns``), the loop thread's CPU (``thread_time_ns``) and the process's CPU
(``process_time_ns``: the hooks' writer thread too). Medians over every block of every repeat.

Then the hooks called alone, as a step calls them (the DataLoader ``__next__`` wrapper and the
``backward`` wrapper, each around a no-op, the optimizer pre- and post-hook with the step event
formatted and held), ``--calls`` steps, best of 5, less the same no-ops called bare.

``--callgrind``: the same child once more under ``valgrind --tool=callgrind``, which counts
instructions (the same count whatever the machine's load, unlike any clock on a shared machine).
Each block and the hooks-alone run is cut out with callgrind's ``--zero-before`` /
``--dump-before`` on two libc calls the child makes around them and nowhere else
(``os.getpgrp``, ``os.getloadavg``); every thread is counted (the writer's lines included).
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
import threading

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from gputop.workload import inject  # noqa: E402

# The hooks taken out of a running process and put back (the benchmarks reach into torch's private
# hook dictionaries for that; the hooks never do): a function of the child scripts, ranks.py's too.
SWITCH = textwrap.dedent("""\
    def hooks_switch():
        import torch
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

        return armed
""")

CHILD = SWITCH + textwrap.dedent("""\
    import json, os, sys, time
    import torch
    from torch.utils.data import DataLoader, TensorDataset

    steps, blocks, calls, marked = (int(a) for a in sys.argv[1:5])
    torch.manual_seed(0)
    torch.set_num_threads(1)
    model = torch.nn.Linear(32, 32)
    opt = torch.optim.SGD(model.parameters(), lr=1e-3)

    def loop(n):
        data = DataLoader(TensorDataset(torch.randn(n * 8, 32), torch.randn(n * 8, 32)), batch_size=8)
        os.getpgrp()  # callgrind: --zero-before=getpgrp
        t0, c0, p0 = time.perf_counter_ns(), time.thread_time_ns(), time.process_time_ns()
        for x, y in data:
            opt.zero_grad()
            torch.nn.functional.mse_loss(model(x), y).backward()
            opt.step()
        out = [(time.perf_counter_ns() - t0) / n, (time.thread_time_ns() - c0) / n, (time.process_time_ns() - p0) / n]
        os.getloadavg()  # callgrind: --dump-before=getloadavg
        return out

    hook = sys.modules.get("_gputop_autostep")
    if hook is None:
        raise SystemExit("the hooks did not arm")
    loop(50)  # warm-up: the first steps allocate
    armed = hooks_switch()
    times = {True: [], False: []}
    order = []
    for k in range(blocks):
        for on in (True, False) if k % 2 == 0 else (False, True):
            armed(on)
            order.append(on)
            times[on].append(loop(steps))
    armed(True)

    # the hooks alone, in a step's order, around no-ops; the same no-ops bare
    batch = [torch.randn(8, 32), torch.randn(8, 32)]
    noop, give = (lambda *a, **k: None), (lambda self: batch)
    next_, backward, pre_hook, post_hook = hook._next(give), hook._backward(noop), hook._pre, hook._post

    def hooked(n):
        for _ in range(n):
            next_(None)
            backward()
            pre_hook(opt, (), {})
            post_hook(opt, (), {})

    def bare(n):
        for _ in range(n):
            give(None)
            noop()

    def alone(f):
        if marked:  # one run, cut out for callgrind
            os.getpgrp()
            f(calls)
            os.getloadavg()
            return None
        best = []
        for _ in range(5):
            t0 = time.thread_time_ns()
            f(calls)
            best.append((time.thread_time_ns() - t0) / calls)
        return min(best)

    alone_ns = [alone(hooked), alone(bare)]
    print("BENCH " + json.dumps({"order": order, "armed": times[True], "bare": times[False], "alone_ns": alone_ns}), flush=True)
""")

MARKS = ("--zero-before=getpgrp", "--dump-before=getloadavg")


def run_child(argv: list[str], hooks: str, steps: int, blocks: int, calls: int, marked: bool) -> dict[str, object]:
    """One child instrumented with the hooks of directory ``hooks`` (``argv`` runs the script); its
    figures and the step events read."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", inject.ENV_TOKEN)}
    env["PYTHONWARNINGS"] = "ignore"
    env["PYTHONHASHSEED"] = "0"  # the same dict layouts run to run: repeatable instruction counts
    read_fd, write_fd = os.pipe()
    env["GPUTOP_EVENTS_FD"] = str(write_fd)
    env = {**inject.environment(env), "PYTHONPATH": hooks}
    drained: list[int] = []

    def drain() -> None:
        n = 0
        while chunk := os.read(read_fd, 65536):
            n += chunk.count(b'"event":"step"')
        drained.append(n)

    thread = threading.Thread(target=drain, daemon=True)
    thread.start()
    try:
        args = [str(steps), str(blocks), str(calls), str(int(marked))]
        out = subprocess.run([*argv, *args], env=env, pass_fds=(write_fd,), capture_output=True, text=True, timeout=3600)
    finally:
        os.close(write_fd)
    thread.join(30)
    os.close(read_fd)
    found = re.findall(r"BENCH (\{.*\})", out.stdout)
    if out.returncode != 0 or not found:
        raise SystemExit(f"benchmarks/hooks.py: the child failed: {out.stderr[-2000:]}")
    result: dict[str, object] = json.loads(found[-1])
    result["events"] = drained[0] if drained else 0
    return result


def callgrind(script: str, hooks: str, steps: int, blocks: int, calls: int) -> dict[str, object]:
    """Instructions: each dump's total, in the child's order (warm-up, blocks, alone, bare)."""
    valgrind = shutil.which("valgrind")
    if valgrind is None:
        raise SystemExit("benchmarks/hooks.py: --callgrind needs valgrind (apt-get install valgrind)")
    with tempfile.TemporaryDirectory() as tmp:
        tool = [valgrind, "--tool=callgrind", f"--callgrind-out-file={tmp}/callgrind.out", *MARKS]
        result = run_child([*tool, sys.executable, script], hooks, steps, blocks, calls, marked=True)
        dumps = sorted(pathlib.Path(tmp).glob("callgrind.out.*"), key=lambda p: int(p.suffix[1:]))
        totals = [int(re.search(r"^summary: (\d+)", p.read_text(), re.M).group(1)) for p in dumps]  # type: ignore[union-attr]
    if len(totals) != 1 + 2 * blocks + 2:
        raise SystemExit(f"benchmarks/hooks.py: expected {1 + 2 * blocks + 2} callgrind dumps, got {len(totals)}")
    order = result["order"]
    per_block = totals[1 : 1 + 2 * blocks]
    return {
        "armed": [t / steps for t, on in zip(per_block, order) if on],  # type: ignore[call-overload]
        "bare": [t / steps for t, on in zip(per_block, order) if not on],  # type: ignore[call-overload]
        "alone": (totals[-2] - totals[-1]) / calls,
        "events": result["events"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3, help="children, each with --blocks blocks each way")
    parser.add_argument("--steps", type=int, default=200, help="steps a block")
    parser.add_argument("--blocks", type=int, default=10, help="blocks each way (hooked, bare), alternating")
    parser.add_argument("--calls", type=int, default=20000, help="steps of the hooks called alone")
    parser.add_argument("--callgrind", action="store_true", help="also count instructions under valgrind's callgrind")
    parser.add_argument("--cg-steps", type=int, default=100, help="steps a block under callgrind")
    parser.add_argument("--cg-blocks", type=int, default=2, help="blocks each way under callgrind")
    parser.add_argument("--baseline", metavar="DIR", help="another tree (git archive REV): its hooks too, side by side")
    a = parser.parse_args()
    trees = {"this tree": inject.DIR}
    if a.baseline:
        trees["baseline"] = str(pathlib.Path(a.baseline, "gputop", "workload", "inject"))
        if not pathlib.Path(trees["baseline"], "_gputop_autostep.py").is_file():
            raise SystemExit(f"benchmarks/hooks.py: no hooks under {a.baseline}")
    runs: dict[str, list[dict[str, object]]] = {tree: [] for tree in trees}
    counted: dict[str, dict[str, object]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        script = str(pathlib.Path(tmp) / "child.py")
        pathlib.Path(script).write_text(CHILD)
        for k in range(a.repeats):
            for tree in list(trees)[k % len(trees) :] + list(trees)[: k % len(trees)]:  # each first in turn
                runs[tree].append(run_child([sys.executable, script], trees[tree], a.steps, a.blocks, a.calls, marked=False))
        for tree in trees if a.callgrind else ():
            counted[tree] = callgrind(script, trees[tree], a.cg_steps, a.cg_blocks, 2000)
    print(f"{a.repeats} children x {a.blocks} blocks of {a.steps} steps each way, alternating; medians over blocks")
    for tree in trees:
        print(f"== {tree} ({trees[tree]})")
        _report(runs[tree], a.repeats * (50 + a.blocks * a.steps + 5 * a.calls), a.calls)
        if tree in counted:
            _report_counted(counted[tree], a.cg_blocks, a.cg_steps)


def _report(runs: list[dict[str, object]], expected: int, calls: int) -> None:
    armed = [b for r in runs for b in r["armed"]]  # type: ignore[attr-defined]
    bare = [b for r in runs for b in r["bare"]]  # type: ignore[attr-defined]
    print(f"{'per step (us)':34}{'bare':>10}{'hooked':>10}{'difference':>12}")
    for i, what in enumerate(("wall", "loop thread CPU", "process CPU (with the writer)")):
        b, h = statistics.median(x[i] for x in bare) / 1e3, statistics.median(x[i] for x in armed) / 1e3
        print(f"{what:34}{b:10.1f}{h:10.1f}{h - b:+12.2f}")
    for i, what in enumerate(("loop thread CPU", "process CPU")):
        diffs = [(h[i + 1] - b[i + 1]) / 1e3 for r in runs for h, b in zip(r["armed"], r["bare"])]  # type: ignore[call-overload]
        print(f"  {what}, difference of each block pair: median {statistics.median(diffs):+.2f}, {_spread(diffs)}")
    alone = statistics.median(float(r["alone_ns"][0]) - float(r["alone_ns"][1]) for r in runs) / 1e3  # type: ignore[index]
    print(f"the hooks called alone, a step's calls in order (thread CPU, best of 5 x {calls}): {alone:.2f} us")
    print(f"step events read: {sum(int(r['events']) for r in runs)} (hooked steps: {expected})")  # type: ignore[call-overload]


def _report_counted(counted: dict[str, object], blocks: int, steps: int) -> None:
    b, h = statistics.median(counted["bare"]), statistics.median(counted["armed"])  # type: ignore[arg-type]
    print(f"instructions per step (callgrind, {blocks} blocks of {steps} steps each way, every thread):")
    print(f"  bare {b:,.0f}  hooked {h:,.0f}  difference {h - b:+,.0f} ({100 * (h - b) / b:+.2f} %)")
    print(f"  each block, bare: {_list(counted['bare'])}; hooked: {_list(counted['armed'])}")  # type: ignore[arg-type]
    print(f"  the hooks called alone: {counted['alone']:,.0f} a step")


def _spread(values: list[float]) -> str:
    q = statistics.quantiles(values, n=4) if len(values) > 1 else [values[0]] * 3
    return f"quartiles {q[0]:+.2f} .. {q[2]:+.2f}"


def _list(values: list[float]) -> str:
    return ", ".join(f"{v:,.0f}" for v in values)


if __name__ == "__main__":
    main()
