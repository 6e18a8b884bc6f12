"""The first frame drawn before Textual (gputop.firstframe) is what the app then draws, cell
for cell, over the rows it covers; and where it would not be, it is not drawn."""

from __future__ import annotations

import fcntl
import os
import pty
import re
import select
import signal
import struct
import subprocess
import sys
import termios
import time
from dataclasses import replace
from pathlib import Path

import pytest
from rich.color import ColorSystem
from rich.segment import Segment

from gputop import firstframe as ff
from gputop.tui.widgets.cpu import CpuPanel
from gputop.tui.widgets.gpu import GpuPanel
from gputop.tui.widgets.processes import ProcessTable
from gputop.tui.widgets.status import StatusBar
from gputop.view.feed import LiveFeed
from test_terminal import EXIT_TIMEOUT_S, PROMPT, START_TIMEOUT_S, TMUX, Tmux, _children, _env
from test_tui import make_app
from test_tui_terminal import ROOT, TESTS, _quit_to_the_shell
from tui_fixtures import lost, make_sample, with_gpu

HOST = "testhost"


def cells(segments: list[Segment]) -> list[tuple]:
    """What a terminal shows in each cell: the character and its look (a blank's colour and
    weight do not show, its background does)."""
    out = []
    for seg in segments:
        style = seg.style
        for ch in seg.text:
            assert len(ch.encode("utf-16-le")) == 2  # one cell each (no wide glyphs here)
            bg = style.bgcolor if style else None
            if ch == " " and not (style and style.underline):
                out.append((ch, bg))
            else:
                out.append((ch, bg, style.color if style else None, bool(style and style.bold),
                            bool(style and style.underline), bool(style and style.italic)))
    return out


async def drawn_by_app(sample, size):
    """The app's screen (rows of segments) after its first frame of ``sample``, live."""
    app = make_app(None, paused=True, host=HOST)
    async with app.run_test(size=size) as pilot:
        app.paused = False  # (live, with nothing sampling: the frames are the ones ingested)
        app.ingest(sample)
        await pilot.pause()
        await pilot.pause()
        return [list(strip) for strip in app.screen._compositor.render_strips()]


THROTTLED = ("sw_power_cap", "hw_slowdown", "sw_thermal_slowdown", "hw_thermal_slowdown")  # one long field

CASES = [
    ((160, 50), make_sample(1, 0)),
    ((160, 50), with_gpu(make_sample(1, 4), 0, clock_event_reasons=THROTTLED)),
    ((120, 34), make_sample(1, 3)),
    ((121, 40), make_sample(1, 5, cores=16)),
    ((137, 45), make_sample(1, 7, cores=64)),
    ((200, 60), make_sample(2, 2, cores=128)),
    ((183, 39), make_sample(1, 9, cores=200)),  # short of DETAIL_ROWS: the cores as glyphs
    ((160, 50), with_gpu(make_sample(1, 1), 0, energy_j=None, sm_active_pct=None)),
    ((160, 50), with_gpu(make_sample(1, 2), 0, gpu_util_pct=100.0, sm_active_pct=8.0)),  # the warning: heavy
    ((200, 60), with_gpu(make_sample(2, 6), 1, gpu_util_pct=100.0, sm_active_pct=8.0)),  # on the other GPU
    ((160, 50), make_sample(0, 3)),  # no GPU: why, in a panel of its own
    ((130, 34), make_sample(0, 8, gpu_unavailable=None)),
]


@pytest.mark.parametrize("size, sample", CASES, ids=[f"{s[0]}x{s[1]}-{i}" for i, (s, _) in enumerate(CASES)])
async def test_the_first_frame_is_what_the_app_draws_there(size, sample):
    rows = ff.frame(sample, *size, HOST, 1.0)
    assert rows is not None
    screen = await drawn_by_app(sample, size)
    assert len(rows) >= 6  # the header and a panel at least
    for y, row in enumerate(rows):
        assert sum(len(s.text) for s in row) == size[0], y
        assert cells(row) == cells(screen[y]), (y, "".join(s.text for s in row), "".join(s.text for s in screen[y]))
    # the row under it is the app's charts (not drawn here): the frame ends where the panels do
    assert "".join(s.text for s in screen[len(rows) - 1]).lstrip()[:1] in "╰│┗┃"


async def test_its_colours_are_the_theme_as_the_app_resolves_it():
    """Every style in the tables, used by the cases above or not, is what the app gives."""
    app = make_app(None, paused=True, host=HOST)
    async with app.run_test(size=(160, 60)) as pilot:
        app.paused = False
        app.ingest(make_sample(2, 0))
        await pilot.pause()
        await pilot.pause()
        assert app.theme == ff.THEME
        for widget, table in ((app.query_one(StatusBar), ff.HEADER), (app.query_one(CpuPanel), ff.CPU),
                              (app.query(GpuPanel).first(), ff.GPU)):
            resolved = {n: str(widget.rich_style if n == "" else widget.style_of(n)) for n in table}
            assert resolved == {n: str(ff.Style.parse(s)) for n, s in table.items()}, type(widget).__name__
        assert str(app.screen.rich_style) == str(ff.Style.parse(ff.SCREEN))
        assert app.query_one(ProcessTable).sort_label == ff.SORT_LABEL


@pytest.mark.parametrize("size, sample, why", [
    ((119, 50), make_sample(1), "narrow: the panels are stacked"),
    ((200, 60), make_sample(3), "three GPUs: a line each"),
    ((200, 55), make_sample(2), "two GPUs on a terminal too short for two panels"),
    ((160, 33), make_sample(0), "no GPU on a short screen: that panel has no border there"),
    ((160, 16), make_sample(1), "the GPU panel taller than the top's share: it scrolls"),
    ((120, 45), with_gpu(make_sample(1), 0, clock_event_reasons=THROTTLED), "a field wider than the panel: wrapped"),
    ((120, 45), with_gpu(make_sample(1), 0, info=replace(make_sample(1).gpus[0].info, name="NVIDIA " + "X" * 80)),
     "a name wider than the title's room: cut"),
])
def test_it_is_not_drawn_where_the_app_lays_out_otherwise(size, sample, why):
    assert ff.frame(sample, *size, HOST, 1.0) is None, why


def test_a_lost_gpu_is_left_to_the_app():
    sample = make_sample(1)
    sample = type(sample)(ts_ns=sample.ts_ns, cpu=sample.cpu, gpus=(lost(sample.gpus[0]),))
    assert ff.frame(sample, 160, 50, HOST, 1.0) is None


@pytest.mark.parametrize("environ, system", [
    ({"TERM": "xterm-256color", "COLORTERM": "truecolor"}, ColorSystem.TRUECOLOR),
    ({"TERM": "tmux-256color"}, ColorSystem.EIGHT_BIT),
    ({"TERM": "xterm"}, ColorSystem.STANDARD),
    ({"TERM": "xterm-256color", "TEXTUAL_COLOR_SYSTEM": "standard"}, ColorSystem.STANDARD),
    ({"TERM": "xterm-256color", "NO_COLOR": "1"}, None),
    ({"TERM": "xterm-256color", "TEXTUAL_THEME": "nord"}, None),
    ({"TERM": "xterm-256color", "TEXTUAL_FILTERS": "dim"}, None),
])
def test_it_draws_in_the_colours_textual_would_and_not_under_a_filter(environ, system):
    assert ff.color_system(environ) == system


def test_the_escape_codes_switch_to_the_alternate_screen_and_fill_every_row():
    rows = ff.frame(make_sample(1), 160, 50, HOST, 1.0)
    codes = ff.escape_codes(rows, 50, ColorSystem.TRUECOLOR)
    assert codes.startswith("\x1b[?1049h\x1b[?25l")
    assert all(f"\x1b[{y};1H" in codes for y in range(1, 51))
    assert "\x1b[38;2;224;224;224;48;2;36;47;56m" in codes  # the header's colours, 24-bit


# -- in a real terminal (tmux), with Textual's import slowed (tests/slowtextual) ------------------

def _slow_env(seconds: float) -> dict[str, str]:
    env = _env("H100_SXM:simulated")
    env.update(SLOW_TEXTUAL_S=str(seconds),
               PYTHONPATH=os.pathsep.join([str(TESTS / "slowtextual"), env["PYTHONPATH"]]))
    return env


def _top(screen: str, rows: int) -> list[str]:
    return screen.splitlines()[:rows]


@pytest.mark.skipif(TMUX is None, reason="tmux is not installed (apt-get install tmux)")
def test_in_a_terminal_the_top_is_drawn_before_textual_and_the_app_takes_it_over_unchanged():
    """While Textual is imported (3 s longer here) the header and the panels of the first sample
    are on the alternate screen, alone; then the app's first paint, of the same sample, reads the
    same there, and the charts, the table and the footer come in below; q gives the shell back."""
    term = Tmux(_slow_env(3.0), size=(160, 50))
    try:
        term.type(f"PS1='{PROMPT}'")
        term.wait_for(lambda s: PROMPT.strip() in s, "the shell prompt", START_TIMEOUT_S)
        term.type(f"cd {ROOT} && {sys.executable} -m gputop --interval 5")  # (the first sample stays 5 s)
        first = term.wait_for(lambda s: "cores busy" in s and "GPU0 H100 80GB HBM3" in s, "the first frame",
                              START_TIMEOUT_S)
        assert " quit " not in first and "activity, %" not in first  # Textual's parts: not yet
        assert term.modes()["alternate_on"] == "1"
        lines = first.splitlines()
        assert lines[0].startswith(" gputop ") and "   live   every 5 s   GPU 0   sort GPU mem   own CPU n/a" in lines[0]
        rows = next(i for i, line in enumerate(lines) if line.rstrip().endswith("─╯") and "Hopper" in line) + 1
        first_styled = term.tmux("capture-pane", "-p", "-e", "-t", "t")  # (tmux's 256 colours here)
        assert " quit " not in re.sub("\x1b\\[[0-9;]*m", "", first_styled)  # (still before the app's paint)
        app = term.wait_for(lambda s: " quit " in s, "the app's first frame", START_TIMEOUT_S)
        assert "activity, %" in app
        assert _top(app, rows) == _top(first, rows)
        # and in the same colours, in the colour system Textual chose (TERM=tmux-256color)
        app_styled = term.tmux("capture-pane", "-p", "-e", "-t", "t")
        assert "\x1b[" in first_styled and _top(app_styled, rows) == _top(first_styled, rows)
        _quit_to_the_shell(term)
        assert term.modes()["alternate_on"] == "0"
    finally:
        term.kill()


@pytest.mark.skipif(TMUX is None, reason="tmux is not installed (apt-get install tmux)")
def test_ctrl_c_before_textual_is_up_gives_the_shell_back_its_screen():
    """Interrupted while Textual is still imported (after the first frame was drawn): the normal
    screen comes back, with the cursor, and the shell's prompt."""
    term = Tmux(_slow_env(30.0), size=(160, 50))
    try:
        term.type(f"PS1='{PROMPT}'")
        term.wait_for(lambda s: PROMPT.strip() in s, "the shell prompt", START_TIMEOUT_S)
        term.type("echo before-gputop")
        term.type(f"cd {ROOT} && {sys.executable} -m gputop")
        term.wait_for(lambda s: "cores busy" in s, "the first frame", START_TIMEOUT_S)
        assert term.modes()["alternate_on"] == "1"
        term.tmux("send-keys", "-t", "t", "C-c")
        screen = term.wait_for(lambda s: s.rstrip().endswith(PROMPT.strip()), "the prompt after gputop",
                               EXIT_TIMEOUT_S)
        assert term.modes()["alternate_on"] == "0"
        assert term.show("#{cursor_flag}") == "1"
        assert "before-gputop" in screen and "cores busy" not in screen and "Traceback" not in screen
    finally:
        term.kill()


def _gputop_pid(term: Tmux) -> int:
    """The gputop process under the pane's shell."""
    shell = term.pane_pid()
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        kids = _children(shell)
        if kids:
            return kids[0]
        time.sleep(0.05)
    raise AssertionError("no gputop under the shell")


def _started_slowed(term: Tmux, argv: str = "") -> int:
    term.type(f"PS1='{PROMPT}'")
    term.wait_for(lambda s: PROMPT.strip() in s, "the shell prompt", START_TIMEOUT_S)
    term.type(f"cd {ROOT} && {sys.executable} -m gputop {argv}")
    term.wait_for(lambda s: "cores busy" in s, "the first frame", START_TIMEOUT_S)
    assert term.modes()["alternate_on"] == "1"
    return _gputop_pid(term)


@pytest.mark.skipif(TMUX is None, reason="tmux is not installed (apt-get install tmux)")
def test_sigterm_before_textual_is_up_gives_the_shell_back_its_screen():
    term = Tmux(_slow_env(30.0), size=(160, 50))
    try:
        pid = _started_slowed(term)
        os.kill(pid, signal.SIGTERM)
        term.wait_for(lambda s: s.rstrip().endswith(PROMPT.strip()), "the prompt after gputop", EXIT_TIMEOUT_S)
        assert term.modes()["alternate_on"] == "0" and term.show("#{cursor_flag}") == "1"
        term.type("echo exit=$?")
        term.wait_for(lambda s: "exit=143" in s, "gputop's exit status (128 + SIGTERM)", EXIT_TIMEOUT_S)
    finally:
        term.kill()


@pytest.mark.skipif(TMUX is None, reason="tmux is not installed (apt-get install tmux)")
def test_ctrl_z_before_textual_is_up_does_not_stop_it_on_the_alternate_screen():
    """Ctrl+Z in that second is ignored (stopped there, the shell would come back on the
    alternate screen, cursor hidden); the app comes up, and Ctrl+Z works there as ever."""
    term = Tmux(_slow_env(6.0), size=(160, 50))
    try:
        pid = _started_slowed(term)
        term.tmux("send-keys", "-t", "t", "C-z")
        term.wait_for(lambda s: " quit " in s, "the app (not stopped)", START_TIMEOUT_S)
        assert Path(f"/proc/{pid}/stat").read_text().split(") ")[1][0] != "T"
        term.tmux("send-keys", "-t", "t", "C-z")
        term.wait_for(lambda s: s.rstrip().endswith(PROMPT.strip()), "the shell after the app's Ctrl+Z", EXIT_TIMEOUT_S)
        assert term.modes()["alternate_on"] == "0"
        term.type("fg")
        term.wait_for(lambda s: " quit " in s, "the view back", START_TIMEOUT_S)
        _quit_to_the_shell(term)
    finally:
        term.kill()


def _in_a_pty(code: str, env: dict[str, str], size=(160, 50), timeout_s: float = 60.0,
              keys: tuple[bytes, bytes] | None = None) -> tuple[bytes, int]:
    """Run ``python -c code`` on a pseudo-terminal of ``size``; every byte it wrote, and its exit
    status. ``keys``: (what, when): type ``what`` once ``when`` has been written."""
    controller, tty = pty.openpty()
    fcntl.ioctl(tty, termios.TIOCSWINSZ, struct.pack("HHHH", size[1], size[0], 0, 0))
    def controlling() -> None:  # (in the child) the terminal's session leader and foreground job, as under a shell
        os.setsid()
        fcntl.ioctl(0, termios.TIOCSCTTY, 0)

    proc = subprocess.Popen([sys.executable, "-c", code], stdin=tty, stdout=tty, stderr=tty, cwd=ROOT,
                            env={**env, "TERM": "xterm-256color"}, preexec_fn=controlling)
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


def test_an_app_that_fails_after_taking_the_terminal_leaves_the_alternate_screen_once():
    """Textual has the terminal (its driver started) but the app fails before it mounts: Textual
    leaves the alternate screen and prints the traceback; leaving it a second time would move
    the cursor back over that traceback (a second ?1049l restores the cursor saved at the first)."""
    code = ("from gputop.tui import app\n"
            "def compose(self):\n    raise RuntimeError('compose failed here')\n    yield\n"
            "app.GputopApp.compose = compose\n"
            "from gputop.cli import main\nraise SystemExit(main([]))\n")
    out, status = _in_a_pty(code, _env("H100_SXM:simulated"))
    assert b"cores busy" in out and out.count(b"\x1b[?1049h") == 1  # the first frame's (Textual's left out)
    assert b"compose failed here" in out
    assert out.count(b"\x1b[?1049l") == 1
    assert status == 1  # (it was 0: a view that failed said it had done its job)


MAIN = "from gputop.cli import main\nraise SystemExit(main([]))\n"


def test_textual_does_not_switch_to_the_alternate_screen_again_after_the_first_frame():
    """xterm and VTE clear the screen at every ?1049h, already on the alternate screen or not:
    Textual's own switch would blank the first frame until its paint (~0.1 s). One switch, one
    way back, the app between them; q exits 0."""
    out, status = _in_a_pty(MAIN, _env("H100_SXM:simulated"), keys=(b"q", b"quit"))  # (the footer: the app)
    assert status == 0, out[-2000:]
    assert out.count(b"\x1b[?1049h") == 1 and out.count(b"\x1b[?1049l") == 1
    start, end = out.index(b"\x1b[?1049h"), out.index(b"\x1b[?1049l")
    assert start < out.index(b"cores busy") < out.index(b"quit") < end


def test_an_error_before_textual_takes_the_terminal_is_printed_on_the_normal_screen():
    """An error while Textual gathers its stylesheets is printed before its driver starts, so on
    the first frame's alternate screen, which giving it back afterwards would wipe: it is given
    back first. (A stylesheet that does not parse fails later, after the driver started.)"""
    code = ("from gputop.tui import app\n"
            "def failing(self):\n    raise RuntimeError('failed before the driver')\n"
            "app.GputopApp._get_default_css = failing\n" + MAIN)
    out, status = _in_a_pty(code, _env("H100_SXM:simulated"))
    assert status == 1
    assert b"cores busy" in out and out.count(b"\x1b[?1049h") == 1 and out.count(b"\x1b[?1049l") == 1
    assert out.index(b"\x1b[?1049l") < out.index(b"failed before the driver")


def test_a_view_that_panics_exits_1():
    """Textual's panic (its key thread died, say) prints the error but sets no return code."""
    code = ("from gputop.tui import app\n"
            "app.GputopApp.on_ready = lambda self: self.panic('it panicked here')\n" + MAIN)
    out, status = _in_a_pty(code, _env("H100_SXM:simulated"))
    assert b"it panicked here" in out and status == 1


@pytest.mark.skipif(TMUX is None, reason="tmux is not installed (apt-get install tmux)")
def test_in_the_background_nothing_is_drawn_on_the_shells_screen():
    """``gputop &``: Textual's first terminal call stops it (SIGTTOU), as before; a first frame
    drawn meanwhile would have left the shell on the alternate screen, the cursor hidden."""
    term = Tmux(_env("H100_SXM:simulated"), size=(160, 50))
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
        # fg: the view starts (Textual's start, stopped in the background, is tried again)
        term.type("fg")
        term.wait_for(lambda s: " quit " in s and "cores busy" in s, "the view after fg", START_TIMEOUT_S)
        _quit_to_the_shell(term)
    finally:
        term.kill()


@pytest.mark.skipif(TMUX is None, reason="tmux is not installed (apt-get install tmux)")
def test_ctrl_z_while_the_first_sample_is_awaited_is_ignored_too(tmp_path):
    """The wait for the first sample comes after the foreground check: stopped there and put in
    the background (bg), gputop drew the frame over the shell's screen. Ctrl+Z there is ignored
    (here the wait itself sends it, as a user's key would)."""
    script = tmp_path / "ctrl_z_in_the_wait.py"
    script.write_text("import os, signal\nfrom gputop.view.feed import LiveFeed\nwait = LiveFeed.first_sample\n"
                      "def first_sample(self, timeout_s):\n    os.kill(os.getpid(), signal.SIGTSTP)\n"
                      "    return wait(self, timeout_s)\nLiveFeed.first_sample = first_sample\n" + MAIN)
    term = Tmux(_env("H100_SXM:simulated"), size=(160, 50))
    try:
        term.type(f"PS1='{PROMPT}'")
        term.wait_for(lambda s: PROMPT.strip() in s, "the shell prompt", START_TIMEOUT_S)
        term.type(f"cd {ROOT} && {sys.executable} {script}")
        term.wait_for(lambda s: " quit " in s and "cores busy" in s, "the view, not stopped", START_TIMEOUT_S)
        _quit_to_the_shell(term)
    finally:
        term.kill()


def test_the_first_sample_is_waited_for_only_so_long_and_left_for_the_app():
    class Slow:
        def __init__(self, delay_s, result):
            self.delay_s, self.result = delay_s, result

        def sample(self):
            time.sleep(self.delay_s)
            if isinstance(self.result, Exception):
                raise self.result
            return self.result

    sample = make_sample(1)
    feed = LiveFeed(Slow(0.0, sample), 1.0)
    assert feed.first_sample(1.0) is None  # not prefetched
    feed.prefetch()
    assert feed.first_sample(5.0) is sample
    assert feed.take_first().result() is sample  # still there for the sampling loop
    slow = LiveFeed(Slow(1.0, sample), 1.0)
    slow.prefetch()
    t0 = time.monotonic()
    assert slow.first_sample(0.05) is None and time.monotonic() - t0 < 0.5
    slow.discard_first()
    failed = LiveFeed(Slow(0.0, RuntimeError("NVML said no")), 1.0)
    failed.prefetch()
    assert failed.first_sample(5.0) is None
