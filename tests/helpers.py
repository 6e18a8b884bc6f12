"""Helpers that more than one test module uses, in one place: no test module imports another's names.

The live view's Pilot helpers and synthetic samples are in tui_fixtures.py, the cluster's servers
in cluster_fixtures.py, the NVML fake in fakenvml.py; this module holds the rest: known samples in
a trace, ``gputop`` as a child process (plain, under a pseudo-terminal, in tmux, as ``serve``), and
waiting on a condition.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import fcntl
import os
import pathlib
import pty
import queue
import re
import select
import shutil
import signal
import ssl
import struct
import subprocess
import sys
import termios
import textwrap
import threading
import time
import urllib.parse
import urllib.request
import uuid
from typing import Callable, Iterable, TypeVar

from gputop.model import CpuSample, GpuInfo, GpuSample, Sample
from gputop.trace import TraceWriter

TESTS = pathlib.Path(__file__).resolve().parent
ROOT = TESTS.parent

T = TypeVar("T")


def wait_for(probe: Callable[[], T | None], timeout: float, what: str, step: float = 0.05) -> T:
    """Poll ``probe`` until it returns something truthy; fail with ``what`` after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g} s: {what}")
        time.sleep(step)


# -------------------------------------------------------------------- known samples in a trace

T0 = 1_712_345_678_901_234_567  # ns; sub-microsecond digits must survive the round trip

H100 = GpuInfo(
    index=0,
    name="NVIDIA H100 80GB HBM3",
    uuid="GPU-0000",
    pci_bus_id="00000000:18:00.0",
    architecture="Hopper",
    sm_count=132,
    mem_bus_width_bits=5120,
    max_mem_clock_mhz=2619,
    peak_dram_bw_bytes_per_s=3.35e12,
    driver_version="550.54.15",
    cuda_version="12.4",
    gpm_supported=True,
)
A100 = GpuInfo(
    index=1,
    name="NVIDIA A100-SXM4-80GB",
    uuid=None,
    pci_bus_id=None,
    architecture="Ampere",
    sm_count=108,
    mem_bus_width_bits=None,
    max_mem_clock_mhz=None,
    peak_dram_bw_bytes_per_s=None,
    driver_version="550.54.15",
    cuda_version="12.4",
)


def make_samples(n: int = 5) -> list[Sample]:
    """Known samples: gaps (None), a lost GPU, throttle reasons that change, odd timestamps."""
    out = []
    for i in range(n):
        cpu = CpuSample(
            cpu_util_pct=12.5 + i,
            core_util_pct=(10.0, 15.0 + i),
            core_freq_mhz=(3000.0, None if i % 2 else 2999.5),
            cpu_power_w=None if i == 2 else 45.25 + i,
            ram_used_bytes=10**9 + i,
            ram_total_bytes=16 * 2**30,
            load1=0.5,
        )
        h100 = GpuSample(
            H100,
            gpu_util_pct=99.0,
            mem_busy_pct=40.0,
            sm_active_pct=None if i == 1 else 30.25 + i,
            tensor_active_pct=0.1,
            dram_bw_bytes_per_s=1.5e12,
            mem_used_bytes=60 * 2**30,
            mem_total_bytes=80 * 2**30,
            power_w=300.5 + i,
            power_limit_w=700.0,
            energy_j=1000.0 + 3 * i,
            sm_clock_mhz=1980,
            temp_c=41.0,
            pstate=0,
            clock_event_reasons=("sw_power_cap", "hw_slowdown") if i >= 3 else (),
            pcie_tx_bytes_per_s=1e9,
        )
        a100 = GpuSample(A100, lost=True) if i == 3 else GpuSample(A100, gpu_util_pct=5.0 * i, power_w=60.0, clock_event_reasons=None)
        out.append(Sample(ts_ns=T0 + i * 10_000_123, cpu=cpu, gpus=(h100, a100)))
    return out


def write(path: pathlib.Path, samples: list[Sample], close: bool = True) -> pathlib.Path:
    writer = TraceWriter.create(str(path), settings={"interval_s": 0.01})
    for s in samples:
        writer.write_sample(s)
    if close:
        writer.close()
    return path


def write_with_workload(path: pathlib.Path, items: list) -> pathlib.Path:
    """Two samples (the first at T0) and, between them, a workload's steps and marks ``items``."""
    samples = make_samples(2)
    with TraceWriter.create(str(path)) as writer:
        writer.set_workload(4242, "fake")
        writer.write_sample(samples[0])
        writer.write_workload(items)
        writer.write_sample(samples[1])
    return path


# -------------------------------------------------------------------------- gputop as a child


def gputop(*args: str, fake: str | None = None, timeout: float = 60, amd: str | None = None) -> subprocess.CompletedProcess:
    """``python -m gputop ARGS`` to its end; ``fake``: the GPUTOP_FAKE_NVML spec (None: no fake);
    ``amd``: the GPUTOP_FAKE_AMDSMI spec (None: no AMD fake)."""
    return subprocess.run([sys.executable, "-m", "gputop", *args], capture_output=True, text=True, env=fake_env(fake, amd), timeout=timeout)


def gputop_h100(*argv: str, timeout: float = 120) -> subprocess.CompletedProcess:
    """``python -m gputop ARGV`` on one fake H100, with time for a workload's run."""
    return gputop(*argv, fake="H100_SXM", timeout=timeout)


def fake_env(fake: str | None, amd: str | None = None) -> dict[str, str]:
    """This environment with the NVML fake ``fake`` (a GPUTOP_FAKE_NVML spec; None: no fake) and
    the AMD fake ``amd`` (a GPUTOP_FAKE_AMDSMI spec; None: none)."""
    env = dict(os.environ)
    env.pop("GPUTOP_FAKE_NVML", None)
    env.pop("GPUTOP_FAKE_AMDSMI", None)
    if amd is not None:
        env["GPUTOP_FAKE_AMDSMI"] = amd
    if fake is not None or amd is not None:
        if fake is not None:
            env["GPUTOP_FAKE_NVML"] = fake
        env["PYTHONPATH"] = os.pathsep.join([str(TESTS / "sitecustom"), str(TESTS), env.get("PYTHONPATH", "")])
    return env


def child_env() -> dict[str, str]:
    """A child's environment: one fake H100 (tests/sitecustom) and a terminal type."""
    out = dict(os.environ)
    out.update(GPUTOP_FAKE_NVML="H100_SXM", TERM="xterm-256color")
    out["PYTHONPATH"] = os.pathsep.join([str(TESTS / "sitecustom"), str(TESTS), out.get("PYTHONPATH", "")])
    return out


def rank_job_env() -> dict[str, str]:
    """``gputop record --run`` of a distributed job's environment: torchrun beside this Python on
    PATH, one fake H100, no GPUTOP_ variable inherited; skips the test where torch or torchrun is
    missing."""
    import pytest

    pytest.importorskip("torch")
    bindir = os.path.dirname(sys.executable)
    if shutil.which("torchrun", path=bindir + os.pathsep + os.environ.get("PATH", "")) is None:
        pytest.skip("torchrun is not installed beside this Python")
    env = {k: v for k, v in os.environ.items() if not k.startswith("GPUTOP_")}  # an outer gputop's, hooks' or fakes'
    env.update(
        GPUTOP_FAKE_NVML="H100_SXM",
        PYTHONWARNINGS="ignore",
        PATH=bindir + os.pathsep + env.get("PATH", ""),
        PYTHONPATH=os.pathsep.join([str(TESTS / "sitecustom"), str(TESTS)]),
    )
    return env


def job(tmp_path: pathlib.Path, grandchild: bool, takes_device: bool = False) -> tuple[str, pathlib.Path]:
    """A workload that writes its pgid (and starts a grandchild, when asked) and sleeps;
    ``takes_device``: it declares --device, so that compare runs it (as it does the bundled ones)
    rather than refusing a script that imports only the standard library."""
    pidfile = tmp_path / "pgid"
    spawn = "subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(120)'])" if grandchild else "None"
    device = "argparse.ArgumentParser().add_argument('--device')" if takes_device else "None"
    path = tmp_path / "job.py"
    path.write_text(
        textwrap.dedent(f"""\
        import argparse, os, subprocess, sys, time
        declared = {device}
        grand = {spawn}
        with open({str(pidfile)!r} + ".tmp", "w") as f:
            f.write(str(os.getpgid(0)))
        os.rename({str(pidfile)!r} + ".tmp", {str(pidfile)!r})
        time.sleep(120)
    """)
    )
    return str(path), pidfile


def live_members(pgid: int) -> list[int]:
    """Pids in process group ``pgid`` that are not zombies."""
    out = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                stat = f.read()
        except OSError:
            continue
        state, _ppid, pgrp = stat[stat.rindex(")") + 2 :].split()[:3]
        if int(pgrp) == pgid and state not in ("Z", "X"):
            out.append(int(entry))
    return out


def cleanup(pidfile: pathlib.Path) -> None:
    """A failed test must not leave its workload running: kill what is left of the group."""
    if pidfile.exists() and pidfile.read_text():
        pgid = int(pidfile.read_text())
        if live_members(pgid):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pgid, signal.SIGKILL)


def read_pgid(pidfile: pathlib.Path, members: int) -> int:
    pgid = int(wait_for(lambda: pidfile.exists() and pidfile.read_text(), 60, "the workload to start"))
    wait_for(lambda: len(live_members(pgid)) >= members, 20, f"{members} processes in the group")
    return pgid


def children(pid: int) -> list[int]:
    kids: list[int] = []
    for task in pathlib.Path(f"/proc/{pid}/task").glob("*"):
        try:
            kids += [int(p) for p in (task / "children").read_text().split()]
        except OSError:
            continue
    return kids


# ------------------------------------------------------------ gputop on a pseudo-terminal


class Terminal:
    """``gputop ARGV`` on a pseudo-terminal whose controlling side this object holds.
    ``controlling``: the terminal is the child's controlling terminal (the kernel sends it
    SIGHUP on hang-up); otherwise the child runs in a session of its own and gets no signal."""

    EXIT_S = 20  # generous: the machine is shared; the watcher looks once a second

    def __init__(self, argv: list[str], controlling: bool) -> None:
        self.fd, tty = pty.openpty()
        fcntl.ioctl(self.fd, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 120, 0, 0))

        def take_terminal() -> None:  # in the child, after setsid: make the tty its terminal
            fcntl.ioctl(0, termios.TIOCSCTTY, 0)

        self.proc = subprocess.Popen(
            [sys.executable, "-m", "gputop", *argv],
            stdin=tty,
            stdout=tty,
            stderr=tty,
            cwd=ROOT,
            env=child_env(),
            start_new_session=True,
            preexec_fn=take_terminal if controlling else None,
        )
        os.close(tty)
        self.output = bytearray()
        self._stop = threading.Event()
        self._drainer = threading.Thread(target=self._drain, daemon=True)
        self._drainer.start()

    def _drain(self) -> None:
        # select with a timeout, not a blocking read: a read in progress keeps the controlling
        # side open after os.close, so the terminal would never hang up
        while not self._stop.is_set():
            if select.select([self.fd], [], [], 0.1)[0]:
                try:
                    chunk = os.read(self.fd, 65536)
                except OSError:
                    return
                if not chunk:
                    return
                self.output += chunk

    def wait_drawn(self) -> None:
        wait_for(lambda: b"quit" in self.output, 60, f"the view to draw its footer: {bytes(self.output[-300:])!r}")

    def hang_up(self) -> None:
        self._stop.set()
        self._drainer.join()
        os.close(self.fd)

    def drawn_then_hung_up(self) -> int:
        """Once the view is on screen, hang up; its exit status (TimeoutExpired if it lingers)."""
        self.wait_drawn()
        self.hang_up()
        return self.proc.wait(self.EXIT_S)

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        if not self._stop.is_set():
            self.hang_up()


# ------------------------------------------------------------------------ gputop in tmux

TMUX = shutil.which("tmux")
PROMPT = "gputop-test$ "
SIZE = (120, 40)
START_TIMEOUT_S = 60.0  # python + textual import and the first frame, on a busy 2-core machine
EXIT_TIMEOUT_S = 30.0
# Terminal modes a full-screen app turns on and must turn off again (tmux format names).
MODES = ("alternate_on", "mouse_any_flag", "mouse_button_flag", "mouse_standard_flag", "mouse_sgr_flag")


def tmux_env(fake: str) -> dict[str, str]:
    """The environment of tmux's shell: the NVML fake ``fake`` (a GPUTOP_FAKE_NVML spec)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("TMUX")}
    env.update(
        GPUTOP_FAKE_NVML=fake, ENV="", PYTHONPATH=os.pathsep.join([str(TESTS / "sitecustom"), str(TESTS), env.get("PYTHONPATH", "")])
    )
    return env


class Tmux:
    """One private tmux server with one session running ``/bin/sh`` at a fixed size."""

    def __init__(self, env: dict[str, str], size: tuple[int, int] = SIZE) -> None:
        self.socket = f"gputop-test-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        self.env = env
        width, height = size
        self.socket_path = ""
        self.tmux("new-session", "-d", "-s", "t", "-x", str(width), "-y", str(height), "/bin/sh")
        self.socket_path = self.show("#{socket_path}")

    def tmux(self, *args: str) -> str:
        out = subprocess.run([TMUX, "-L", self.socket, "-f", "/dev/null", *args], env=self.env, capture_output=True, text=True, timeout=30)
        if out.returncode != 0:
            raise AssertionError(f"tmux {' '.join(args)} failed: {out.stderr.strip()}")
        return out.stdout

    def screen(self) -> str:
        return self.tmux("capture-pane", "-p", "-t", "t")

    def show(self, fmt: str) -> str:
        return self.tmux("display-message", "-p", "-t", "t", fmt).strip()

    def modes(self) -> dict[str, str]:
        values = self.show(" ".join(f"#{{{m}}}" for m in MODES)).split(" ")
        return dict(zip(MODES, values))

    def type(self, line: str) -> None:
        self.tmux("send-keys", "-t", "t", "-l", line)
        self.tmux("send-keys", "-t", "t", "Enter")

    def wait_for(self, condition, what: str, timeout_s: float) -> str:
        """Poll the screen until ``condition(screen)`` holds; fail showing the last screen."""
        deadline = time.monotonic() + timeout_s
        while True:
            screen = self.screen()
            if condition(screen):
                return screen
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out after {timeout_s:.0f} s waiting for {what}; screen:\n{screen}")
            time.sleep(0.1)

    def pane_pid(self) -> int:
        return int(self.tmux("list-panes", "-t", "t", "-F", "#{pane_pid}").split()[0])

    def kill(self) -> None:
        subprocess.run([TMUX, "-L", self.socket, "kill-server"], env=self.env, capture_output=True, timeout=30)
        if self.socket_path:
            pathlib.Path(self.socket_path).unlink(missing_ok=True)  # tmux leaves the socket file behind

    def quit_to_the_shell(self) -> None:
        """q, then the shell's prompt and gputop's exit status 0."""
        self.tmux("send-keys", "-t", "t", "q")
        self.wait_for(lambda s: s.rstrip().endswith(PROMPT.strip()), "the prompt after gputop", EXIT_TIMEOUT_S)
        self.type("echo exit=$?")
        self.wait_for(lambda s: "exit=0" in s, "gputop's exit status", EXIT_TIMEOUT_S)


# ------------------------------------------------------------------------------ gputop serve


def basic_auth(auth: str | None) -> dict[str, str]:
    """The request headers for basic auth as ``"user:password"`` (none for None)."""
    return {} if auth is None else {"Authorization": "Basic " + base64.b64encode(auth.encode()).decode()}


class Served:
    """``gputop serve`` in a subprocess; ``url`` from the line it prints once it serves."""

    def __init__(
        self,
        *args: str,
        fake: str | None = None,
        timeout: float = 30,
        context: ssl.SSLContext | None = None,
        auth: str | None = None,
        amd: str | None = None,
    ) -> None:
        self.context = context  # for https: the CA to trust (and a client certificate)
        self.headers = basic_auth(auth)
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "gputop", "serve", *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=fake_env(fake, amd),
        )
        self.lines: queue.Queue[str | None] = queue.Queue()
        self.stderr: list[str] = []
        threading.Thread(target=self._read, daemon=True).start()
        try:
            line = self.lines.get(timeout=timeout)
        except queue.Empty:
            line = None
        if line is None or "://" not in line:  # http:// or, with a --web-config, https://
            self.stop()
            raise AssertionError(f"gputop serve did not start: {''.join(self.stderr)}")
        self.url = line.split()[2]
        self.port = int(urllib.parse.urlsplit(self.url).port)

    def _read(self) -> None:
        for line in self.proc.stderr:
            self.stderr.append(line)
            self.lines.put(line)
        self.lines.put(None)

    def get(self, timeout: float = 10) -> str:
        request = urllib.request.Request(self.url, headers=self.headers)
        with urllib.request.urlopen(request, timeout=timeout, context=self.context) as resp:
            assert resp.status == 200
            return resp.read().decode()

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 10) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode


# ---------------------------------------------------------------------------- gputop compare


class PowerSampler:
    """Samples stamped now with a constant 100 W CPU package and no GPU."""

    gpu_interval_s = 0.0

    def sample(self) -> Sample:
        cpu = CpuSample(
            cpu_util_pct=50.0,
            core_util_pct=(50.0,),
            core_freq_mhz=(None,),
            cpu_power_w=100.0,
            ram_used_bytes=1,
            ram_total_bytes=2,
            load1=None,
        )
        return Sample(ts_ns=time.time_ns(), cpu=cpu)

    def close(self) -> None:
        pass


def compare_args(
    workload: str, *run_args: str, steps: int = 5, warmup: int = 1, batch: int | None = 8, as_json: bool = False
) -> argparse.Namespace:
    """``gputop compare``'s parsed arguments."""
    return argparse.Namespace(workload=workload, steps=steps, warmup=warmup, batch_size=batch, json=as_json, run_args=run_args)


def rank_measurements(lines: Iterable[str]) -> dict[int, tuple[int, int, float]]:
    """What each rank of a tests/rank_scripts job printed of itself (``rank R steps N samples S
    wait W``): rank -> (steps, samples, data-wait share). The ranks share one stdout, unbuffered
    (a line's text and its newline are two writes), so two ranks' lines may come run together."""
    found = {}
    for m in re.finditer(r"rank (\d) steps (\d+) samples (\d+) wait ([\d.]+)", "\n".join(lines)):
        found[int(m[1])] = (int(m[2]), int(m[3]), float(m[4]))
    return found
