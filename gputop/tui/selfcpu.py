"""gputop's own CPU use, as the status bar shows it: process CPU time over wall time."""

from __future__ import annotations

import time
from typing import Callable

OWN_CPU_WINDOW_S = 3.0  # top's default delay: a steadier figure, and a status line repainted less


class SelfCpu:
    """gputop's own CPU use: process CPU time over wall time, over windows of ``window_s``.

    The first reading only sets the start (None): measured from construction it would count the
    app's start-up (imports, first layout) as if it were the cost of sampling. A reading before
    the window has passed gives the last figure again (None until there is one).
    """

    def __init__(
        self,
        cpu_clock: Callable[[], float] = time.process_time,
        wall_clock: Callable[[], float] = time.monotonic,
        window_s: float = OWN_CPU_WINDOW_S,
    ) -> None:
        self._cpu_clock, self._wall_clock = cpu_clock, wall_clock
        self._window_s = window_s
        self._last: tuple[float, float] | None = None
        self._value: float | None = None

    def read(self) -> float | None:
        now = (self._cpu_clock(), self._wall_clock())
        if self._last is None:
            self._last = now
            return None
        wall = now[1] - self._last[1]
        if wall <= 0 or wall < self._window_s:
            return self._value
        self._value = 100.0 * (now[0] - self._last[0]) / wall
        self._last = now
        return self._value
