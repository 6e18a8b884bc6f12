"""gputop.tui.stall: the watch that tells a hung sample from a live one (the app's header test is
in test_tui.py)."""

from __future__ import annotations

import asyncio

import pytest

from gputop.tui import stall
from gputop.tui.stall import StallWatch

pytestmark = pytest.mark.unit


def watched(
    monkeypatch, grace_s: float, every_s: float = 1.0, interval_s: float = 0.0
) -> tuple[StallWatch, list[float | None], list[float]]:
    """A watch with its grace and update period cut for a test; what it reports, and its interval
    (a list: a test changes the pace through it)."""
    monkeypatch.setattr(stall, "STALL_GRACE_S", grace_s)
    monkeypatch.setattr(stall, "STALL_EVERY_S", every_s)
    interval, told = [interval_s], []
    return StallWatch(lambda: interval[0], told.append), told, interval


def counting(watch: StallWatch) -> list[int]:
    """Count the watch's checks (each one a wake-up of the event loop)."""
    checks = [0]
    check = watch._check

    def counted() -> None:
        checks[0] += 1
        check()

    watch._check = counted  # type: ignore[method-assign]
    return checks


async def test_ticks_that_come_back_in_time_never_wake_it_and_a_late_one_is_reported(monkeypatch):
    watch, told, interval = watched(monkeypatch, 0.5, 0.05)
    checks = counting(watch)
    for _ in range(30):  # 0.3 s of ticks 0.01 s apart: the one timer is moved, never fired
        watch.heard()
        await asyncio.sleep(0.01)
    assert checks[0] == 0 and told == [] and not watch.stalled
    await asyncio.sleep(0.8)  # no tick back: reported once due, then brought up to date
    ages = [a for a in told if a is not None]
    assert len(ages) >= 3 and ages[0] >= 0.5 and ages == sorted(ages) and watch.stalled
    watch.heard()
    assert told[-1] is None and not watch.stalled
    interval[0] = 10.0  # a slower pace: the next tick due later, nothing said meanwhile
    watch.heard()
    told.clear()
    await asyncio.sleep(0.7)
    assert told == []
    watch.stop()
    assert told == [] and watch._handle is None  # (never stalled: nothing to take back)


async def test_stalled_it_keeps_counting_when_the_pace_slows(monkeypatch):
    """The review: stalled, then + pressed, the count froze until the new interval ran out."""
    watch, told, interval = watched(monkeypatch, 0.05, 0.05)
    watch.heard()
    await asyncio.sleep(0.2)
    assert watch.stalled
    monkeypatch.setattr(stall, "STALL_GRACE_S", 5.0)  # (a freeze until the deadline would show)
    interval[0] = 10.0
    watch.tick_now()
    n = len(told)
    await asyncio.sleep(0.3)
    assert len(told) >= n + 2 and all(a is not None for a in told[n:]) and watch.stalled


async def test_a_tick_due_at_once_is_overdue_after_the_grace_whatever_the_interval(monkeypatch):
    """Started, resumed or re-paced, the ticker ticks at once: with -i 60 a hang behind a resume
    showed "live" for 62 s."""
    watch, told, _ = watched(monkeypatch, 0.1, interval_s=60.0)
    watch.start()
    await asyncio.sleep(0.3)
    assert watch.stalled and told and told[0] is not None and told[0] >= 0.1
    watch.stop()
    told.clear()
    watch.heard()
    watch.tick_now()  # the - key: a tick now; no sample back for as long as it was
    await asyncio.sleep(0.3)
    assert watch.stalled and told[0] is not None
    watch.stop()
    watch.tick_now()  # paused: the interval keys arm nothing
    assert watch._handle is None


async def test_pressing_plus_or_minus_during_a_hang_does_not_put_the_badge_off(monkeypatch):
    """The second review: each tick_now moved the deadline to now + the grace, so +/- pressed
    every 1.5 s kept the header on "live" for as long as the hang lasted."""
    watch, told, _ = watched(monkeypatch, 0.2, interval_s=0.1)
    watch.heard()
    for _ in range(10):  # 1.5 s of presses 0.15 s apart, no tick back
        watch.tick_now()
        await asyncio.sleep(0.15)
    assert watch.stalled and told and told[0] is not None and told[0] < 0.6


async def test_stopping_takes_a_stall_back(monkeypatch):
    watch, told, _ = watched(monkeypatch, 0.05, interval_s=0.0)
    watch.heard()
    await asyncio.sleep(0.2)
    assert watch.stalled and told[0] is not None
    watch.stop()
    assert told[-1] is None and not watch.stalled
    n = len(told)
    await asyncio.sleep(0.2)
    assert len(told) == n  # stopped: no more reports
