"""A view whose terminal goes away (window closed, tmux killed, ssh dropped) ends, and ends what
it launched, with or without a SIGHUP reaching it. Before gputop.tui.terminal, a live view in a
session of its own (so no SIGHUP) blocked for ever on Textual's write queue while its key thread
spun at 100 % of a core, and a paused replay, which writes nothing, never noticed at all.

Real child processes on a real pseudo-terminal: the terminal "goes away" when the test closes
the controlling side, as a terminal emulator or tmux does.
"""

from __future__ import annotations

import fcntl
import os
import pty
import select
import struct
import subprocess
import sys
import termios
import threading

import pytest

from test_orphans import ROOT, TESTS, cleanup, env, job, live_members, read_pgid, wait_for

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="Linux's pseudo-terminals")

TRACE = TESTS / "data" / "h100_fake.json"
EXIT_S = 20  # generous: the machine is shared; the watcher looks once a second


class Terminal:
    """``gputop ARGV`` on a pseudo-terminal whose controlling side this object holds.
    ``controlling``: the terminal is the child's controlling terminal (the kernel sends it
    SIGHUP on hang-up); otherwise the child runs in a session of its own and gets no signal."""

    def __init__(self, argv: list[str], controlling: bool) -> None:
        self.fd, tty = pty.openpty()
        fcntl.ioctl(self.fd, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 120, 0, 0))

        def take_terminal() -> None:  # in the child, after setsid: make the tty its terminal
            fcntl.ioctl(0, termios.TIOCSCTTY, 0)

        self.proc = subprocess.Popen([sys.executable, "-m", "gputop", *argv], stdin=tty, stdout=tty, stderr=tty,
                                     cwd=ROOT, env=env(), start_new_session=True,
                                     preexec_fn=take_terminal if controlling else None)
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
        return self.proc.wait(EXIT_S)

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        if not self._stop.is_set():
            self.hang_up()


@pytest.mark.parametrize("controlling", [True, False], ids=["sighup", "no-sighup"])
def test_the_live_view_ends_with_its_terminal_and_stops_its_workload(tmp_path, controlling):
    job_path, pidfile = job(tmp_path, grandchild=True)
    term = Terminal(["--interval", "0.1", "--run", job_path], controlling)
    try:
        pgid = read_pgid(pidfile, members=2)
        assert term.drawn_then_hung_up() == 0
        wait_for(lambda: not live_members(pgid), 10, f"group {pgid} to end: {live_members(pgid)}")
    finally:
        term.close()
        cleanup(pidfile)


@pytest.mark.parametrize("controlling", [True, False], ids=["sighup", "no-sighup"])
def test_a_paused_replay_that_draws_nothing_still_ends_with_its_terminal(controlling):
    term = Terminal(["replay", "--paused", str(TRACE)], controlling)
    try:
        assert term.drawn_then_hung_up() == 0
    finally:
        term.close()
