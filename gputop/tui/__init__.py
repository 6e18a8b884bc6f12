"""The live terminal UI (Textual). The only package that imports textual.

``GputopApp(feed)`` in ``app.py`` draws a feed of samples (``gputop.feed``: live, or a recording
under a cursor that ``replay.py`` drives); widgets only render what they are handed and post
messages (a GPU clicked) back up. ``ClusterApp`` in ``cluster.py`` draws a Prometheus-fed fleet.
Here: whether this terminal can show a view at all, and on which stream it is drawn.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, TextIO

if TYPE_CHECKING:
    from textual.driver import Driver

HEADLESS = "headless: 'gputop snapshot', 'gputop record', 'gputop serve'"
# Terminals that cannot move the cursor or draw colour (Emacs' M-x shell, some CI logs): a
# full-screen app there is a stream of escape codes, so it is refused, as curses tools refuse it.
DUMB_TERMS = frozenset({"dumb"})


def _is_tty(stream: TextIO | None) -> bool:
    try:
        return stream is not None and stream.isatty()
    except (ValueError, OSError):  # closed
        return False


def terminal_problem(stdin: TextIO | None = None, stdout: TextIO | None = None,
                     environ: Mapping[str, str] | None = None) -> str | None:
    """Why the live view cannot run here, or None: stdin or stdout is not a terminal, or the
    terminal is a dumb one. (stderr may be redirected: the view is then drawn on stdout.)

    Checked before Textual starts: without a terminal it prints a traceback and hangs; on
    TERM=dumb it draws 24-bit colour escape codes all the same.
    """
    stdin = sys.stdin if stdin is None else stdin
    stdout = sys.stdout if stdout is None else stdout
    environ = os.environ if environ is None else environ
    for name, stream in (("stdin", stdin), ("stdout", stdout)):
        if not _is_tty(stream):
            return f"the live view needs a terminal, and {name} is not one ({HEADLESS})"
    term = environ.get("TERM", "")
    if term in DUMB_TERMS:
        return (f"the live view needs a terminal that can move the cursor, and TERM={term} "
                f"cannot ({HEADLESS})")
    return None


def refuse_without_terminal(prog: str) -> bool:
    """Say on stderr, in one line, why the live view cannot run here; True if it cannot."""
    problem = terminal_problem()
    if problem is not None:
        sys.stderr.write(f"{prog}: error: {problem}\n")
    return problem is not None


def terminal_driver(default: type[Driver]) -> type[Driver]:
    """The driver to run the app with: Textual's own, drawing on stdout when stderr is not a
    terminal.

    Textual's Linux driver draws on stderr (so that an app can print a result on stdout), so
    ``gputop 2>err.log`` drew the whole screen into the file and left the terminal blank. stdout
    is a terminal here (``terminal_problem``), so the screen goes there and the file still gets
    what is written to stderr (a crash's traceback after the screen is given back).
    """
    if _is_tty(sys.__stderr__) or not _is_tty(sys.__stdout__):
        return default
    from textual.drivers.linux_driver import LinuxDriver

    if not issubclass(default, LinuxDriver):  # another platform's or a test's driver: as it is
        return default

    class StdoutDriver(default):  # type: ignore[misc,valid-type]
        """``default``, writing the screen to stdout instead of stderr."""

        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self._file = sys.__stdout__  # the stream LinuxDriver's writer thread draws on

    return StdoutDriver
