"""A view whose terminal goes away (window closed, tmux killed, ssh dropped) ends, and ends what
it launched, with or without a SIGHUP reaching it. Before gputop.tui.terminal, a live view in a
session of its own (so no SIGHUP) blocked for ever on Textual's write queue while its key thread
spun at 100 % of a core, and a paused replay, which writes nothing, never noticed at all.

Real child processes on a real pseudo-terminal: the terminal "goes away" when the test closes
the controlling side, as a terminal emulator or tmux does.
"""

from __future__ import annotations

import sys

import pytest

from helpers import TESTS, Terminal, cleanup, job, live_members, read_pgid, wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.skipif(not sys.platform.startswith("linux"), reason="Linux's pseudo-terminals")]

TRACE = TESTS / "data" / "h100_fake.json"


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
