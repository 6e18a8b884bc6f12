"""`gputop compare cnn`: the same workload on the CPU and then on the GPU, side by side.

Both runs get the same model and batch (a bundled workload's CPU-default sizes, pinned, since its
per-device defaults differ) and each device's default precision (shown; `-- --precision fp32`
forces one for both). The first steps are warm-up (allocation, autotuning) and left out of the
rates. Whether there is a GPU is the child's to say: the GPU run asks for `--device cuda`, and a
torch that sees none refuses, in one line, which is shown. Energy per sample needs the device's
energy counter (GPU) or a readable RAPL package (CPU); elsewhere it is n/a. Imports neither
textual nor torch: the workloads run as children (gputop.workload).

A script that takes ``--device`` (an ``add_argument("--device", ...)`` in it, like the bundled
workloads) is run the same way. Any other script runs as it is, picking its device the usual way
(``torch.cuda.is_available()``): the CPU run hides the GPUs from it (``CUDA_VISIBLE_DEVICES=``,
and AMD's from a ROCm PyTorch: ``HIP_VISIBLE_DEVICES=``, ``ROCR_VISIBLE_DEVICES=``),
and both runs are measured from the steps gputop's hooks detect (gputop.workload.inject). A
script that imports nothing but the standard library is refused up front (no step of it can be
seen); one whose CPU run shows no step is not run again on the GPU. A failed CPU run is not
followed by a GPU run either: the table says the CPU run failed, not that there is no GPU.

A distributed job's launcher (``compare torchrun -- --nproc_per_node=2 train.py``, or ``-m
torch.distributed.run``) is run the same way, as it is: its training script (the first ``.py``
among the launcher's arguments) is read for what it imports and for its backend. A script that
asks for ``nccl`` outright (``init_process_group("nccl")``) is refused up front: its CPU run
cannot start; one that picks it the usual way (``"nccl" if torch.cuda.is_available() else
"gloo"``, or no backend: PyTorch's default for the device) runs on gloo on the CPU. The job's
samples/s is the sum of its ranks' (each a windowed rate over its own steps after warm-up), its
step time the slowest rank's median (gputop.workload.ranks); its energy per sample is n/a (the
devices' energy is not shared out among the ranks). A distributed job whose CPU run fails is
told in one line.
"""

from __future__ import annotations

import argparse
import ast
import json
import re
import sys
import time
from dataclasses import dataclass
from typing import Any, Callable, Sequence, TextIO

from gputop import console
from gputop.argtypes import integer
from gputop.environment import Environment
from gputop.exitstatus import ExitStatus
from gputop.model import WorkloadState, WorkloadStep
from gputop.sampler import SamplerLike
from gputop.signals import Interrupted, StopSignals, signal_name
from gputop.workload import BUNDLED, Workload, WorkloadError, ranks, rates, resolve
from gputop.workload.targets import module_source

PROG = "gputop compare"
EXAMPLES = """\
examples:
  gputop compare cnn                         ResNet-18 on 32x32 images, batch 32, CPU then GPU
  gputop compare mlp --steps 50 --batch-size 1024
  gputop compare transformer -- --size tiny  what follows -- goes to both runs
  gputop compare cnn --json                  the numbers as JSON
  gputop compare train.py                    your own script, as it is: GPUs hidden on the CPU run
  gputop compare -m pkg.train -- --epochs 1  a module, as python -m runs it (from this directory)
"""
# The CPU defaults of workloads/<name>.py, passed to both runs so both run the same model (their
# CUDA defaults are larger). tests/test_compare.py checks these against the scripts.
SAME_SIZE: dict[str, tuple[str, ...]] = {
    "cnn": ("--depth", "18", "--image-size", "32"),
    "mlp": (),
    "transformer": ("--size", "small"),
    "matmul": ("--n", "2048"),
}
SAME_BATCH = {"cnn": 32, "mlp": 256, "transformer": 8, "matmul": 4}
DEFAULT_STEPS = 20
DEFAULT_WARMUP = 2
POLL_S = 0.2


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "compare",
        help="run a workload on CPU and on GPU, and show the speedup",
        usage="gputop compare NAME|-m MODULE [--steps N] [--batch-size B] [--warmup K] [--json] [-- ARGS]",
        description="Run the same workload on the CPU, then on the GPU (where torch sees one), "
        "and compare samples/s, step time, TFLOP/s, MFU and energy per sample. Arguments after "
        "'--' go to both runs.",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "workload",
        metavar="NAME",
        help=f"a bundled workload ({', '.join(BUNDLED)}), a Python script or -m MODULE "
        "(one that takes --device cpu|cuda, --steps and --batch-size gets them; any other "
        "runs as it is, measured from its detected steps)",
    )
    parser.add_argument(
        "--steps",
        type=integer(1),
        default=None,
        help=f"steps on each device (default {DEFAULT_STEPS}; a script that takes no --device runs its own number)",
    )
    parser.add_argument(
        "--batch-size",
        type=integer(1),
        default=None,
        metavar="B",
        help="samples per step on both devices (default: the workload's CPU default)",
    )
    parser.add_argument(
        "--warmup",
        type=integer(0),
        default=DEFAULT_WARMUP,
        metavar="K",
        help=f"first steps left out of the rates (default {DEFAULT_WARMUP})",
    )
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    return parser


@dataclass(frozen=True)
class Result:
    """One device's run: the final state, and the rates over the steps after warm-up."""

    device: str  # what was asked: "cpu" | "cuda"
    state: WorkloadState
    steps: tuple[WorkloadStep, ...]  # after warm-up
    samples_per_s: float | None
    step_s: float | None  # median step time
    tflops: float | None
    mfu_pct: float | None
    joules_per_sample: float | None
    ranks: int | None = None  # a distributed job's ranks seen (None: not one)

    @property
    def ok(self) -> bool:
        return self.state.status == "ok" and bool(self.steps)

    def to_dict(self) -> dict[str, Any]:
        s = self.state
        return {
            "device": s.device or self.device,
            "device_name": s.device_name,
            "precision": s.precision,
            "status": s.status,
            "error": s.error,
            "steps_measured": len(self.steps),
            "ranks": self.ranks,
            "samples_per_s": self.samples_per_s,
            "tokens_per_s": None if self.samples_per_s is None or not s.tokens_per_sample else self.samples_per_s * s.tokens_per_sample,
            "step_s_median": self.step_s,
            "tflops": self.tflops,
            "mfu_pct": self.mfu_pct,
            "joules_per_sample": self.joules_per_sample,
            "peak_flops": s.peak_flops,
            "peak_flops_source": s.peak_flops_source,
        }


def result(device: str, state: WorkloadState, warmup: int) -> Result:
    """The rates over the steps after the first ``warmup`` (by step index; a rank's, by its own)."""
    steps = tuple(s for s in (state.rank_steps or state.recent_steps) if s.step > warmup)
    per_rank = ranks.model(steps, {})
    if per_rank:  # a distributed job: the sum of its ranks' rates, the slowest rank's step
        slow = ranks.slowest(per_rank)
        step_p50 = None if slow is None else slow.step_p50_s
        return Result(device, state, steps, ranks.job_samples_per_s(per_rank), step_p50, None, None, None, len(per_rank))
    over = rates.over(steps, state.flops_per_step, state.peak_flops)
    timed = any(s.wall_s > 0 for s in steps)  # a step time even where its samples are not known
    step_s = rates.median(s.wall_s for s in steps) if timed else None
    return Result(device, state, steps, over.samples_per_s, step_s, over.tflops, over.mfu_pct, rates.joules_per_sample(steps))


def measure(
    target: str,
    argv: Sequence[str],
    device: str,
    steps: int,
    warmup: int,
    *,
    sampler: SamplerLike | None = None,
    progress: Callable[[str], None] | None = None,
    poll_s: float = POLL_S,
    env: dict[str, str] | None = None,
) -> Result:
    """Run one workload to its end, sampling as it goes (for energy), and take its rates."""
    workload = Workload(target, argv, keep_steps=steps + 1, env=env)
    try:
        workload.start()
        while True:
            state = workload.poll(sampler.sample() if sampler is not None else None)
            if progress is not None:
                progress(_progress_line(device, state))
            if not state.running:
                break
            time.sleep(poll_s)
        if sampler is not None:  # one more sample, so that the last steps' energy is covered:
            # after the GPUs' shortest interval, or it would carry the reading taken just now
            time.sleep(sampler.gpu_interval_s)
            state = workload.poll(sampler.sample())
    finally:
        state = workload.stop()
    return result(device, state, warmup)


def _progress_line(device: str, state: WorkloadState) -> str:
    if state.step is None:
        what = f"starting ({state.phase})" if state.phase else "starting"
    else:
        rate = "" if state.samples_per_s is None else f"  {_rate(state.samples_per_s)} {state.sample_unit}/s"
        what = f"step {state.step}/{state.steps_planned or '?'}{rate}"
    return f"{PROG}: {device}  {what}"


def run(args: argparse.Namespace, env: Environment) -> int:
    """Both runs, then the table (or JSON). ``env.sampler`` is used as given; without one,
    ``env.open_sampler`` builds the real sources (and they are closed at the end)."""
    try:
        plan = _plan(args)
    except (WorkloadError, _Refused) as exc:
        return env.error(str(exc), ExitStatus.USAGE)
    sampler = env.sampler
    try:
        # the first signal unwinds measure(), whose finally stops the workload's whole group
        # (SIGTERM's and SIGHUP's defaults would end compare at once and leave it running)
        with StopSignals(raise_first=True):
            if sampler is None:
                sampler = env.open_sampler(3600.0)  # no process table needed
            results = _measure_both(args, plan, sampler, env.stderr if env.stderr_isatty else None)
            if plan.launcher and results[0].state.status == "failed":
                return env.error(
                    f"{plan.name}'s CPU run failed ({_rank_failure(results[0].state)}): compare runs a distributed job "
                    "on the CPU on gloo with the GPUs hidden, so its script must pick its backend and device the usual way"
                )
            if _no_step_seen(plan, results):
                return env.error(
                    f"{plan.name} ran on the CPU and no training step of it was seen "
                    "(no torch optimizer stepped, no backward): nothing to compare"
                )
    except WorkloadError as exc:
        return env.error(str(exc), ExitStatus.USAGE)
    except Interrupted as exc:  # measure() has stopped the workload's group on the way out
        if env.stderr_isatty:
            env.stderr.write(console.CLEAR_LINE)
        env.stderr.write(f"{PROG}: stopped by {signal_name(exc.signum)}\n")
        return ExitStatus.signalled(exc.signum)
    finally:
        if env.sampler is None and sampler is not None:
            sampler.close()
    return _show(args, plan, results, env.stdout)


class _Refused(Exception):
    """A command line compare will not run (the message says why)."""


@dataclass(frozen=True)
class _Plan:
    """What both runs are given: the workload, how it takes its device, steps and batch."""

    name: str
    takes_device: bool  # the script declares --device: it gets cpu, then cuda
    steps: int
    batch: int | None
    common: list[str]  # the arguments of both runs (before --device)
    launcher: bool = False  # a distributed job's launcher (torchrun), run as it is


def _plan(args: argparse.Namespace) -> _Plan:
    """The runs the command line asks for; WorkloadError or _Refused where it cannot be."""
    extra = tuple(getattr(args, "run_args", ()) or ())
    name, _ = resolve(args.workload)
    bundled = args.workload in BUNDLED and name == args.workload
    # the file to read for --device and imports: a module's (-m pkg.train), else the script
    source = (module_source(name) if args.workload.startswith("-m") else args.workload) or ""
    launcher = name in LAUNCHERS
    if launcher:  # what is read is the training script it runs, never its own code
        source = _training_script(name, extra)
    takes_device = bundled or (not launcher and _takes_device(source))
    if not takes_device:
        _refuse_as_it_is(args, source, name)
    steps = DEFAULT_STEPS if args.steps is None else args.steps
    _refuse_options(args, steps, extra)
    batch = args.batch_size if args.batch_size is not None else SAME_BATCH.get(name) if bundled else None
    common: list[str] = []
    if takes_device:
        common = [*(SAME_SIZE.get(name, ()) if bundled else ()), "--steps", str(steps)]
        if batch is not None:
            common += ["--batch-size", str(batch)]
    common += extra
    return _Plan(name, takes_device, steps, batch, common, launcher)


LAUNCHERS = ("torchrun", "torch.distributed.run", "torch.distributed.launch")  # a distributed job's


def _training_script(name: str, extra: Sequence[str]) -> str:
    """The script a launcher runs (the first ``.py`` among its arguments), checked for a backend
    that cannot run on the CPU; _Refused where there is none or it asks for nccl outright."""
    script = next((a for a in extra if a.endswith(".py")), None)
    if script is None:
        raise _Refused(
            f"compare runs {name}'s training script as it is: name it as a .py file after '--' ({name} -- --nproc_per_node=2 train.py)"
        )
    backend = _literal_backend(script)
    if backend == "nccl":
        raise _Refused(
            f"{script} asks for the nccl backend outright, which its CPU run cannot use: compare needs the backend picked "
            'the usual way ("nccl" if torch.cuda.is_available() else "gloo", or none: PyTorch picks it by device)'
        )
    return script


_EXCEPTION_LINE = re.compile(r"^(\[rank\d+\]: )?[A-Za-z_][\w.]*(Error|Exception|Interrupt)\b(: .*)?$")  # torchrun's prefix


def _rank_failure(state: WorkloadState) -> str:
    """Why a launcher's job failed: the first exception line a rank printed (the launcher's own,
    torchrun's ChildFailedError, says only that a rank failed), else the launcher's reason."""
    for line in state.output_tail:
        if _EXCEPTION_LINE.match(line) and "ChildFailedError" not in line:
            return line
    return state.error or "no reason given"


def _literal_backend(path: str) -> str | None:
    """The backend a script's ``init_process_group`` names as a literal (first argument or
    ``backend=``), or None (none named, or chosen by an expression)."""
    try:
        with open(path, "rb") as f:
            tree = ast.parse(f.read(), path)
    except (OSError, SyntaxError, ValueError):
        return None
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and getattr(node.func, "attr", getattr(node.func, "id", "")) == "init_process_group":
            given = node.args[:1] + [k.value for k in node.keywords if k.arg == "backend"]
            for value in given:
                if isinstance(value, ast.Constant) and isinstance(value.value, str):
                    return value.value.lower()  # "cpu:gloo,cuda:nccl" maps a backend to each device
    return None


def _refuse_as_it_is(args: argparse.Namespace, source: str, name: str) -> None:
    """A script run as it is (no --device): refused where no step of it can be seen, or where
    compare's own --steps or --batch-size would have nowhere to go."""
    refusal = _unseen(source, name)
    if refusal is None and (args.steps is not None or args.batch_size is not None):
        refusal = (
            f"{name} takes no --device, so it runs as it is: --steps and --batch-size are "
            "for workloads that take them (give a script its own options after '--')"
        )
    if refusal is not None:
        raise _Refused(refusal)


def _refuse_options(args: argparse.Namespace, steps: int, extra: Sequence[str]) -> None:
    """Steps all warm-up, or an option compare gives both runs itself given after '--'."""
    if steps <= args.warmup:
        raise _Refused(f"--steps {steps} leaves nothing after --warmup {args.warmup} warm-up steps")
    if _given(extra, "--device"):
        raise _Refused("compare chooses --device itself (cpu, then cuda)")
    for option in ("--steps", "--batch-size"):
        if _given(extra, option):
            raise _Refused(
                f"give {option} to compare itself (before '--'), not to the workload after it: compare passes its own to both runs"
            )


def _measure_both(args: argparse.Namespace, plan: _Plan, sampler: SamplerLike | None, progress_to: TextIO | None) -> list[Result]:
    """The CPU run, then the GPU run; the CPU's alone where the GPU's would tell nothing more
    (it failed, or no step of a script run as it is was seen). ``progress_to``: the terminal
    the progress line is redrawn on, if any."""

    def progress(line: str) -> None:
        assert progress_to is not None
        progress_to.write(console.CLEAR_LINE + line)
        progress_to.flush()

    results = []
    for device in ("cpu", "cuda"):
        argv, env = (["--device", device, *plan.common], None) if plan.takes_device else (plan.common, _env(device))
        results.append(
            measure(
                args.workload,
                argv,
                device,
                max(plan.steps, KEEP_STEPS),
                args.warmup,
                sampler=sampler,
                progress=progress if progress_to else None,
                env=env,
            )
        )
        if progress_to:
            progress_to.write(console.CLEAR_LINE)
            progress_to.flush()
        if _no_step_seen(plan, results) or results[0].state.status != "ok":
            break  # the GPU run would fail the same way: the CPU side says why
    return results


def _no_step_seen(plan: _Plan, results: list[Result]) -> bool:
    """A script run as it is that ran fine on the CPU, and no step of it was seen."""
    cpu = results[0].state
    return cpu.step is None and not plan.takes_device and cpu.status == "ok"


def _show(args: argparse.Namespace, plan: _Plan, results: list[Result], stdout: TextIO) -> int:
    """The table (or JSON) on stdout; the exit status: 1 where a run got under way and failed."""
    cpu, gpu = results[0], results[1] if len(results) > 1 else None
    ran = gpu is not None and _ran_on_gpu(gpu.state)
    report = {
        "workload": plan.name,
        "argv_common": plan.common,
        "steps": plan.steps if plan.takes_device else None,
        "steps_seen": {"cpu": cpu.state.step, "gpu": gpu.state.step if gpu is not None else None},
        "steps_source": cpu.state.steps_source,
        "warmup": args.warmup,
        "batch_size": cpu.state.batch_size or plan.batch,
        "cpu": cpu.to_dict(),
        "gpu": gpu.to_dict() if gpu is not None and ran else None,
        "gpu_unavailable": None if gpu is None or ran else _why(gpu.state, plan.takes_device),
        "gpu_skipped": "the CPU run failed" if gpu is None else None,
        "speedup": _speedup(cpu, gpu) if gpu is not None and ran else None,
    }
    if args.json:
        stdout.write(json.dumps(report, indent=2) + "\n")
    else:
        stdout.write(to_text(report, cpu, gpu))
    # a GPU run that got under way and then failed (CUDA out of memory at step 4) is a failure;
    # no GPU at all is not: the CPU side is the answer then
    ok = cpu.ok and gpu is not None and (gpu.ok or not ran)
    return ExitStatus.OK if ok else ExitStatus.FAILURE


KEEP_STEPS = 4096  # steps kept per run of a script that runs its own number


def _env(device: str) -> dict[str, str] | None:
    """A script's environment: the GPUs hidden from its CPU run; the GPU run's as it is."""
    import os

    hidden = {"CUDA_VISIBLE_DEVICES": "", "HIP_VISIBLE_DEVICES": "", "ROCR_VISIBLE_DEVICES": ""}
    return {**os.environ, **hidden} if device == "cpu" else None


def _imports(path: str) -> set[str] | None:
    """The top-level names a script imports; None where it cannot be read as Python."""
    try:
        with open(path, "rb") as f:
            tree = ast.parse(f.read(), path)
    except (OSError, SyntaxError, ValueError):
        return None
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(a.name.partition(".")[0] for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names.add(node.module.partition(".")[0])
        elif isinstance(node, ast.ImportFrom) and node.level:
            names.add(".")  # a package of its own: anything may come in
        elif isinstance(node, ast.Call) and getattr(node.func, "attr", getattr(node.func, "id", "")) in (
            "import_module",
            "__import__",
            "run_path",
            "run_module",
        ):
            names.add("?")  # imports by name: anything may come in
    return names


def _takes_device(path: str) -> bool:
    """The script declares ``--device`` (argparse's add_argument), as the bundled ones do."""
    try:
        with open(path, "rb") as f:
            tree = ast.parse(f.read(), path)
    except (OSError, SyntaxError, ValueError):
        return False
    return any(
        isinstance(n, ast.Call)
        and getattr(n.func, "attr", None) == "add_argument"
        and any(isinstance(a, ast.Constant) and a.value == "--device" for a in n.args)
        for n in ast.walk(tree)
    )


def _unseen(path: str, name: str) -> str | None:
    """Why no step of the script could be seen, where that is sure before it runs: it imports
    nothing outside the standard library (so never torch)."""
    names = _imports(path)
    if names is None:
        return None
    stdlib = getattr(sys, "stdlib_module_names", None)
    if stdlib is None or not names <= set(stdlib) | {"__future__"}:
        return None
    return (
        f"{name} imports only the standard library, never torch: compare measures training "
        "steps, which gputop sees only when a script trains with PyTorch"
    )


def _given(extra: Sequence[str], option: str) -> bool:
    return any(a == option or a.startswith(option + "=") for a in extra)


def _ran_on_gpu(state: WorkloadState) -> bool:
    """The GPU run got under way: it wrote events, and its start event (if any) names cuda."""
    return state.events and (state.device is None or state.device.startswith("cuda"))


def _why(state: WorkloadState, takes_device: bool = True) -> str:
    if state.events and state.device is not None:
        if not takes_device:
            return f"with the GPUs visible, {state.name} trained on {state.device} (torch saw no GPU)"
        return f"asked for --device cuda, the workload reported running on {state.device}"
    if state.status == "ok":
        return "the GPU run reported no step"
    return state.error or f"the GPU run ended with status {state.status}"


def _speedup(cpu: Result, gpu: Result) -> float | None:
    if cpu.samples_per_s and gpu.samples_per_s and gpu.ok:
        return gpu.samples_per_s / cpu.samples_per_s
    return None


def _rate(value: float) -> str:
    return f"{value:,.0f}" if value >= 100 else f"{value:.3g}"


def _seconds(value: float) -> str:
    if value >= 1:
        return f"{value:.2f} s"
    if value >= 1e-3:
        return f"{value * 1e3:.3g} ms"
    return f"{value * 1e6:.3g} us"


def _na(value: Any, show: Callable[[Any], str]) -> str:
    return "n/a" if value is None else show(value)


def to_text(report: dict[str, Any], cpu: Result, gpu: Result | None) -> str:
    unit = cpu.state.sample_unit
    columns = [cpu] + ([gpu] if gpu is not None and report["gpu"] is not None else [])
    batch = report["batch_size"]
    if report["steps"] is not None:
        steps = f"{report['steps']} steps on each device"
    else:  # a script that runs its own number: what was seen
        seen = report["steps_seen"]
        gpu_steps = f", {seen['gpu'] or 0} on the GPU" if report["gpu"] is not None else ""
        source = {"auto": "detected by gputop's hooks", "events": "reported by the script"}.get(report["steps_source"] or "", "")
        steps = f"{seen['cpu'] or 0} steps on the CPU{gpu_steps}" + (f" ({source})" if source else "")
        if cpu.ranks:
            steps += f", by each of {cpu.ranks} ranks (samples/s: their sum; step time: the slowest rank's)"
    lines = [
        f"{PROG} {report['workload']}: batch {batch if batch else 'n/a'}, {steps}; the first "
        f"{report['warmup']} are warm-up, left out of the rates"
    ]
    if report["gpu_skipped"]:
        lines.append(f"CPU only: {report['gpu_skipped']}, so no GPU run was started")
    elif report["gpu"] is None:
        lines.append(f"No GPU run, CPU only: {report['gpu_unavailable']}")
    rows: list[tuple[str, list[str]]] = [
        ("device", [r.state.device or r.device for r in columns]),
        ("device name", [r.state.device_name or "n/a" for r in columns]),
        ("precision", [r.state.precision or "n/a" for r in columns]),
        ("status", [r.state.status if r.state.status != "failed" else f"failed: {r.state.error}" for r in columns]),
        (f"{unit}/s", [_na(r.samples_per_s, _rate) for r in columns]),
        ("step time (median)", [_na(r.step_s, _seconds) for r in columns]),
        ("TFLOP/s", [_na(r.tflops, lambda v: f"{v:.3g}") for r in columns]),
        ("MFU", [_na(r.mfu_pct, lambda v: f"{v:.1f} %") + _peak(r) for r in columns]),
        (f"J/{unit[:-1] if unit.endswith('s') else unit}", [_na(r.joules_per_sample, lambda v: f"{v:.3g}") for r in columns]),
    ]
    tokens = cpu.state.tokens_per_sample
    if tokens:  # a language model: its tokens/s, the figure its users quote
        rows.insert(5, ("tokens/s", [_na(r.samples_per_s, lambda v: _rate(v * tokens)) for r in columns]))
    if len(columns) > 1:
        speedup = report["speedup"]
        rows.append(("speedup", ["1x", _na(speedup, lambda v: f"{v:,.1f}x")]))
    width = max(24, *(len(c) + 2 for _, cells in rows for c in cells))
    head = max(len(label) for label, _ in rows) + 2
    lines.append("")
    lines += [f"{label:<{head}}" + "".join(f"{c:<{width}}" for c in cells).rstrip() for label, cells in rows]
    notes = []
    if any(r.joules_per_sample is None for r in columns):
        notes.append("J n/a: needs the GPU's energy counter, or a readable RAPL package for the CPU (often root only)")
    if cpu.joules_per_sample is not None:
        notes.append("CPU J: the whole package's energy, other processes on it included")
    if any(r.state.peak_flops_source == "measured" for r in columns):
        notes.append("peak*: measured with a matmul by the workload (no datasheet figure for this device)")
    if notes:
        lines += [""] + notes
    return "\n".join(lines) + "\n"


def _peak(result: Result) -> str:
    return "*" if result.mfu_pct is not None and result.state.peak_flops_source == "measured" else ""
