"""Argument types every subcommand shares: each rejects bad input with one line that says why."""

from __future__ import annotations

import argparse
from typing import Callable


def _bounded(low: float, high: float, not_a_number: str, out_of_range: str) -> Callable[[str], float]:
    """An argparse type: a float in [low, high]; the messages are formatted with text/low/high."""

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(not_a_number.format(text=text)) from None
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(out_of_range.format(text=text, low=low, high=high))
        return value

    return parse


def seconds(low: float, high: float) -> Callable[[str], float]:
    """An argparse type: a number of seconds in [low, high]."""
    return _bounded(low, high, "not a number of seconds: {text!r}", f"must be between {_duration(low)} and {_duration(high)}, got {{text}}")


def _duration(seconds: float) -> str:
    """A bound as people read it: 0.01 s, 3600 s (1 h), 31622400 s (366 days)."""
    text = f"{seconds:g} s" if seconds < 1e5 else f"{seconds:.0f} s"
    for unit, size in (("days", 86400), ("h", 3600)):
        if seconds >= size and seconds % size == 0:
            return f"{text} ({seconds / size:g} {unit})"
    return text


def number(low: float, high: float, what: str = "a number") -> Callable[[str], float]:
    """An argparse type: a float in [low, high]."""
    return _bounded(low, high, f"expected {what}, got {{text!r}}", "must be from {low:g} to {high:g}, got {text}")


def integer(low: int) -> Callable[[str], int]:
    """An argparse type: a whole number >= low."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
        if value < low:
            raise argparse.ArgumentTypeError(f"expected {low} or more, got {value}")
        return value

    return parse


MIN_INTERVAL_S, MAX_INTERVAL_S = 0.01, 3600.0  # every --interval: 100 Hz at most, an hour at least
INTERVAL = seconds(MIN_INTERVAL_S, MAX_INTERVAL_S)
# The live view's + and - walk this ladder, which spans the same range.
INTERVAL_LADDER = (0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0, 300.0, 600.0, 1800.0, 3600.0)


def next_interval(current: float, step: int) -> float:
    """The next rung of INTERVAL_LADDER above (``step`` > 0) or below ``current``; the end rung
    where there is none. A value between rungs goes to the rung beside it on that side."""
    if step > 0:
        return next((r for r in INTERVAL_LADDER if r > current * (1 + 1e-9)), INTERVAL_LADDER[-1])
    return next((r for r in reversed(INTERVAL_LADDER) if r < current * (1 - 1e-9)), INTERVAL_LADDER[0])


def file_name(text: str) -> str:
    """An argparse type: a path to write, not the empty string."""
    if not text.strip():
        raise argparse.ArgumentTypeError("needs a file name, got an empty one")
    return text


def port(text: str) -> int:
    """An argparse type: a TCP port, 0 meaning any free one."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a port number: {text!r}") from None
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"port must be between 0 and 65535, got {text}")
    return value
