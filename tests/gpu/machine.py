"""What the GPU check needs of the machine it runs on: whether it has a real NVIDIA GPU (the
real libnvidia-ml, never the NVML fake), and children run to their end or their time-out with
their output kept, under one budget for the whole check. Standard library and pynvml only.
"""

from __future__ import annotations

import ctypes
import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import crosscheck as xc

STOP_WAIT_S = 10.0


def no_gpu_reason(environ: dict[str, str] | None = None) -> str | None:
    """Why this machine cannot run the tests marked ``gpu``, or None where it can: the real
    libnvidia-ml loads, ``nvmlInit`` succeeds and it counts at least one device. The NVML fake
    (GPUTOP_FAKE_NVML, or any library that is not a ctypes CDLL) never counts as a GPU."""
    env = os.environ if environ is None else environ
    if env.get("GPUTOP_FAKE_NVML"):
        return f"GPUTOP_FAKE_NVML={env['GPUTOP_FAKE_NVML']} names the NVML fake, not a GPU"
    try:
        import pynvml
    except ImportError as exc:
        return f"pynvml (nvidia-ml-py) is not importable: {exc}"
    try:
        pynvml.nvmlInit()
    except pynvml.NVMLError as exc:
        return f"nvmlInit failed ({exc})"
    try:
        if not isinstance(pynvml.nvmlLib, ctypes.CDLL):  # a fake installed in this process
            return f"pynvml.nvmlLib is {type(pynvml.nvmlLib).__name__}, not the real libnvidia-ml"
        count = pynvml.nvmlDeviceGetCount()
        return None if count > 0 else "the driver counts 0 devices"
    finally:
        pynvml.nvmlShutdown()


def no_amd_gpu_reason(environ: dict[str, str] | None = None) -> str | None:
    """Why this machine cannot run the AMD tests marked ``gpu`` (test_gpu_amd.py), or None where
    it can: amdsmi imports over ROCm's real libamd_smi.so (not tests/fakeamdsmi.py's stand-in),
    starts, and finds at least one GPU."""
    env = os.environ if environ is None else environ
    if env.get("GPUTOP_FAKE_AMDSMI"):
        return f"GPUTOP_FAKE_AMDSMI={env['GPUTOP_FAKE_AMDSMI']} names the libamd_smi fake, not a GPU"
    from gputop.sources.amd import AmdSource, AmdUnavailable

    try:
        source = AmdSource.open()
    except AmdUnavailable as exc:
        return exc.reason
    try:
        import amdsmi.amdsmi_wrapper as wrapper

        if not isinstance(wrapper._libraries.get("libamd_smi.so"), ctypes.CDLL):  # a fake in this process
            return "amdsmi's library is not the real libamd_smi.so"
        return None
    finally:
        source.close()


@dataclass
class Proc:
    """A child that ran: its exit, output and time (``timed_out`` when it was stopped)."""

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

    def json(self) -> Any | None:
        """stdout as JSON when the child ended well, else None."""
        try:
            return json.loads(self.stdout) if self.ok else None
        except json.JSONDecodeError:
            return None


def stop_group(child: subprocess.Popen) -> tuple[str, str]:
    """SIGTERM to a timed-out child's process group (gputop stops its workload then), SIGKILL
    after STOP_WAIT_S; returns what it printed."""
    for sig, wait in ((signal.SIGTERM, STOP_WAIT_S), (signal.SIGKILL, 5.0)):
        try:
            os.killpg(child.pid, sig)
        except ProcessLookupError:
            pass
        try:
            return child.communicate(timeout=wait)
        except subprocess.TimeoutExpired:
            continue
    return "", ""


class OutOfTime(Exception):
    """The check's budget is spent: the child is not started."""


class Runner:
    """Children of the check, each with its own time-out, all within one budget; their output
    under ``out/logs``. They run in ``out``, never in the repository: there `python -m gputop`
    would import the tree's gputop/ (which lacks gputop.workloads) instead of the installed one."""

    def __init__(self, out: Path, budget_s: float, env: dict[str, str] | None = None) -> None:
        self.out = out
        self.logs = out / "logs"
        self.deadline = time.monotonic() + budget_s
        self.budget_s = budget_s
        self.env = dict(os.environ if env is None else env, PYTHONUNBUFFERED="1")

    def timeout(self, want: float) -> float:
        left = self.deadline - time.monotonic()
        if left < 3:
            raise OutOfTime(f"the check's budget ({self.budget_s:g} s) is spent")
        return min(want, left)

    def run(self, name: str, argv: list[str], timeout: float, env: dict[str, str] | None = None) -> Proc:
        """Run a child to its end or its time-out (then SIGTERM to its group, SIGKILL 10 s later)."""
        timeout = self.timeout(timeout)
        self.logs.mkdir(parents=True, exist_ok=True)
        t0 = time.monotonic()
        try:
            child = subprocess.Popen(
                argv,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
                env=env or self.env,
                cwd=self.out,
                start_new_session=True,
                stdin=subprocess.DEVNULL,
            )
        except OSError as exc:  # nvidia-smi not installed, say
            return Proc(argv, 0, 127, "", f"cannot run {argv[0]}: {exc.strerror or exc}", 0.0, False)
        timed_out = False
        try:
            stdout, stderr = child.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            timed_out = True
            stdout, stderr = stop_group(child)
        proc = Proc(argv, child.pid, child.returncode, stdout or "", stderr or "", time.monotonic() - t0, timed_out)
        (self.logs / f"{name}.out").write_text(proc.stdout)
        (self.logs / f"{name}.err").write_text(
            f"$ {' '.join(argv)}\n# {proc.why() if not proc.ok else 'exit 0'}, {proc.seconds:.1f} s\n{proc.stderr}"
        )
        return proc

    def gputop(self, name: str, *argv: str, timeout: float, env: dict[str, str] | None = None) -> Proc:
        return self.run(name, [sys.executable, "-m", "gputop", *argv], timeout, env)

    def save(self, name: str, text: str) -> Path:
        path = self.out / name
        path.write_text(text)
        return path


def concurrently(*jobs: Callable[[], Any]) -> list[Any]:
    """Each job on a thread of its own, started together; their results in order."""
    results: list[Any] = [None] * len(jobs)
    errors: list[BaseException] = []

    def run(i: int, job: Callable[[], Any]) -> None:
        try:
            results[i] = job()
        except BaseException as exc:  # re-raised below, on the calling thread
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(i, job)) for i, job in enumerate(jobs)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise errors[0]
    return results


PROBE = r"""
import json, os, sys
import torch
if not torch.cuda.is_available():
    print(json.dumps({"error": "torch sees no CUDA device"}), flush=True)
    sys.exit(3)
p = torch.cuda.get_device_properties(0)
held = torch.ones(256 * 2**20, dtype=torch.float32, device="cuda")  # 1 GiB, a context to see
torch.cuda.synchronize()
print(json.dumps({"pid": os.getpid(), "name": p.name, "multi_processor_count": p.multi_processor_count,
                  "total_memory": p.total_memory, "uuid": str(getattr(p, "uuid", "")),
                  "capability": f"{p.major}.{p.minor}", "L2_cache_size": getattr(p, "L2_cache_size", None),
                  "torch": torch.__version__, "torch_cuda": torch.version.cuda}), flush=True)
print("ready", flush=True)
sys.stdin.read()  # hold the context until the check closes stdin
"""


class Probe:
    """A torch child that holds 1 GiB on GPU 0 while the readings are taken, and says what
    torch sees (SM count, name)."""

    def __init__(self, runner: Runner, timeout: float) -> None:
        self.child = subprocess.Popen(
            [sys.executable, "-c", PROBE],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=runner.env,
            cwd=runner.out,
            start_new_session=True,
        )
        lines: queue.Queue[str | None] = queue.Queue()
        threading.Thread(target=self._read, args=(lines,), daemon=True).start()
        self.props: dict[str, Any] | None = None
        deadline = time.monotonic() + timeout
        line: str | None = ""
        while True:
            try:
                line = lines.get(timeout=max(0.1, deadline - time.monotonic()))
            except queue.Empty:
                line = None
            if line is None or line.strip() == "ready":
                break
            if line.startswith("{"):
                self.props = json.loads(line)
        self.ready = line is not None and self.props is not None and "error" not in self.props

    def _read(self, lines: queue.Queue) -> None:
        assert self.child.stdout is not None
        for line in self.child.stdout:
            lines.put(line)
        lines.put(None)

    def stop(self) -> str:
        """Let go of the GPU; what the probe printed on stderr."""
        try:
            assert self.child.stdin is not None
            self.child.stdin.close()
            self.child.wait(timeout=20)
        except (subprocess.TimeoutExpired, BrokenPipeError, OSError):
            stop_group(self.child)
        return self.child.stderr.read() if self.child.stderr else ""


def query_smi(runner: Runner, fields: tuple[str, ...] = xc.SMI_FIELDS) -> tuple[Proc, tuple[str, ...]]:
    """nvidia-smi --query-gpu; a field this driver calls invalid is dropped and the query repeated."""
    for attempt in range(8):
        proc = runner.run(f"smi_query_{attempt}", ["nvidia-smi", f"--query-gpu={','.join(fields)}", "--format=csv"], timeout=30)
        bad = None if proc.ok else xc.unknown_field(proc.stdout + proc.stderr, fields)
        if bad is None:
            return proc, fields
        fields = tuple(f for f in fields if f != bad)
    return proc, fields
