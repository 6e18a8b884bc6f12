"""gputop in a real terminal: tmux runs ``python -m gputop`` in a shell, we read the screen.

What only a real terminal shows: the first frame arrives (the core grid, the GPU's name), ``q``
ends the process, and the terminal is given back as it was found: the alternate screen left
(the shell's earlier output visible again), mouse tracking off, the cursor shown, and the shell
prompt back. The GPU is the NVML fake (tests/sitecustom), named "(simulated)".

Each test runs its own tmux server on a private socket (``-L``), killed in a ``finally``.
Timeouts are generous: the machine may be slow and shared.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

TMUX = shutil.which("tmux")
pytestmark = [
    pytest.mark.skipif(TMUX is None, reason="tmux is not installed (apt-get install tmux)"),
    pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs /proc to find gputop's pid"),
]

TESTS = Path(__file__).resolve().parent
ROOT = TESTS.parent
PROMPT = "gputop-test$ "
SIZE = (120, 40)
START_TIMEOUT_S = 60.0  # python + textual import and the first frame, on a busy 2-core machine
EXIT_TIMEOUT_S = 30.0
# Terminal modes a full-screen app turns on and must turn off again (tmux format names).
MODES = ("alternate_on", "mouse_any_flag", "mouse_button_flag", "mouse_standard_flag", "mouse_sgr_flag")


def _env(fake: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TMUX")}
    env.update(GPUTOP_FAKE_NVML=fake, ENV="",
               PYTHONPATH=os.pathsep.join([str(TESTS / "sitecustom"), str(TESTS),
                                           env.get("PYTHONPATH", "")]))
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
        out = subprocess.run([TMUX, "-L", self.socket, "-f", "/dev/null", *args], env=self.env,
                             capture_output=True, text=True, timeout=30)
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
            Path(self.socket_path).unlink(missing_ok=True)  # tmux leaves the socket file behind


def _children(pid: int) -> list[int]:
    kids: list[int] = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            kids += [int(p) for p in (task / "children").read_text().split()]
        except OSError:
            continue
    return kids


def _gputop_pid(shell_pid: int) -> int | None:
    """The ``python -m gputop`` process under the shell (None while it is not started)."""
    todo = _children(shell_pid)
    while todo:
        pid = todo.pop()
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"gputop" in cmdline and b"-m" in cmdline:
            return pid
        todo += _children(pid)
    return None


def _alive(pid: int) -> bool:
    """Running, or a zombie not yet reaped (both count as not gone)."""
    return Path(f"/proc/{pid}").exists()


@pytest.fixture
def terminal(request):
    made: list[Tmux] = []

    def make(fake: str) -> Tmux:
        made.append(Tmux(_env(fake)))
        return made[-1]

    yield make
    for tmux in made:
        tmux.kill()


def _start_gputop(term: Tmux) -> tuple[int, str]:
    """Run gputop from the shell after a marker line; return its pid and the first screen."""
    term.type(f"PS1='{PROMPT}'")  # dash ignores PS1 from the environment for root
    term.wait_for(lambda s: PROMPT.strip() in s, "the shell prompt", START_TIMEOUT_S)
    term.type("echo before-gputop-$((6 * 7))")
    term.wait_for(lambda s: "before-gputop-42" in s, "the marker line", START_TIMEOUT_S)
    assert term.modes()["alternate_on"] == "0"
    term.type(f"cd {ROOT} && {sys.executable} -m gputop")
    screen = term.wait_for(lambda s: "cores busy" in s, "the core grid", START_TIMEOUT_S)
    pid = _gputop_pid(term.pane_pid())
    assert pid is not None, "no gputop process under the shell"
    return pid, screen


def _quit_and_check_restored(term: Tmux, pid: int) -> None:
    term.tmux("send-keys", "-t", "t", "q")
    deadline = time.monotonic() + EXIT_TIMEOUT_S
    while _alive(pid):
        assert time.monotonic() < deadline, f"gputop (pid {pid}) still running {EXIT_TIMEOUT_S:.0f} s after q"
        time.sleep(0.1)
    screen = term.wait_for(lambda s: s.rstrip().endswith(PROMPT.strip()), "the prompt after gputop",
                           EXIT_TIMEOUT_S)
    assert "before-gputop-42" in screen  # the normal screen, as it was before gputop
    assert "cores busy" not in screen
    assert term.modes() == {m: "0" for m in MODES}
    assert term.show("#{cursor_flag}") == "1"  # cursor shown again
    term.type("echo exit=$?")
    term.wait_for(lambda s: "exit=0" in s, "gputop's exit status", EXIT_TIMEOUT_S)


def test_live_view_draws_and_q_gives_the_terminal_back(terminal):
    term = terminal("H100_SXM:simulated")
    pid, screen = _start_gputop(term)
    screen = term.wait_for(lambda s: "H100 80GB HBM3 (simulated)" in s and "of 132 SMs active" in s,
                           "the GPU panel", START_TIMEOUT_S)
    assert "No GPU shown" not in screen
    running = term.modes()
    assert running["alternate_on"] == "1" and running["mouse_sgr_flag"] == "1", running
    assert term.show("#{cursor_flag}") == "0"  # hidden while gputop draws
    _quit_and_check_restored(term, pid)


def test_without_a_driver_the_reason_is_shown(terminal):
    term = terminal("none:driver_not_loaded")
    pid, screen = _start_gputop(term)
    screen = term.wait_for(lambda s: "No GPU shown: NVIDIA driver not loaded" in s, "the reason", START_TIMEOUT_S)
    assert "SMs active" not in screen
    _quit_and_check_restored(term, pid)


def test_a_run_job_that_failed_makes_the_live_view_exit_1(terminal, tmp_path):
    # README: 1 when the command could not do its job (a failed workload), as record --run gives
    script = tmp_path / "fails.py"
    script.write_text("import sys\nprint('starting', flush=True)\nraise SystemExit('bad config: no data')\n")
    term = terminal("H100_SXM:simulated")
    term.type(f"PS1='{PROMPT}'")
    term.wait_for(lambda s: PROMPT.strip() in s, "the shell prompt", START_TIMEOUT_S)
    term.type(f"cd {ROOT} && {sys.executable} -m gputop --run {script} 2>{tmp_path / 'err'}")
    term.wait_for(lambda s: "failed" in s and "cores busy" in s, "the job's failure in the view", START_TIMEOUT_S)
    term.tmux("send-keys", "-t", "t", "q")
    term.wait_for(lambda s: s.rstrip().endswith(PROMPT.strip()), "the prompt after gputop", EXIT_TIMEOUT_S)
    term.type("echo exit=$?")
    term.wait_for(lambda s: "exit=1" in s, "gputop's exit status 1", EXIT_TIMEOUT_S)
    assert (tmp_path / "err").read_text() == "gputop: workload fails.py failed: bad config: no data\n"
