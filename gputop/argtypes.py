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
    return _bounded(low, high, "not a number of seconds: {text!r}",
                    "must be between {low:g} and {high:g} seconds, got {text}")


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


INTERVAL = seconds(0.01, 3600)  # every --interval: 100 Hz at most, an hour at least


def port(text: str) -> int:
    """An argparse type: a TCP port, 0 meaning any free one."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a port number: {text!r}") from None
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"port must be between 0 and 65535, got {text}")
    return value
