"""Which terminals the live view runs on, and where it draws: ``gputop 2>err.log`` (Textual
draws on stderr) and a dumb terminal, in a real terminal (tmux) and a pseudo-terminal."""

from __future__ import annotations

import io
import os
import pty
import subprocess
import sys
import time
from pathlib import Path

import pytest

from gputop.tui import terminal_problem
from helpers import EXIT_TIMEOUT_S, PROMPT, ROOT, START_TIMEOUT_S, TESTS, TMUX, Tmux, children, tmux_env
from tui_fixtures import FakeSampler, make_sample

TRACE = TESTS / "data" / "h100_fake.json"


class _Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.mark.unit
def test_a_dumb_terminal_is_refused_in_one_line():
    problem = terminal_problem(_Tty(), _Tty(), {"TERM": "dumb"})
    assert problem is not None and "TERM=dumb" in problem and "gputop snapshot" in problem
    assert "\n" not in problem
    assert terminal_problem(_Tty(), _Tty(), {"TERM": "xterm-256color"}) is None
    assert terminal_problem(_Tty(), _Tty(), {}) is None  # no TERM: Textual still draws fine


@pytest.mark.unit
def test_a_redirected_stderr_is_not_a_problem():
    """stdin and stdout are what the view needs; stderr may go to a file (it then draws on stdout)."""
    assert terminal_problem(_Tty(), _Tty(), {"TERM": "xterm"}) is None
    assert "stdout is not one" in terminal_problem(_Tty(), io.StringIO(), {"TERM": "xterm"})


@pytest.mark.e2e
@pytest.mark.parametrize("argv", [[], ["replay", str(TRACE)]], ids=["live", "replay"])
def test_term_dumb_exits_2_with_one_line_on_stderr(argv):
    """In a real pseudo-terminal (stdin and stdout are ttys), TERM=dumb: no screen, one line."""
    controller, tty = pty.openpty()
    env = {**tmux_env("H100_SXM:simulated"), "TERM": "dumb"}
    try:
        proc = subprocess.run(
            [sys.executable, "-m", "gputop", *argv], stdin=tty, stdout=tty, stderr=subprocess.PIPE, text=True, timeout=60, cwd=ROOT, env=env
        )
    finally:
        os.close(tty)
        os.close(controller)
    assert proc.returncode == 2
    assert (
        proc.stderr.count("\n") == 1
        and "error: the live view needs a terminal that can move the cursor, and TERM=dumb cannot" in proc.stderr
    ), proc.stderr


@pytest.mark.e2e
@pytest.mark.skipif(TMUX is None, reason="tmux is not installed (apt-get install tmux)")
@pytest.mark.parametrize("argv, drawn", [("", "cores busy"), (f"replay --paused {TRACE}", "replay")], ids=["live", "replay"])
def test_with_stderr_in_a_file_the_screen_is_drawn_on_the_terminal(tmp_path, argv, drawn):
    """``gputop 2>err.log`` left the terminal blank and drew the screen into the file."""
    err = tmp_path / "err.log"
    term = Tmux(tmux_env("H100_SXM:simulated"))
    try:
        term.type(f"PS1='{PROMPT}'")
        term.wait_for(lambda s: PROMPT.strip() in s, "the shell prompt", START_TIMEOUT_S)
        term.type(f"cd {ROOT} && {sys.executable} -m gputop {argv} 2>{err}")
        term.wait_for(lambda s: drawn in s and "GPU0 H100 80GB HBM3" in s and " quit " in s, "the screen on the terminal", START_TIMEOUT_S)
        assert term.modes()["alternate_on"] == "1"
        assert b"\x1b[" not in err.read_bytes()  # not one escape code went to the file
        term.tmux("send-keys", "-t", "t", "q")
        term.wait_for(lambda s: s.rstrip().endswith(PROMPT.strip()), "the prompt after gputop", EXIT_TIMEOUT_S)
        assert term.modes()["alternate_on"] == "0"  # the terminal given back
        term.type("echo exit=$?")
        term.wait_for(lambda s: "exit=0" in s, "gputop's exit status", EXIT_TIMEOUT_S)
        time.sleep(0.2)
        assert b"\x1b[" not in err.read_bytes()
    finally:
        term.kill()


def _start_from_the_shell(term: Tmux, argv: str) -> None:
    term.type(f"PS1='{PROMPT}'")
    term.wait_for(lambda s: PROMPT.strip() in s, "the shell prompt", START_TIMEOUT_S)
    term.type(f"cd {ROOT} && {sys.executable} -m gputop {argv}")
    term.wait_for(lambda s: " quit " in s and "GPU0 H100 80GB HBM3" in s, "the view", START_TIMEOUT_S)


@pytest.mark.e2e
@pytest.mark.skipif(TMUX is None, reason="tmux is not installed (apt-get install tmux)")
@pytest.mark.parametrize(
    "argv, bg", [("", False), (f"replay --paused {TRACE}", False), ("--interval 0.2", True)], ids=["live", "replay", "bg-then-fg"]
)
def test_ctrl_z_suspends_to_the_shell_and_fg_brings_the_whole_view_back(argv, bg):
    """As in htop or btop. Textual repaints only what changed after fg, so the footer stayed
    blank until the view repaints everything on resume. ``bg`` first: the view cannot draw from
    the background and stops again, and fg must still bring it back (it stayed dead)."""
    term = Tmux(tmux_env("H100_SXM:simulated"))
    try:
        _start_from_the_shell(term, argv)
        term.tmux("send-keys", "-t", "t", "C-z")
        term.wait_for(lambda s: "Stopped" in s and s.rstrip().endswith(PROMPT.strip()), "the shell, gputop stopped", EXIT_TIMEOUT_S)
        assert term.modes()["alternate_on"] == "0"
        if bg:
            term.type("bg")
            deadline = time.monotonic() + EXIT_TIMEOUT_S
            while True:  # "clear; jobs" until jobs, on a cleared screen, says it stopped again
                term.type("clear; jobs")
                time.sleep(0.5)
                screen = term.screen()
                if "Stopped" in screen and "clear; jobs" not in screen:
                    break
                assert time.monotonic() < deadline, f"gputop did not stop again in the background:\n{screen}"
        term.type("fg")
        term.wait_for(
            lambda s: " quit " in s and "GPU0 H100 80GB HBM3" in s and PROMPT.strip() not in s,
            "the whole view again, footer included",
            START_TIMEOUT_S,
        )
        assert term.modes()["alternate_on"] == "1"
        term.quit_to_the_shell()
    finally:
        term.kill()


# the syscalls a thread sleeping in Python's select() is in (x86_64: select, pselect6; aarch64: pselect6)
SELECT_SYSCALLS = {"x86_64": {23, 270}, "aarch64": {72}}.get(os.uname().machine, set())


def _threads(pid: int) -> dict[int, tuple[int | None, int]]:
    """Each thread of ``pid``: (the syscall it is in, or None when running; voluntary context switches)."""
    threads = {}
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            call = (task / "syscall").read_text().split()[0]
            switches = next(
                int(line.split()[1]) for line in (task / "status").read_text().splitlines() if line.startswith("voluntary_ctxt_switches")
            )
        except (OSError, StopIteration):
            continue
        threads[int(task.name)] = (int(call) if call.lstrip("-").isdigit() else None, switches)
    return threads


@pytest.mark.e2e
@pytest.mark.skipif(TMUX is None, reason="tmux is not installed (apt-get install tmux)")
@pytest.mark.skipif(not SELECT_SYSCALLS, reason="the select syscalls of this architecture are not listed")
def test_the_key_thread_sleeps_until_a_key_and_still_reports_a_lone_escape():
    """Textual's key thread woke every 0.1 s (a sixth of the live view's CPU at 1 Hz). Now it
    sleeps in select until a key comes; a lone Escape (whose report waits out ESCDELAY) still
    closes the help, and q still quits."""
    term = Tmux(tmux_env("H100_SXM:simulated"))
    try:
        _start_from_the_shell(term, "--interval 10")
        [pid] = children(term.pane_pid())
        time.sleep(1.0)  # past the key thread's quiet rounds after start-up's terminal replies
        before = _threads(pid)
        if not before:  # /proc/PID/task/*/syscall needs ptrace rights (Yama's ptrace_scope=1 off root)
            pytest.skip(f"cannot read the syscalls of pid {pid}'s threads here")
        keyed = [tid for tid, (call, _) in before.items() if call in SELECT_SYSCALLS]
        assert len(keyed) == 1, f"one thread in select, the key thread: {before}"
        time.sleep(2.0)
        after = _threads(pid)
        woke = after[keyed[0]][1] - before[keyed[0]][1]
        # (a late terminal reply costs a read and two ESCDELAY rounds: 3; Textual's loop: ~20)
        assert woke <= 4, f"the idle key thread woke {woke} times in 2 s"
        term.tmux("send-keys", "-t", "t", "?")
        term.wait_for(lambda s: "gputop keys" in s, "the help", EXIT_TIMEOUT_S)
        term.tmux("send-keys", "-t", "t", "Escape")
        term.wait_for(lambda s: "gputop keys" not in s and " quit " in s, "the help closed by Escape", EXIT_TIMEOUT_S)
        # a character cut between two reads (a slow ssh link, a paste over 4 KiB): "€" in two parts
        term.tmux("send-keys", "-t", "t", "-H", "e2")
        time.sleep(0.3)
        term.tmux("send-keys", "-t", "t", "-H", "82", "ac")
        time.sleep(0.3)
        term.tmux("send-keys", "-t", "t", "?")  # still reading keys
        screen = term.wait_for(lambda s: "gputop keys" in s or "Error" in s, "the help again", EXIT_TIMEOUT_S)
        assert "gputop keys" in screen and "Traceback" not in screen, screen
        term.tmux("send-keys", "-t", "t", "Escape")
        term.wait_for(lambda s: "gputop keys" not in s and " quit " in s, "the help closed again", EXIT_TIMEOUT_S)
        term.quit_to_the_shell()
    finally:
        term.kill()


class _ClosingSampler(FakeSampler):
    def close(self) -> None:
        pass


@pytest.mark.unit
def test_the_cli_views_start_with_the_collector_held_and_settle_heap_lets_it_run_again(monkeypatch):
    """Start-up's ~90,000 objects made Python's collector pass over them several times before
    the first frame (~0.1 s of it in tmux). The live view, a replay and the cluster view start
    with it off; the app's settle_heap after the first frame, or leaving the view, turns it back on."""
    import gc

    from gputop import cli
    from gputop.tui import terminal

    held = []
    monkeypatch.setattr(cli.console, "configure_logging", lambda *a, **k: None)  # (it rewires the gputop logger)
    monkeypatch.setattr(terminal, "run_full_screen", lambda app, before=None: held.append(not gc.isenabled()) or True)
    monkeypatch.setattr("gputop.tui.refuse_without_terminal", lambda env: False)
    monkeypatch.setattr(cli, "open_real", lambda: _ClosingSampler(make_sample(1)))
    assert gc.isenabled()
    assert cli.main([]) == 0
    assert cli.main(["replay", str(TRACE)]) == 0
    assert cli.main(["cluster", "--prometheus", "http://127.0.0.1:9"]) == 0  # (nothing asked before the view)
    assert held == [True, True, True] and gc.isenabled()

    gc.disable()
    try:
        terminal.settle_heap()
        assert gc.isenabled() and gc.get_freeze_count() > 0
    finally:
        gc.enable()
        gc.unfreeze()
