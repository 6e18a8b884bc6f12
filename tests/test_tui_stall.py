"""gputop.tui.stall: the watch that tells a hung sample from a live one (the app's header test is
in test_tui.py)."""

from __future__ import annotations

import asyncio

from gputop.tui import stall
from gputop.tui.stall import StallWatch


async def test_ticks_that_come_back_in_time_never_wake_it_and_a_late_one_is_reported(monkeypatch):
    monkeypatch.setattr(stall, "STALL_GRACE_S", 0.15)
    monkeypatch.setattr(stall, "STALL_EVERY_S", 0.05)
    interval = [0.0]
    told: list[float | None] = []
    watch = StallWatch(lambda: interval[0], told.append)
    checks = 0
    check = watch._check

    def counted() -> None:
        nonlocal checks
        checks += 1
        check()

    watch._check = counted  # type: ignore[method-assign]
    for _ in range(15):  # 0.45 s of ticks 0.03 s apart: the one timer is moved, never fired
        watch.heard()
        await asyncio.sleep(0.03)
    assert checks == 0 and told == [] and not watch.stalled
    await asyncio.sleep(0.4)  # no tick back: reported once due, then brought up to date
    ages = [a for a in told if a is not None]
    assert len(ages) >= 3 and ages[0] >= 0.15 and ages == sorted(ages) and watch.stalled
    watch.heard()
    assert told[-1] is None and not watch.stalled
    interval[0] = 10.0  # a slower pace (the + key): due later, nothing said meanwhile
    told.clear()
    await asyncio.sleep(0.3)
    assert told == []
    watch.stop()
    assert told == [] and watch._handle is None  # (never stalled: nothing to take back)


async def test_stopping_takes_a_stall_back(monkeypatch):
    monkeypatch.setattr(stall, "STALL_GRACE_S", 0.05)
    told: list[float | None] = []
    watch = StallWatch(lambda: 0.0, told.append)
    watch.heard()
    await asyncio.sleep(0.2)
    assert watch.stalled and told[0] is not None
    watch.stop()
    assert told[-1] is None and not watch.stalled
    n = len(told)
    await asyncio.sleep(0.2)
    assert len(told) == n  # stopped: no more reports
