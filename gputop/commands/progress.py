"""A progress bar for a long read (``report``, ``replay``, ``merge`` on a large recording): one
line on stderr, drawn only on a terminal and only once the read has taken ``DELAY_S``, redrawn
at most ``REDRAW_S`` apart, and cleared before anything else is written (``clear``), so it is
never mixed with the command's output or its error line. A warning logged meanwhile clears it
too (console's handler) and the next update draws it again.
"""

from __future__ import annotations

import time
from typing import Callable, TextIO

from gputop import console

DELAY_S = 1.0
REDRAW_S = 0.1
WIDTH = 30


class Progress:
    """Call it with the bytes read so far (of ``total``); ``clear()`` when done (idempotent)."""

    def __init__(
        self, total: int, label: str, stream: TextIO, *, clock: Callable[[], float] = time.monotonic, tty: bool | None = None
    ) -> None:
        self.total = max(1, total)
        self.label = label
        self.stream = stream
        self.enabled = console.isatty(stream) if tty is None else tty
        self._clock = clock
        self._start = clock()
        self._next = self._start + DELAY_S
        self.drawn = False

    def __call__(self, done: int) -> None:
        if not self.enabled:
            return
        now = self._clock()
        if now < self._next:
            return
        self._next = now + REDRAW_S
        share = min(1.0, done / self.total)
        filled = int(share * WIDTH)
        elapsed = now - self._start
        rate = done / elapsed / 1e6 if elapsed > 0 else 0.0
        bar = "#" * filled + "-" * (WIDTH - filled)
        self.stream.write(
            f"{console.CLEAR_LINE}{self.label} [{bar}] {share * 100:3.0f} % "
            f"({done / 1e6:,.0f} of {self.total / 1e6:,.0f} MB, {rate:.0f} MB/s)"
        )
        self.stream.flush()
        self.drawn = True

    def clear(self) -> None:
        """Take the bar off the line (nothing where none was drawn)."""
        if self.drawn:
            self.stream.write(console.CLEAR_LINE)
            self.stream.flush()
            self.drawn = False
        self.enabled = False
