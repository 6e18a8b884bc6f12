"""Tells when sampling has stalled: a sample stuck in a driver call (a hung GPU, an NVML init that
does not return) ends no tick, failed or not, so without this the header would go on saying "live"
over the last sample's values for as long as the call hangs.

The watch costs the event loop no wake-up while ticks come back: each one moves a single
``call_later`` (cancelled and set again), which fires only once a tick is overdue.
"""

from __future__ import annotations

import asyncio
import time
from typing import Callable

STALL_GRACE_S = 2.0  # a tick may come back this long after its interval before it counts as stalled
STALL_EVERY_S = 1.0  # while stalled, the age shown is brought up to date this often


class StallWatch:
    """``on_stall(age_s)`` once no tick has come back for STALL_GRACE_S past the time the next one
    was due (``interval_s()`` after the last, or at once after ``start``/``tick_now``), and again
    every STALL_EVERY_S while none does; ``on_stall(None)`` when one comes back or the watch
    stops. Runs on the event loop it is first ``heard()`` on."""

    def __init__(
        self, interval_s: Callable[[], float], on_stall: Callable[[float | None], None], clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._interval_s, self._on_stall, self._clock = interval_s, on_stall, clock
        self._last = 0.0  # the last tick back
        self._tick_at = 0.0  # the next tick is due then
        self._handle: asyncio.TimerHandle | None = None
        self._watching = False
        self.stalled = False

    def heard(self) -> None:
        """A tick came back (a sample or an error): the next is due an interval from now."""
        self._watching = True
        self._last = self._clock()
        self._tick_at = self._last + self._interval_s()
        self._calm()
        self._arm(self._tick_at + STALL_GRACE_S - self._last)

    def start(self) -> None:
        """Sampling (re)starts, its first tick due at once: no sample yet counts from now."""
        self.heard()
        self.tick_now()

    def tick_now(self) -> None:
        """A tick is due at once (the interval changed: the ticker re-anchors); the time since the
        last one back is kept, and a due time already passed stays (pressing +/- during a hang
        must not put the badge off). Nothing while not watching (paused)."""
        if self._watching:
            now = self._clock()
            self._tick_at = min(self._tick_at, now)
            if not self.stalled:
                self._arm(self._tick_at + STALL_GRACE_S - now)

    def stop(self) -> None:
        """Sampling stopped on purpose (paused, or the end): nothing is overdue."""
        self._watching = False
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None
        self._calm()

    def _calm(self) -> None:
        if self.stalled:
            self.stalled = False
            self._on_stall(None)

    def _arm(self, delay_s: float) -> None:
        if self._handle is not None:
            self._handle.cancel()
        self._handle = asyncio.get_running_loop().call_later(max(0.0, delay_s), self._check)

    def _check(self) -> None:
        self._handle = None
        now = self._clock()
        if now < self._tick_at + STALL_GRACE_S and not self.stalled:  # (the grace changed: tests)
            self._arm(self._tick_at + STALL_GRACE_S - now)
            return
        self.stalled = True
        self._on_stall(now - self._last)
        self._arm(STALL_EVERY_S)
