"""The live terminal UI (Textual). The only package that imports textual.

``GputopApp(feed)`` in ``app.py`` draws a feed of samples (``gputop.view.feed``: live, or a recording
under a cursor that ``replay.py`` drives); widgets only render what they are handed and post
messages (a GPU clicked) back up. ``ClusterApp`` in ``cluster.py`` draws a Prometheus-fed fleet.
Here: whether this terminal can show a view at all; ``terminal.py``: the driver that draws on it.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from typing import TYPE_CHECKING, TextIO

if TYPE_CHECKING:
    from gputop.environment import Environment


def is_tty(stream: TextIO | None) -> bool:
    """``stream.isatty()``, False for a closed stream or one that cannot say."""
    try:
        return stream is not None and stream.isatty()
    except (ValueError, OSError):  # closed
        return False


HEADLESS = "headless: 'gputop snapshot', 'gputop record', 'gputop serve'"
# Terminals that cannot move the cursor or draw colour (Emacs' M-x shell, some CI logs): a
# full-screen app there is a stream of escape codes, so it is refused, as curses tools refuse it.
DUMB_TERMS = frozenset({"dumb"})


def terminal_problem(stdin: TextIO | None = None, stdout: TextIO | None = None, environ: Mapping[str, str] | None = None) -> str | None:
    """Why the live view cannot run here, or None: stdin or stdout is not a terminal, or the
    terminal is a dumb one. (stderr may be redirected: the view is then drawn on stdout.)

    Checked before Textual starts: without a terminal it prints a traceback and hangs; on
    TERM=dumb it draws 24-bit colour escape codes all the same.
    """
    stdin = sys.stdin if stdin is None else stdin
    stdout = sys.stdout if stdout is None else stdout
    environ = os.environ if environ is None else environ
    for name, stream in (("stdin", stdin), ("stdout", stdout)):
        if not is_tty(stream):
            return f"the live view needs a terminal, and {name} is not one ({HEADLESS})"
    term = environ.get("TERM", "")
    if term in DUMB_TERMS:
        return f"the live view needs a terminal that can move the cursor, and TERM={term} cannot ({HEADLESS})"
    return None


def refuse_without_terminal(env: Environment) -> bool:
    """Say on stderr, in one line (``env.error``), why a view cannot run here; True if it cannot."""
    problem = terminal_problem(env.stdin, env.stdout)
    if problem is not None:
        env.error(problem)
    return problem is not None
