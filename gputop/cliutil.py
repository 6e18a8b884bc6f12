"""Small pieces every subcommand shares: argument types that reject bad input in one line, and
SIGINT/SIGTERM/SIGHUP handling that asks a loop to stop (a second signal stops at once)."""

from __future__ import annotations

import argparse
import contextlib
import signal
import threading
from typing import Any, Callable, Iterable, Iterator


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


class Stopped(Exception):
    """Raised out of ``StopSignals.sleep`` when Ctrl-C, SIGTERM or SIGHUP asked the loop to stop."""


# the signals that end a headless command cleanly: SIGHUP too (the terminal closed, an ssh session
# dropped), whose default would end the process without closing its trace or stopping its workload
STOP_SIGNALS = tuple(getattr(signal, name) for name in ("SIGINT", "SIGTERM", "SIGHUP")
                     if hasattr(signal, name))


@contextlib.contextmanager
def handling(signals: Iterable[int], handler: Callable[[int, Any], None]) -> Iterator[None]:
    """``handler`` for ``signals`` while inside, the previous handlers restored after. Python
    runs signal handlers in the main thread only, so elsewhere this installs nothing."""
    old: dict[int, Any] = {}
    if threading.current_thread() is threading.main_thread():
        for sig in signals:
            old[sig] = signal.signal(sig, handler)
    try:
        yield
    finally:
        for sig, previous in old.items():
            signal.signal(sig, previous)


class StopSignals:
    """SIGINT, SIGTERM and SIGHUP set ``event`` (and ``signal``); a second one raises
    KeyboardInterrupt, so a tick that hangs can still be interrupted. Installed only from the
    main thread."""

    def __init__(self, event: threading.Event | None = None) -> None:
        self.event = threading.Event() if event is None else event
        self.signal: int | None = None
        self._handling = handling(STOP_SIGNALS, self._handle)

    def __enter__(self) -> StopSignals:
        self._handling.__enter__()
        return self

    def _handle(self, signum: int, frame: object) -> None:
        if self.event.is_set():
            raise KeyboardInterrupt
        self.signal = signum
        self.event.set()

    def sleep(self, seconds: float) -> None:
        if self.event.wait(seconds):
            raise Stopped

    def __exit__(self, *exc: object) -> None:
        self._handling.__exit__(None, None, None)  # restore the handlers; exc goes on as it is
