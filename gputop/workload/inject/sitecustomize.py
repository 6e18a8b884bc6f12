"""Run by Python at start-up in a script gputop launches (this directory is first on its
PYTHONPATH): arm gputop's lazy torch hooks, then hand over to the sitecustomize the environment
had before (the next one on the path), exactly as ``site`` would have run it.

This directory leaves ``sys.path`` again before that, so the script imports what it would have
imported without gputop; it stays first on ``PYTHONPATH`` (with ``GPUTOP_AUTOSTEP``), so the Python
processes the script starts (a launcher's ranks) arm the same hooks.
"""

from __future__ import annotations

import importlib
import os
import sys

_HERE = os.path.dirname(os.path.abspath(__file__))


def _leave_path() -> None:
    sys.path[:] = [p for p in sys.path if os.path.abspath(p or os.curdir) != _HERE]


def _chain() -> None:
    """Import the next sitecustomize, with site's own handling of its errors."""
    ours = sys.modules.pop("sitecustomize", None)
    try:
        try:
            importlib.import_module("sitecustomize")
        except ImportError as exc:
            if exc.name != "sitecustomize":
                raise
            if ours is not None:
                sys.modules["sitecustomize"] = ours
    except Exception as err:  # noqa: BLE001 - site.execsitecustomize reports and carries on
        if sys.flags.verbose:
            sys.excepthook(*sys.exc_info())
        else:
            sys.stderr.write(f"Error in sitecustomize; set PYTHONVERBOSE for traceback:\n{err.__class__.__name__}: {err}\n")


def _line_buffered() -> None:
    """stdout and stderr written a line at a time, as on a terminal (gputop reads them from a
    pipe, where Python would keep 8 KiB of stdout before writing, and PYTHONUNBUFFERED, which many
    set, writes a printed line's text and its newline apart): each line is one write, whole, so
    the lines of the processes that share the pipe (a job's ranks) never run together. A line
    without its newline yet (``print(..., end="")``) waits for it, or for a flush."""
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.reconfigure(line_buffering=True, write_through=False)  # type: ignore[union-attr]
        except (AttributeError, ValueError, OSError):  # not Python's own stream (replaced, closed)
            pass


def _main() -> None:
    _line_buffered()
    try:
        hook = importlib.import_module("_gputop_autostep")
        hook.arm()
    except Exception:  # noqa: BLE001 - gputop's hooks never stop the script
        pass
    _leave_path()
    _chain()


_main()
