"""Signals: how every gputop command stops when asked to, with one policy.

The policy: the first SIGINT, SIGTERM or SIGHUP asks the command to stop cleanly. It is recorded
(``StopSignals.signal``) and sets ``StopSignals.event``; where the command blocks in a call it
cannot poll a flag from (compare waiting on a workload), it is also raised in the main thread as
``Interrupted``, a SystemExit with status 128 + the signal's number, so ``finally`` blocks run on
the way out (a workload's group is stopped, a trace closed). A full-screen view is asked to exit
instead (``on_first``), as ``q`` does: raised inside its event loop, the exception landed in
asyncio's or Textual's internals and could leave the terminal's driver running. A second signal
raises KeyboardInterrupt: the user insists, and a clean-up that hangs is cut short.

SIGHUP is a stop signal too (the terminal closed, an ssh session dropped): its default would end
the process without closing its trace or stopping its workload.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from typing import Any, Callable, Iterable, Iterator

STOP_SIGNALS: tuple[int, ...] = tuple(getattr(signal, name) for name in ("SIGINT", "SIGTERM", "SIGHUP") if hasattr(signal, name))


def signal_name(number: int) -> str:
    """``SIGKILL`` for 9; ``signal 64`` for a number without a name."""
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"


class Stopped(Exception):
    """Raised out of ``StopSignals.sleep`` once a stop signal has asked the loop to stop."""


class Interrupted(SystemExit):
    """A stop signal, raised in the main thread (``StopSignals(raise_first=True)``). A SystemExit,
    so asyncio and Textual let it through their task error handling, and uncaught it exits with
    the shell's status for that signal."""

    def __init__(self, signum: int) -> None:
        super().__init__(128 + int(signum))
        self.signum = int(signum)


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
    """The policy above, installed from the main thread while inside ``with``; the handlers that
    were there before are restored on the way out."""

    def __init__(
        self,
        event: threading.Event | None = None,
        *,
        raise_first: bool = False,
        on_first: Callable[[int], None] | None = None,
        signals: Iterable[int] = STOP_SIGNALS,
    ) -> None:
        """``raise_first``: raise the first signal as ``Interrupted``. ``on_first(signum)``: call
        this instead (in the main thread, from the signal handler: it may raise ``Interrupted``
        itself where it cannot do better)."""
        self.event = threading.Event() if event is None else event
        self.signal: int | None = None
        self.raise_first = raise_first
        self.on_first = on_first
        self._handling = handling(tuple(signals), self._handle)

    def __enter__(self) -> StopSignals:
        self._handling.__enter__()
        return self

    def _handle(self, signum: int, frame: object) -> None:
        if self.event.is_set():
            raise KeyboardInterrupt
        self.signal = signum
        self.event.set()
        if self.on_first is not None:
            self.on_first(signum)
        elif self.raise_first:
            raise Interrupted(signum)

    def sleep(self, seconds: float) -> None:
        """Sleep, or raise Stopped at once when a stop signal came (before or during)."""
        if self.event.wait(seconds):
            raise Stopped

    def __exit__(self, *exc: object) -> None:
        self._handling.__exit__(None, None, None)  # restore the handlers; exc goes on as it is
