"""The live view's start in a terminal: a stop signal or Ctrl+Z while Textual is still imported,
a start in the background, and a view that fails or panics (its exit status, the alternate
screen left once). In a real terminal (tmux) and on a pseudo-terminal."""

from __future__ import annotations

import fcntl
import json
import os
import pty
import select
import signal
import struct
import subprocess
import sys
import termios
import time
from pathlib import Path

import pytest

from helpers import EXIT_TIMEOUT_S, PROMPT, ROOT, START_TIMEOUT_S, TMUX, Tmux, children, tmux_env

MAIN = "from gputop.cli import main\nraise SystemExit(main([]))\n"

# a live view whose ``import textual`` takes SECONDS longer, and says (in the file MARK) when it
# is in it: a stop signal or Ctrl+Z then comes while the view is starting
SLOW_START = (
    """\
import importlib.abc, sys, time
class SlowTextual(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name == "textual":
            sys.meta_path.remove(self)
            open({mark!r}, "w").close()
            time.sleep({seconds})
        return None
sys.meta_path.insert(0, SlowTextual())
"""
    + MAIN
)


def _gputop_pid(term: Tmux) -> int:
    """The gputop process under the pane's shell."""
    shell = term.pane_pid()
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        kids = children(shell)
        if kids:
            return kids[0]
        time.sleep(0.05)
    raise AssertionError("no gputop under the shell")


def _started_slowed(term: Tmux, tmp_path: Path, seconds: float) -> int:
    """gputop started from the shell, its Textual import slowed by ``seconds``; its pid, once it
    is in that import."""
    mark = tmp_path / "importing-textual"
    script = tmp_path / "slow_start.py"
    script.write_text(SLOW_START.format(mark=str(mark), seconds=seconds))
    term.type(f"PS1='{PROMPT}'")
    term.wait_for(lambda s: PROMPT.strip() in s, "the shell prompt", START_TIMEOUT_S)
    term.type("echo before-gputop")
    term.type(f"cd {ROOT} && {sys.executable} {script}")
    deadline = time.monotonic() + START_TIMEOUT_S
    while not mark.exists():
        assert time.monotonic() < deadline, "gputop did not get to importing Textual"
        time.sleep(0.05)
    return _gputop_pid(term)


@pytest.mark.e2e
@pytest.mark.skipif(TMUX is None, reason="tmux is not installed (apt-get install tmux)")
def test_ctrl_c_before_textual_is_up_gives_the_shell_back_its_screen(tmp_path):
    """Interrupted while Textual is still imported: the normal screen, with the cursor, and the
    shell's prompt; no traceback."""
    term = Tmux(tmux_env("H100_SXM:simulated"), size=(160, 50))
    try:
        _started_slowed(term, tmp_path, 30.0)
        term.tmux("send-keys", "-t", "t", "C-c")
        screen = term.wait_for(lambda s: s.rstrip().endswith(PROMPT.strip()), "the prompt after gputop", EXIT_TIMEOUT_S)
        assert term.modes()["alternate_on"] == "0"
        assert term.show("#{cursor_flag}") == "1"
        assert "before-gputop" in screen and "cores busy" not in screen and "Traceback" not in screen
    finally:
        term.kill()


@pytest.mark.e2e
@pytest.mark.skipif(TMUX is None, reason="tmux is not installed (apt-get install tmux)")
def test_sigterm_before_textual_is_up_gives_the_shell_back_its_screen(tmp_path):
    term = Tmux(tmux_env("H100_SXM:simulated"), size=(160, 50))
    try:
        pid = _started_slowed(term, tmp_path, 30.0)
        os.kill(pid, signal.SIGTERM)
        term.wait_for(lambda s: s.rstrip().endswith(PROMPT.strip()), "the prompt after gputop", EXIT_TIMEOUT_S)
        assert term.modes()["alternate_on"] == "0" and term.show("#{cursor_flag}") == "1"
        term.type("echo exit=$?")
        term.wait_for(lambda s: "exit=143" in s, "gputop's exit status (128 + SIGTERM)", EXIT_TIMEOUT_S)
    finally:
        term.kill()


@pytest.mark.e2e
@pytest.mark.skipif(TMUX is None, reason="tmux is not installed (apt-get install tmux)")
def test_ctrl_z_before_textual_is_up_stops_it_on_the_normal_screen_and_fg_brings_the_view(tmp_path):
    """Ctrl+Z in that second stops gputop with the shell on its normal screen; fg: the app comes
    up, and Ctrl+Z works there as ever."""
    term = Tmux(tmux_env("H100_SXM:simulated"), size=(160, 50))
    try:
        pid = _started_slowed(term, tmp_path, 3.0)
        term.tmux("send-keys", "-t", "t", "C-z")
        term.wait_for(lambda s: "Stopped" in s and s.rstrip().endswith(PROMPT.strip()), "the shell, gputop stopped", EXIT_TIMEOUT_S)
        assert Path(f"/proc/{pid}/stat").read_text().split(") ")[1][0] == "T"
        assert term.modes()["alternate_on"] == "0" and term.show("#{cursor_flag}") == "1"
        term.type("fg")
        term.wait_for(lambda s: " quit " in s, "the app after fg", START_TIMEOUT_S)
        term.tmux("send-keys", "-t", "t", "C-z")
        term.wait_for(lambda s: s.rstrip().endswith(PROMPT.strip()), "the shell after the app's Ctrl+Z", EXIT_TIMEOUT_S)
        assert term.modes()["alternate_on"] == "0"
        term.type("fg")
        term.wait_for(lambda s: " quit " in s, "the view back", START_TIMEOUT_S)
        term.quit_to_the_shell()
    finally:
        term.kill()


@pytest.mark.e2e
@pytest.mark.skipif(TMUX is None, reason="tmux is not installed (apt-get install tmux)")
def test_in_the_background_nothing_is_drawn_on_the_shells_screen():
    """``gputop &``: Textual's first terminal call stops it (SIGTTOU), with the shell's screen as
    it was; at fg the view starts (Textual's start, stopped in the background, is tried again)."""
    term = Tmux(tmux_env("H100_SXM:simulated"), size=(160, 50))
    try:
        term.type(f"PS1='{PROMPT}'")
        term.wait_for(lambda s: PROMPT.strip() in s, "the shell prompt", START_TIMEOUT_S)
        term.type(f"cd {ROOT} && {sys.executable} -m gputop &")
        pid = _gputop_pid(term)
        deadline = time.monotonic() + START_TIMEOUT_S
        while Path(f"/proc/{pid}/stat").read_text().split(") ")[1][0] != "T":  # stopped
            assert time.monotonic() < deadline, "gputop in the background was not stopped"
            time.sleep(0.1)
        assert term.modes()["alternate_on"] == "0" and term.show("#{cursor_flag}") == "1"
        assert "cores busy" not in term.screen()
        term.type("fg")
        term.wait_for(lambda s: " quit " in s and "cores busy" in s, "the view after fg", START_TIMEOUT_S)
        term.quit_to_the_shell()
    finally:
        term.kill()


# -- on a pseudo-terminal: every byte the view wrote ---------------------------------------------


def _in_a_pty(
    code: str, env: dict[str, str], size=(160, 50), timeout_s: float = 60.0, keys: tuple[bytes, bytes] | None = None
) -> tuple[bytes, int]:
    """Run ``python -c code`` on a pseudo-terminal of ``size``; every byte it wrote, and its exit
    status. ``keys``: (what, when): type ``what`` once ``when`` has been written."""
    controller, tty = pty.openpty()
    fcntl.ioctl(tty, termios.TIOCSWINSZ, struct.pack("HHHH", size[1], size[0], 0, 0))

    def controlling() -> None:  # (in the child) the terminal's session leader and foreground job, as under a shell
        os.setsid()
        fcntl.ioctl(0, termios.TIOCSCTTY, 0)

    proc = subprocess.Popen(
        [sys.executable, "-c", code],
        stdin=tty,
        stdout=tty,
        stderr=tty,
        cwd=ROOT,
        env={**env, "TERM": "xterm-256color"},
        preexec_fn=controlling,
    )
    os.close(tty)
    out = bytearray()
    deadline = time.monotonic() + timeout_s
    try:
        while time.monotonic() < deadline:
            if select.select([controller], [], [], 0.05)[0]:
                try:
                    data = os.read(controller, 65536)
                except OSError:  # (EIO: the child's side is closed)
                    break
                if not data:
                    break
                out += data
                if keys is not None and keys[1] in out:
                    os.write(controller, keys[0])
                    keys = None
            elif proc.poll() is not None:
                break
        return bytes(out), proc.wait(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
        os.close(controller)


@pytest.mark.e2e
def test_an_app_that_fails_after_taking_the_terminal_leaves_the_alternate_screen_once():
    """Textual has the terminal (its driver started) but the app fails before it mounts: Textual
    leaves the alternate screen and prints the traceback; leaving it a second time would move
    the cursor back over that traceback (a second ?1049l restores the cursor saved at the first)."""
    code = (
        "from gputop.tui import app\n"
        "def compose(self):\n    raise RuntimeError('compose failed here')\n    yield\n"
        "app.GputopApp.compose = compose\n" + MAIN
    )
    out, status = _in_a_pty(code, tmux_env("H100_SXM:simulated"))
    assert out.count(b"\x1b[?1049h") == 1
    assert b"compose failed here" in out
    assert out.count(b"\x1b[?1049l") == 1
    assert status == 1  # (it was 0: a view that failed said it had done its job)


@pytest.mark.e2e
def test_the_view_switches_to_the_alternate_screen_once_and_back_once():
    """One switch, one way back, the app between them; q exits 0."""
    out, status = _in_a_pty(MAIN, tmux_env("H100_SXM:simulated"), keys=(b"q", b"quit"))  # (the footer: the app)
    assert status == 0, out[-2000:]
    assert out.count(b"\x1b[?1049h") == 1 and out.count(b"\x1b[?1049l") == 1
    start, end = out.index(b"\x1b[?1049h"), out.index(b"\x1b[?1049l")
    assert start < out.index(b"cores busy") < out.index(b"quit") < end


@pytest.mark.e2e
def test_an_error_before_textual_takes_the_terminal_is_printed_on_the_normal_screen():
    """An error while Textual gathers its stylesheets is printed before its driver starts: on
    the normal screen, the alternate screen never left on; the exit status is 1."""
    code = (
        "from gputop.tui import app\n"
        "def failing(self):\n    raise RuntimeError('failed before the driver')\n"
        "app.GputopApp._get_default_css = failing\n" + MAIN
    )
    out, status = _in_a_pty(code, tmux_env("H100_SXM:simulated"))
    assert status == 1
    assert b"failed before the driver" in out
    assert out.count(b"\x1b[?1049h") == out.count(b"\x1b[?1049l")
    if b"\x1b[?1049l" in out:
        assert out.rindex(b"\x1b[?1049l") < out.index(b"failed before the driver")


@pytest.mark.e2e
def test_a_view_that_panics_exits_1():
    """Textual's panic (its key thread died, say) prints the error but sets no return code."""
    code = "from gputop.tui import app\napp.GputopApp.on_ready = lambda self: self.panic('it panicked here')\n" + MAIN
    out, status = _in_a_pty(code, tmux_env("H100_SXM:simulated"))
    assert b"it panicked here" in out and status == 1


@pytest.mark.unit
def test_the_prefetched_first_sample_is_there_for_the_sampling_loop():
    """``prefetch`` takes the first sample in a thread while the view starts; ``take_first``
    hands it over once; ``discard_first`` waits for one nobody took."""
    from gputop.view.feed import LiveFeed
    from tui_fixtures import make_sample

    class Slow:
        def __init__(self, delay_s, result):
            self.delay_s, self.result = delay_s, result

        def sample(self):
            time.sleep(self.delay_s)
            return self.result

    sample = make_sample(1)
    feed = LiveFeed(Slow(0.0, sample), 1.0)
    assert feed.take_first() is None  # not prefetched
    feed.prefetch()
    assert feed.take_first().result(timeout=5.0) is sample  # there for the sampling loop
    assert feed.take_first() is None  # once
    slow = LiveFeed(Slow(0.3, sample), 1.0)
    slow.prefetch()
    t0 = time.monotonic()
    slow.discard_first()
    assert time.monotonic() - t0 >= 0.2 and slow.take_first() is None


# -- what the live view's start imports ------------------------------------------------------------

IMPORT_PROBE = """\
import json, sys
import gputop.tui
from gputop import cli
gputop.tui.refuse_without_terminal = lambda env: False  # (no terminal here: the view is not run)
seen = {}
live_view = cli._live_view
def probe(args, env, workload):
    seen["before"] = sorted(sys.modules)  # cli has parsed the arguments; the view is to start
    import gputop.tui.terminal as terminal
    def run_full_screen(app, before=None):
        seen["started"] = sorted(sys.modules)  # the app built, about to run
        return True
    terminal.run_full_screen = run_full_screen
    return live_view(args, env, workload)
cli._live_view = probe
status = cli.main([])
print(json.dumps({"status": status, "commands": sorted(m for m in cli.COMMANDS.values() if m), **seen}))
"""
# never imported by the live view: the monitor's heavy optional parts and the other commands'
NEVER = ("torch", "httpx", "prometheus_client", "plotext")


@pytest.mark.e2e
def test_the_live_views_start_imports_no_command_and_textual_only_when_the_app_is_built():
    out = subprocess.run(
        [sys.executable, "-c", IMPORT_PROBE], capture_output=True, text=True, timeout=60, cwd=ROOT, env=tmux_env("H100_SXM:simulated")
    )
    assert out.returncode == 0, out.stderr
    seen = json.loads(out.stdout.splitlines()[-1])
    assert seen["status"] == 0
    before, started = set(seen["before"]), set(seen["started"])

    def top(modules: set[str]) -> set[str]:
        return {m.split(".")[0] for m in modules}

    assert not top(before) & {"textual", "rich"}, "imported before the view is built"
    assert {"textual", "gputop.tui.app"} <= started
    for modules in (before, started):
        assert not top(modules) & set(NEVER)
        commands = {
            m
            for m in modules
            if m in seen["commands"]
            or m.endswith(".snapshot")
            or m.startswith("gputop.commands")
            or any(m.startswith(c + ".") for c in seen["commands"])
        }
        assert not commands, f"command modules imported by the live view: {sorted(commands)}"


@pytest.mark.e2e
@pytest.mark.parametrize("how", ["SIGTERM", "SIGINT"])
def test_a_stop_signal_while_the_app_composes_exits_0(how):
    """The signal asks the app to exit from its event loop; asked while it composes, Textual
    removed the screen under its widgets' on_mount (NoMatches: exit status 1, issue #29's race
    under load). The exit waits until the screen is mounted."""
    code = (
        "import os, signal\nfrom gputop.tui import app\ncompose = app.GputopApp.compose\n"
        f"def composing(self):\n    os.kill(os.getpid(), signal.{how})\n    return compose(self)\n"
        "app.GputopApp.compose = composing\n" + MAIN
    )
    out, status = _in_a_pty(code, tmux_env("H100_SXM:simulated"))
    assert status == 0, out[-1500:]
    assert b"Error" not in out and out.count(b"\x1b[?1049h") == out.count(b"\x1b[?1049l") == 1
