"""The live terminal UI (Textual). The only package that imports textual.

``GputopApp(sampler, interval_s, workload=None)`` in ``app.py``: the app owns the tick loop and
hands each Sample (and a launched workload's WorkloadState) down to widgets that only render;
widgets post messages (a GPU clicked) back up. ``ReplayApp`` in ``replay.py`` is the same app
fed from a recording, with a time cursor.
"""

import sys
from typing import TextIO


def terminal_problem(stdin: TextIO | None = None, stdout: TextIO | None = None) -> str | None:
    """Why the live view cannot run here (stdin or stdout is not a terminal), or None.

    Checked before Textual starts: without a terminal it prints a traceback and hangs.
    """
    stdin = sys.stdin if stdin is None else stdin
    stdout = sys.stdout if stdout is None else stdout
    for name, stream in (("stdin", stdin), ("stdout", stdout)):
        try:
            tty = stream is not None and stream.isatty()
        except (ValueError, OSError):  # closed
            tty = False
        if not tty:
            return (f"the live view needs a terminal, and {name} is not one "
                    "(headless: 'gputop snapshot', 'gputop record', 'gputop serve')")
    return None


def refuse_without_terminal(prog: str) -> bool:
    """Say on stderr, in one line, why the live view cannot run here; True if it cannot."""
    problem = terminal_problem()
    if problem is not None:
        sys.stderr.write(f"{prog}: error: {problem}\n")
    return problem is not None
