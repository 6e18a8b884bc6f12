"""gputop in a real terminal: tmux runs ``python -m gputop`` in a shell, we read the screen.

What only a real terminal shows: the first frame arrives (the core grid, the GPU's name), ``q``
ends the process, and the terminal is given back as it was found: the alternate screen left
(the shell's earlier output visible again), mouse tracking off, the cursor shown, and the shell
prompt back. The GPU is the NVML fake (tests/sitecustom), named "(simulated)".

Each test runs its own tmux server on a private socket (``-L``), killed in a ``finally``.
Timeouts are generous: the machine may be slow and shared.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import pytest

from helpers import EXIT_TIMEOUT_S, MODES, PROMPT, ROOT, START_TIMEOUT_S, TMUX, Tmux, children, tmux_env

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(TMUX is None, reason="tmux is not installed (apt-get install tmux)"),
    pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs /proc to find gputop's pid"),
]


def _gputop_pid(shell_pid: int) -> int | None:
    """The ``python -m gputop`` process under the shell (None while it is not started)."""
    todo = children(shell_pid)
    while todo:
        pid = todo.pop()
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"gputop" in cmdline and b"-m" in cmdline:
            return pid
        todo += children(pid)
    return None


def _alive(pid: int) -> bool:
    """Running, or a zombie not yet reaped (both count as not gone)."""
    return Path(f"/proc/{pid}").exists()


@pytest.fixture
def terminal(request):
    made: list[Tmux] = []

    def make(fake: str) -> Tmux:
        made.append(Tmux(tmux_env(fake)))
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
    screen = term.wait_for(lambda s: s.rstrip().endswith(PROMPT.strip()), "the prompt after gputop", EXIT_TIMEOUT_S)
    assert "before-gputop-42" in screen  # the normal screen, as it was before gputop
    assert "cores busy" not in screen
    assert term.modes() == {m: "0" for m in MODES}
    assert term.show("#{cursor_flag}") == "1"  # cursor shown again
    term.type("echo exit=$?")
    term.wait_for(lambda s: "exit=0" in s, "gputop's exit status", EXIT_TIMEOUT_S)


def test_live_view_draws_and_q_gives_the_terminal_back(terminal):
    term = terminal("H100_SXM:simulated")
    pid, screen = _start_gputop(term)
    screen = term.wait_for(lambda s: "H100 80GB HBM3 (simulated)" in s and "of 132 SMs active" in s, "the GPU panel", START_TIMEOUT_S)
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
