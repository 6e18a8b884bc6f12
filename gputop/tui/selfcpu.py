"""gputop's own CPU use, as the status bar shows it: process CPU time over wall time; and beside
it, where the sampler counts it, its own time in GPU driver calls over the same wall time."""

from __future__ import annotations

import time
from typing import Callable

DriverClock = Callable[[], "tuple[float, int] | None"]  # (seconds in driver calls so far, calls); None: no GPU source

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
        driver_clock: DriverClock | None = None,
    ) -> None:
        self._cpu_clock, self._wall_clock = cpu_clock, wall_clock
        self._window_s = window_s
        self._last: tuple[float, float] | None = None
        self._value: float | None = None
        self._driver_clock = driver_clock
        self._driver_last: float | None = None
        self.driver_ms_per_s: float | None = None
        """Milliseconds in driver calls per second over the last window (None: not yet, or no GPU source)."""

    @property
    def counts_driver(self) -> bool:
        """Whether there is a driver time to show (the live view's sampler counts it)."""
        return self._driver_clock is not None

    def read(self) -> float | None:
        now = (self._cpu_clock(), self._wall_clock())
        if self._last is None:
            self._last = now
            self._driver_last = self._driver_s()
            return None
        wall = now[1] - self._last[1]
        if wall <= 0 or wall < self._window_s:
            return self._value
        self._value = 100.0 * (now[0] - self._last[0]) / wall
        self._last = now
        driver, last = self._driver_s(), self._driver_last
        self.driver_ms_per_s = None if driver is None or last is None else 1000.0 * (driver - last) / wall
        self._driver_last = driver
        return self._value

    def _driver_s(self) -> float | None:
        spent = None if self._driver_clock is None else self._driver_clock()
        return None if spent is None else spent[0]
