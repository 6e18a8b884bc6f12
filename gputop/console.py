"""The terminal a command talks to: whether a stream is one, one redrawn progress line, and
logging configured once, so that a warning never lands on top of the TUI or inside a progress line.

Logging: warnings (a GPU lost mid-run) are on by default; ``GPUTOP_LOG=debug`` (or ``info``,
``warning``, ``error``) or ``--debug`` sets the level. Headless, records go to stderr as
``gputop CMD: warning: ...``, each on a line of its own (a progress line being drawn is cleared
first and redrawn by its next update). While a full-screen view runs they go to a file instead,
``$XDG_STATE_HOME/gputop/gputop.log`` (``~/.local/state/gputop/gputop.log``), created only when
something is logged.
"""

from __future__ import annotations

import logging
import os
from typing import TextIO

LOG_ENV = "GPUTOP_LOG"
LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING, "error": logging.ERROR}
CLEAR_LINE = "\r\x1b[K"


def isatty(stream: TextIO | None) -> bool:
    """Whether ``stream`` is a terminal; False for anything without a working isatty()."""
    try:
        return stream is not None and stream.isatty()
    except (AttributeError, ValueError):  # no isatty, or a closed stream
        return False


def is_foreground(fd: int) -> bool:
    """Whether this process's group is the foreground job of ``fd``'s terminal (False for no
    terminal): a background job (``gputop &``) is stopped by its first terminal call."""
    try:
        return os.tcgetpgrp(fd) == os.getpgrp()
    except OSError:
        return False


def log_path() -> str:
    """Where a full-screen view's log records go."""
    state = os.environ.get("XDG_STATE_HOME") or os.path.join(os.path.expanduser("~"), ".local", "state")
    return os.path.join(state, "gputop", "gputop.log")


def log_level(debug: bool = False, environ: dict[str, str] | None = None) -> int | str:
    """The level asked for: ``--debug``, else GPUTOP_LOG, else warnings. A GPUTOP_LOG that names
    no level is returned as the text, for the caller to refuse."""
    if debug:
        return logging.DEBUG
    text = (os.environ if environ is None else environ).get(LOG_ENV, "").strip().lower()
    if not text:
        return logging.WARNING
    return LEVELS.get(text, text)


class _LineHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """``gputop CMD: warning: message`` on a line of its own: on a terminal, whatever progress
    line is being drawn there is cleared first."""

    def __init__(self, prog: str, stream: TextIO) -> None:
        super().__init__(stream)
        self.prog = prog
        self.setFormatter(logging.Formatter("%(message)s"))

    def format(self, record: logging.LogRecord) -> str:
        head = CLEAR_LINE if isatty(self.stream) else ""
        return f"{head}{self.prog}: {record.levelname.lower()}: {super().format(record)}"


class _FileHandler(logging.FileHandler):
    """A log file opened at the first record (none is made for a quiet run)."""

    def __init__(self, path: str) -> None:
        super().__init__(path, delay=True, encoding="utf-8")
        self.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))

    def _open(self):  # type: ignore[no-untyped-def]  # logging's own signature
        os.makedirs(os.path.dirname(self.baseFilename), exist_ok=True)
        return super()._open()


def configure_logging(prog: str, level: int, *, stderr: TextIO, full_screen: bool) -> None:
    """Route gputop's loggers: to ``stderr`` headless, to ``log_path()`` under a full-screen
    view. Called once by ``cli.main``; a second call replaces the first's handler."""
    root = logging.getLogger("gputop")
    for handler in list(root.handlers):
        root.removeHandler(handler)
        handler.close()
    new: logging.Handler = _FileHandler(log_path()) if full_screen else _LineHandler(prog, stderr)
    root.addHandler(new)
    root.setLevel(level)
    root.propagate = False
