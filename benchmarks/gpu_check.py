"""One prepared check of gputop on a real NVIDIA GPU, in one go (issue #15).

    python3 benchmarks/gpu_check.py --out DIR              on the GPU machine (<= 6 min)
    python3 benchmarks/gpu_check.py --out DIR --simulated  here: the NVML fake and this CPU
    python3 benchmarks/gpu_check.py --prepare-wheels       here, before a device call

Steps (each with its own time-out; one that fails is recorded and the next runs):
  crosscheck   nvidia-smi -q -x and --query-gpu beside `gputop snapshot --json`, started at the
               same moment while a torch process holds 1 GiB on the GPU; every field gputop shows
               against the driver's tool, SM count against torch; mismatches marked
  record       `gputop record` 30 s at 10 Hz while `matmul --precision bf16` runs, then
               `gputop report --json`: SM, tensor and DRAM activity during the steps, power
               rising, energy counter against power x time
  compare      `gputop compare mlp` and `compare cnn` (short); matmul bf16 TFLOP/s against the
               datasheet, ResNet-50 img/s and GPT-2 124M tok/s, a few seconds each
  screenshots  the live view beside a workload, drawn by the app over the real sampler
  insight      an unmodified plain training script, its detected steps and verdict (only once
               `gputop report --json` has `workload.verdict`; until then "skipped: not built yet")
Then DIR/summary.md (what matched, what not, figures, the fields the fake gets wrong) and
DIR/results.json. Exit status 0 when every step passed (a feature not built yet counts as
passed), 1 when one failed, 2 when it could not start (gputop or a dependency not importable).

--simulated runs the same steps over tests/fakenvml.py (every child gets it through
tests/sitecustom, GPUTOP_FAKE_NVML) and torch on this CPU, with short durations: no nvidia-smi,
the cross-check compares with the fake's own values at the snapshot's moment.

The GPU machine has the NVIDIA driver, Python and torch (and psutil, prometheus-client), but not
textual or plotext, and nothing can be fetched there. Carry wheels (the device tool's README):
  here:   .venv/bin/python benchmarks/gpu_check.py --prepare-wheels    (fills .whl/, git-ignored)
  there:  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \\
            --target /tmp/site .whl/*.whl && export PYTHONPATH=/tmp/site
benchmarks/README.md has the whole device call (carry [".whl"], timeout_s 420).
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.util
import os
import shutil
import subprocess
import sys
import tempfile
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
TESTS = ROOT / "tests"
sys.path.insert(0, str(HERE))

import gpu_crosscheck as xc  # noqa: E402  (beside this file, on the path above)
import gpu_runs  # noqa: E402
import gpu_steps  # noqa: E402

WHEELS_DIR = ROOT / ".whl"
INSTALL_LINE = ("python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir "
                "--upgrade --target /tmp/site .whl/*.whl && export PYTHONPATH=/tmp/site")
PREPARE_LINE = ".venv/bin/python benchmarks/gpu_check.py --prepare-wheels"
# Carried to the GPU machine as wheels: what it lacks (textual and its own needs, plotext) and
# what gputop should meet at the version tested here (nvidia-ml-py, rich). gputop itself too.
# The rest of textual's needs are on that machine's image (the device tool's KINDS.md list).
CARRY = ("textual", "plotext", "rich", "platformdirs", "mdit-py-plugins", "linkify-it-py", "nvidia-ml-py")
ON_DEVICE = ("markdown-it-py", "mdurl", "pygments", "typing-extensions", "psutil", "prometheus-client")
FAKE_SPEC = "H100_SXM:simulated"
STEPS = ("crosscheck", "record", "compare", "screenshots", "insight")


# ------------------------------------------------------------------------------------ results

@dataclass
class Check:
    what: str
    value: str
    expected: str
    verdict: str  # "pass", "FAIL", "info"


@dataclass
class StepResult:
    name: str
    status: str = "passed"  # "passed", "FAILED", "skipped"
    seconds: float = 0.0
    checks: list[Check] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def check(self, what: str, value: Any, expected: str, ok: bool | None) -> None:
        """Add a check; ``ok`` None is a figure (info), False fails the step."""
        verdict = "info" if ok is None else "pass" if ok else "FAIL"
        self.checks.append(Check(what, value if isinstance(value, str) else xc.show(value), expected, verdict))
        if ok is False:
            self.status = "FAILED"

    def fail(self, note: str) -> None:
        self.status = "FAILED"
        self.notes.append(note)


class OutOfTime(Exception):
    """The whole check's budget is spent: the step is not started (or not finished)."""


@dataclass
class Proc:
    argv: list[str]
    pid: int
    rc: int | None
    stdout: str
    stderr: str
    seconds: float
    timed_out: bool

    @property
    def ok(self) -> bool:
        return self.rc == 0 and not self.timed_out

    def why(self) -> str:
        if self.timed_out:
            return f"timed out after {self.seconds:.0f} s"
        tail = self.stderr.strip().splitlines()[-3:]
        return f"exit {self.rc}" + (": " + " / ".join(tail) if tail else "")


class Context:
    """What every step shares: options, the folder, the budget, child environments, results."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.simulated: bool = args.simulated
        self.out: Path = args.out.resolve()
        self.logs = self.out / "logs"
        self.deadline = time.monotonic() + args.budget
        self.data: dict[str, Any] = {}
        self.epoch_ns = time.time_ns()
        self.env = dict(os.environ, PYTHONUNBUFFERED="1")
        if self.simulated:
            os.environ["GPUTOP_FAKE_NVML_EPOCH_NS"] = str(self.epoch_ns)  # for fake_reference here
            self.env.update(GPUTOP_FAKE_NVML=FAKE_SPEC, GPUTOP_FAKE_NVML_EPOCH_NS=str(self.epoch_ns))
            self.env["PYTHONPATH"] = _pythonpath(TESTS / "sitecustom", TESTS)
            sys.path.insert(0, str(TESTS))

    def fake_env(self, spec: str) -> dict[str, str]:
        """The environment for a child over the fake (also in a real run: the fake's side of
        "fields the fake gets wrong")."""
        return dict(self.env, GPUTOP_FAKE_NVML=spec, PYTHONPATH=_pythonpath(TESTS / "sitecustom", TESTS))

    def timeout(self, want: float) -> float:
        left = self.deadline - time.monotonic()
        if left < 3:
            raise OutOfTime(f"the check's budget ({self.args.budget:g} s) is spent")
        return min(want, left)

    def s(self, real: float, simulated: float) -> float:
        """A duration: ``real`` on the GPU, ``simulated`` under --simulated."""
        return simulated if self.simulated else real

    def run(self, name: str, argv: list[str], timeout: float, env: dict[str, str] | None = None) -> Proc:
        """Run a child to its end or its time-out (then SIGTERM to its group, SIGKILL 10 s
        later); its output is kept under logs/."""
        timeout = self.timeout(timeout)
        self.logs.mkdir(parents=True, exist_ok=True)
        t0 = time.monotonic()
        # cwd is the output folder, never the repo: there `python -m gputop` would import the
        # tree's gputop/ (which lacks gputop.workloads) instead of the installed package
        try:
            child = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                     env=env or self.env, cwd=self.out, start_new_session=True,
                                     stdin=subprocess.DEVNULL)
        except OSError as exc:  # nvidia-smi not installed, say
            return Proc(argv, 0, 127, "", f"cannot run {argv[0]}: {exc.strerror or exc}", 0.0, False)
        timed_out = False
        try:
            stdout, stderr = child.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            timed_out = True
            stdout, stderr = gpu_steps.stop_group(child)
        proc = Proc(argv, child.pid, child.returncode, stdout or "", stderr or "", time.monotonic() - t0, timed_out)
        (self.logs / f"{name}.out").write_text(proc.stdout)
        (self.logs / f"{name}.err").write_text(f"$ {' '.join(argv)}\n# {proc.why() if not proc.ok else 'exit 0'}"
                                               f", {proc.seconds:.1f} s\n{proc.stderr}")
        return proc

    def gputop(self, name: str, *argv: str, timeout: float, env: dict[str, str] | None = None) -> Proc:
        return self.run(name, [sys.executable, "-m", "gputop", *argv], timeout, env)


def _pythonpath(*extra: Path) -> str:
    parts = [str(p) for p in extra] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
    return os.pathsep.join(parts)


# ------------------------------------------------------------------------------------- set-up

def missing_modules() -> dict[str, str]:
    """Import name -> the distribution to carry, for each one this interpreter cannot import."""
    wanted = {"gputop": "gputop (this tree's wheel)", "gputop.workloads": "gputop (this tree's wheel)",
              "pynvml": "nvidia-ml-py", "psutil": "psutil"}
    out = {}
    for module, dist in wanted.items():
        try:
            found = importlib.util.find_spec(module) is not None
        except ModuleNotFoundError:
            found = False
        if not found:
            out[module] = dist
    return out


def optional_missing() -> list[str]:
    return [m for m in ("textual", "plotext") if importlib.util.find_spec(m) is None]


def how_to_carry() -> str:
    return (f"carry wheels: here `{PREPARE_LINE}` (fills .whl/), then on the GPU machine "
            f"`{INSTALL_LINE}` (benchmarks/README.md has the whole device call)")


def _digest(files: dict[str, Path]) -> str:
    h = hashlib.sha256()
    for name in sorted(files):
        h.update(name.encode() + b"\0" + files[name].read_bytes())
    return h.hexdigest()


def _py_files(folder: Path, prefix: str = "") -> dict[str, Path]:
    return {prefix + p.relative_to(folder).as_posix(): p for p in folder.rglob("*.py")}


def installed_is_this_tree(where: Path) -> bool:
    """The installed package's sources are this tree's gputop/ plus workloads/ (which the wheel
    ships as gputop/workloads)."""
    tree = {**_py_files(ROOT / "gputop"), **_py_files(ROOT / "workloads", "workloads/")}
    return _digest(_py_files(where)) == _digest(tree)


def setup_step(ctx: Context) -> StepResult:
    """What runs the check: Python, where gputop comes from, and whether it is this tree's."""
    import gputop

    step = StepResult("setup")
    where = Path(gputop.__file__).resolve().parent
    step.check("python", f"{sys.version.split()[0]} at {sys.executable}", "-", None)
    step.check("gputop", f"{gputop.__version__} from {where}", "-", None)
    if where != ROOT / "gputop":
        same = installed_is_this_tree(where)
        step.check("installed gputop is this tree's", "yes" if same else "no (stale wheel)",
                   f"yes (else rerun `{PREPARE_LINE}`)", same)
    for module in optional_missing():
        step.check(f"{module} importable", "no", "yes (the screenshots need textual)", module != "textual")
        step.notes.append(f"{module} is missing: {how_to_carry()}")
    if not ctx.simulated:
        smi = shutil.which("nvidia-smi")
        step.check("nvidia-smi", smi or "not on PATH", "on PATH", smi is not None)
    return step


def prepare_wheels(folder: Path) -> int:
    """Download the wheels the GPU machine lacks (at this environment's versions) and build
    gputop's own, into ``folder``; print the device call."""
    from importlib import metadata

    folder.mkdir(exist_ok=True)
    pins = []
    for dist in CARRY:
        try:
            pins.append(f"{dist}=={metadata.version(dist)}")
        except metadata.PackageNotFoundError:
            sys.stderr.write(f"gpu_check: error: {dist} is not installed here; install the project's "
                             "environment first (README)\n")
            return 2
    for old in folder.glob("*.whl"):
        old.unlink()
    platforms = [a for p in ("manylinux_2_28_x86_64", "manylinux_2_17_x86_64", "manylinux2014_x86_64")
                 for a in ("--platform", p)]
    download = [sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--only-binary=:all:",
                "--python-version", "3.12", "--implementation", "cp", *platforms, "-d", str(folder), *pins]
    with tempfile.TemporaryDirectory() as tmp:
        # built from a copy: setuptools' build/ folder in the tree could carry deleted modules over
        source = Path(tmp) / "src"
        source.mkdir()
        for name in ("pyproject.toml", "README.md"):
            shutil.copy2(ROOT / name, source / name)
        for name in ("gputop", "workloads"):
            shutil.copytree(ROOT / name, source / name, ignore=shutil.ignore_patterns("__pycache__"))
        build = [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation",
                 "-w", str(folder), str(source)]
        for argv in (download, build):
            if subprocess.run(argv, timeout=600).returncode != 0:
                sys.stderr.write(f"gpu_check: error: failed: {' '.join(argv)}\n")
                return 1
    size = sum(p.stat().st_size for p in folder.glob("*.whl"))
    print(f"{len(list(folder.glob('*.whl')))} wheels, {size / 1e6:.1f} MB, in {folder}:")
    for p in sorted(folder.glob("*.whl")):
        print(f"  {p.name}")
    print(f"assumed on the GPU machine's image: {', '.join(ON_DEVICE)}")
    print(f"\non the GPU machine: {INSTALL_LINE}\n(the device call, with carry [\".whl\"]: benchmarks/README.md)")
    return 0


# --------------------------------------------------------------------------------------- main

def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="gpu_check", description=__doc__.split("\n\n")[0],
        epilog=__doc__.split("\n\n", 1)[1], formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, help="folder for every output (made if absent)")
    parser.add_argument("--simulated", action="store_true",
                        help="the NVML fake and this CPU in place of a GPU (short durations)")
    parser.add_argument("--only", nargs="+", choices=STEPS, metavar="STEP",
                        help=f"run only these steps ({', '.join(STEPS)})")
    parser.add_argument("--budget", type=float, default=None, metavar="S",
                        help="seconds for the whole check (default 340 on the GPU, 300 simulated)")
    parser.add_argument("--prepare-wheels", nargs="?", const=WHEELS_DIR, type=Path, metavar="DIR",
                        help=f"download the wheels to carry to the GPU machine into DIR (default "
                        f"{WHEELS_DIR.relative_to(ROOT)}/) and build gputop's; then exit")
    return parser


STEP_FUNCS: dict[str, Callable[[Context, StepResult], None]] = {
    "crosscheck": gpu_steps.crosscheck, "record": gpu_steps.record, "compare": gpu_runs.compare,
    "screenshots": gpu_runs.screenshots, "insight": gpu_runs.insight,
}


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.prepare_wheels is not None:
        return prepare_wheels(args.prepare_wheels.resolve())
    if args.out is None:
        parser.error("--out DIR is required (or --prepare-wheels)")
    missing = missing_modules()
    if missing:
        wheels = ", ".join(dict.fromkeys(missing.values()))
        sys.stderr.write(f"gpu_check: error: cannot import {', '.join(missing)} (wheels: {wheels}); "
                         f"{how_to_carry()}\n")
        return 2
    if args.budget is None:
        args.budget = 300.0 if args.simulated else 340.0
    args.out.mkdir(parents=True, exist_ok=True)
    ctx = Context(args)
    results = [setup_step(ctx)]
    _print(results[0])
    for name in args.only or STEPS:
        step = StepResult(name)
        t0 = time.monotonic()
        try:
            STEP_FUNCS[name](ctx, step)
        except OutOfTime as exc:
            step.fail(f"not finished: {exc}")
        except Exception as exc:  # one step's bug or surprise must not cost the others
            step.fail(f"error: {type(exc).__name__}: {exc} (traceback in logs/{name}.traceback)")
            ctx.logs.mkdir(parents=True, exist_ok=True)
            (ctx.logs / f"{name}.traceback").write_text(traceback.format_exc())
        step.seconds = time.monotonic() - t0
        results.append(step)
        _print(step)
    gpu_steps.write_summary(ctx, results)
    failed = [r.name for r in results if r.status == "FAILED"]
    print(f"gpu_check: {len(results) - len(failed)} of {len(results)} steps passed or skipped"
          + (f"; failed: {', '.join(failed)}" if failed else "") + f"; see {ctx.out / 'summary.md'}")
    return 1 if failed else 0


def _print(step: StepResult) -> None:
    bad = [c.what for c in step.checks if c.verdict == "FAIL"]
    print(f"gpu_check: {step.name:<12} {step.status:<8} {step.seconds:6.1f} s"
          + (f"  failed: {', '.join(bad)}" if bad else "")
          + (f"  ({'; '.join(step.notes)})" if step.notes and step.status != "passed" else ""), flush=True)


if __name__ == "__main__":
    sys.exit(main())
