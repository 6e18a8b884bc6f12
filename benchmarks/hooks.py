"""What gputop's step-detection hooks (gputop/workload/inject) cost a training script.

Run by hand:  .venv/bin/python benchmarks/hooks.py [--repeats 5] [--steps 500] [--calls 20000]

Each repeat runs the same child script twice, once instrumented (the launcher's environment:
the inject directory on PYTHONPATH, the token, an events pipe that this process drains) and once
plain, alternating which goes first. The child (never importing gputop) measures, with
``time.perf_counter_ns`` after torch is imported:

- a 500-step loop of a tiny model (Linear 32->32, batch 8, SGD, a DataLoader with
  num_workers=0, one torch thread): its wall time and its CPU time (``thread_time_ns``);
- instrumented only, the hooks' own CPU time per call, ``--calls`` calls each, best of 5: the
  optimizer pre- and post-hook (with the step event, held and written every 0.1 s), the
  ``backward`` wrapper and the DataLoader ``__next__`` wrapper (with the batch-size read), each
  wrapper's cost taken as the wrapped no-op minus the bare no-op. Their sum is the cost per step.

Medians over the repeats, side by side. On a shared 2-core machine a loop's wall time moves by
more than 1 % from run to run, so the share of the loop is also given as hooks x steps / loop.
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import statistics
import subprocess
import sys
import tempfile
import textwrap
import threading

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from gputop.workload import inject  # noqa: E402

CHILD = textwrap.dedent("""\
    import json, sys, time
    import torch
    from torch.utils.data import DataLoader, TensorDataset

    steps, calls = int(sys.argv[1]), int(sys.argv[2])
    torch.manual_seed(0)
    torch.set_num_threads(1)

    def loop():
        model = torch.nn.Linear(32, 32)
        opt = torch.optim.SGD(model.parameters(), lr=1e-3)
        data = DataLoader(TensorDataset(torch.randn(steps * 8, 32), torch.randn(steps * 8, 32)), batch_size=8)
        t0, c0 = time.perf_counter_ns(), time.thread_time_ns()
        for x, y in data:
            opt.zero_grad()
            torch.nn.functional.mse_loss(model(x), y).backward()
            opt.step()
        return time.perf_counter_ns() - t0, time.thread_time_ns() - c0

    loop()  # warm-up: the first steps allocate
    wall_ns, cpu_ns = loop()
    out = {"loop_wall_ns": wall_ns, "loop_cpu_ns": cpu_ns}
    hook = sys.modules.get("_gputop_autostep")
    if hook is not None:  # the hooks' own CPU time, called as torch calls them, once per step
        now = time.thread_time_ns
        opt = torch.optim.SGD(torch.nn.Linear(4, 1).parameters(), lr=1e-3)
        batch = (torch.randn(8, 32), torch.randn(8, 32))
        noop, give = (lambda *a, **k: None), (lambda self: batch)
        backward, next_ = hook._backward(noop), hook._next(give)
        def per_call(f, *args):
            best = []
            for _ in range(5):
                t0 = now()
                for _ in range(calls):
                    f(*args)
                best.append((now() - t0) / calls)
            return min(best)
        def step_hooks():
            hook._pre(opt, (), {})
            hook._post(opt, (), {})
        out["step_hooks_ns"] = per_call(step_hooks)
        out["backward_ns"] = per_call(backward) - per_call(noop)
        out["next_ns"] = per_call(next_, None) - per_call(give, None)
    print(json.dumps(out))
""")


def run_child(script: str, steps: int, calls: int, instrumented: bool) -> dict[str, float]:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", inject.ENV_TOKEN)}
    env["PYTHONWARNINGS"] = "ignore"
    read_fd, write_fd = os.pipe()
    env["GPUTOP_EVENTS_FD"] = str(write_fd)
    if instrumented:
        env = inject.environment(env)
    drained = []

    def drain() -> None:
        n = 0
        while chunk := os.read(read_fd, 65536):
            n += chunk.count(b"\n")
        drained.append(n)

    thread = threading.Thread(target=drain, daemon=True)
    thread.start()
    try:
        out = subprocess.run(
            [sys.executable, script, str(steps), str(calls)], env=env, pass_fds=(write_fd,), capture_output=True, text=True, timeout=600
        )
    finally:
        os.close(write_fd)
    thread.join(10)
    os.close(read_fd)
    if out.returncode != 0:
        raise SystemExit(out.stderr)
    result = json.loads(out.stdout.strip().splitlines()[-1])
    result["events"] = drained[0] if drained else 0
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--steps", type=int, default=500)
    parser.add_argument("--calls", type=int, default=20000)
    a = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        script = str(pathlib.Path(tmp) / "child.py")
        pathlib.Path(script).write_text(CHILD)
        runs: dict[bool, list[dict[str, float]]] = {True: [], False: []}
        for k in range(a.repeats):
            for instrumented in (True, False) if k % 2 == 0 else (False, True):
                runs[instrumented].append(run_child(script, a.steps, a.calls, instrumented))

    def med(which: bool, key: str) -> float:
        return statistics.median(r[key] for r in runs[which])

    print(f"{a.repeats} repeats, {a.steps}-step loop, {a.calls} calls each; medians")
    per_step = 0.0
    for key, label in (
        ("step_hooks_ns", "optimizer pre+post hook"),
        ("backward_ns", "backward wrapper"),
        ("next_ns", "DataLoader next wrapper"),
    ):
        cost = med(True, key) / 1e3
        per_step += cost
        print(f"{label:28}{cost:8.2f} us")
    print(f"{'hooks per step':28}{per_step:8.2f} us")
    print(f"{'':28}{'plain':>10}{'instrumented':>14}{'difference':>12}")
    for key, label in (("loop_wall_ns", "wall"), ("loop_cpu_ns", "CPU")):
        p, i = med(False, key) / 1e6, med(True, key) / 1e6
        print(f"{f'{a.steps}-step loop, {label} (ms)':28}{p:10.1f}{i:14.1f}{100 * (i - p) / p:11.2f}%")
    p = med(False, "loop_wall_ns") / 1e3
    print(f"hooks x steps / plain loop wall: {100 * per_step * a.steps / p:.2f} % ({per_step:.2f} us of {p / a.steps:.0f} us a step)")
    print(
        f"step events read per instrumented run: {statistics.median(r['events'] for r in runs[True]):.0f}"
        f" (plain: {statistics.median(r['events'] for r in runs[False]):.0f})"
    )


if __name__ == "__main__":
    main()
