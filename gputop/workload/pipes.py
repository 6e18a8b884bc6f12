"""The workload's pipes, drained by daemon threads whatever the consumer's pace (so the child never
blocks on a write): stdout and stderr into one bounded deque of lines, the events pipe into a
deque of raw event lines."""

from __future__ import annotations

import collections
import contextlib
import os
import re
import threading
import time
from typing import IO

MAX_LINE = 65536  # an event or output line longer than this is cut (output) or dropped (events)


_LINE_END = re.compile(rb"(\r\n|\r|\n)")


class OutputLines:
    """stdout and stderr of the child, read by two daemon threads into one bounded deque of lines
    (``\\r`` ends a line too, for progress bars); the last line of stderr that is not a progress
    update (a line ended by, or drawn after, a lone ``\\r``: a tqdm bar) is kept apart, and so is
    the exception line of the last Python traceback on stderr (``reason``: why a script failed,
    not the hint a library prints after it)."""

    def __init__(self, maxlen: int, collect: bool = False) -> None:
        self.lines: collections.deque[str] = collections.deque(maxlen=maxlen)
        self.last_stderr: str | None = None
        self.last_exception: str | None = None  # "ValueError: ..." that ended the last traceback
        self._in_traceback = False
        # every line for a recorder (taken by take()): (time.time_ns() read, stderr?, progress?, text)
        self.pending: list[tuple[int, bool, bool, str]] | None = [] if collect else None
        self._lock = threading.Lock()
        self._threads: list[threading.Thread] = []

    def follow(self, stream: IO[bytes], is_stderr: bool) -> None:
        thread = threading.Thread(
            target=self._read, args=(stream, is_stderr), daemon=True, name=f"workload-{'stderr' if is_stderr else 'stdout'}"
        )
        thread.start()
        self._threads.append(thread)

    def _read(self, stream: IO[bytes], is_stderr: bool) -> None:
        fd, partial, after_cr = stream.fileno(), b"", False
        try:
            while True:
                try:
                    chunk = os.read(fd, 65536)
                except OSError:
                    break
                if not chunk:
                    break
                data = partial + chunk
                hold = data.endswith(b"\r")  # maybe the first half of a \r\n: wait for the next byte
                parts = _LINE_END.split(data[:-1] if hold else data)
                partial = parts.pop() + (b"\r" if hold else b"")
                lines = []
                for text, end in zip(parts[::2], parts[1::2]):
                    # a progress update: ended by a lone \r, or drawn over one (tqdm's last bar)
                    lines.append((text, after_cr or end == b"\r"))
                    after_cr = end == b"\r"
                if len(partial) > MAX_LINE:
                    lines.append((partial, after_cr))
                    partial, after_cr = b"", False
                self._add(lines, is_stderr)
            if partial:
                self._add([(partial.rstrip(b"\r"), after_cr or partial.endswith(b"\r"))], is_stderr)
        finally:
            with contextlib.suppress(OSError):
                stream.close()

    def _add(self, raw: list[tuple[bytes, bool]], is_stderr: bool) -> None:
        lines = [(line.decode("utf-8", "replace").rstrip()[:MAX_LINE], progress) for line, progress in raw]
        now = time.time_ns()
        with self._lock:
            for line, progress in lines:
                if not line:
                    continue
                self.lines.append(line)
                if self.pending is not None:
                    self.pending.append((now, is_stderr, progress, line))
                if is_stderr and not progress:
                    self.last_stderr = line
                    self._follow_traceback(line)

    def _follow_traceback(self, line: str) -> None:
        """Python's traceback: its header, indented frames, then the exception's line."""
        if line.startswith("Traceback (most recent call last):"):
            self._in_traceback = True
        elif self._in_traceback and not line[:1].isspace():
            self.last_exception, self._in_traceback = line, False

    @property
    def reason(self) -> str | None:
        """Why the child failed, in its own words: the last traceback's exception line, else the
        last line of stderr."""
        with self._lock:
            return self.last_exception or self.last_stderr

    def take(self) -> list[tuple[int, bool, bool, str]]:
        """Every line read since the last take(), oldest first (with ``collect``; else none)."""
        with self._lock:
            if not self.pending:
                return []
            out, self.pending = self.pending, []
            return out

    def snapshot(self) -> tuple[str, ...]:
        with self._lock:
            return tuple(self.lines)

    def join(self, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        for thread in self._threads:
            thread.join(max(0.0, deadline - time.monotonic()))


class EventLines:
    """The events pipe, read by a daemon thread into a deque of lines, so the child never blocks
    on a full pipe whatever the consumer's pace (a paused view, a long interval). Bounded for a
    viewer (``maxlen``: older lines dropped and counted); unbounded for a recorder, which must
    lose no step and empties it every DRAIN_S (gputop.commands.record). ``follow(fd)`` reads one
    more descriptor (a connection to the events socket) into the same deque, on a thread of its
    own: lines stay whole, each from one process."""

    def __init__(self, fd: int, maxlen: int | None) -> None:
        self.lines: collections.deque[bytes] = collections.deque(maxlen=maxlen)
        self.dropped = 0  # lines lost unread: the deque was full, or a line was over MAX_LINE
        self._lock = threading.Lock()
        self._threads: list[threading.Thread] = []
        self.follow(fd)

    def follow(self, fd: int) -> None:
        thread = threading.Thread(target=self._read, args=(fd,), daemon=True, name="workload-events")
        with self._lock:
            self._threads.append(thread)
        thread.start()

    def _read(self, fd: int) -> None:
        partial = b""
        try:
            while True:
                try:
                    chunk = os.read(fd, 65536)
                except InterruptedError:
                    continue
                except OSError:
                    break
                if not chunk:  # every writer has closed it
                    break
                *lines, partial = (partial + chunk).split(b"\n")
                if len(partial) > MAX_LINE:
                    partial = b""
                    self._add([], dropped=1)
                self._add(lines)
            if partial.strip():  # a last line without its newline
                self._add([partial])
        finally:
            os.close(fd)

    def _add(self, lines: list[bytes], dropped: int = 0) -> None:
        with self._lock:
            self.dropped += dropped
            for line in lines:
                if len(self.lines) == self.lines.maxlen:
                    self.dropped += 1
                self.lines.append(line)

    def take(self) -> list[bytes]:
        with self._lock:
            out = list(self.lines)
            self.lines.clear()
            return out

    def join(self, timeout_s: float, followed_s: float | None = None) -> None:
        """Wait for the readers to reach the end of their input: the pipe's up to ``timeout_s``,
        the followed descriptors' (sockets: their writers have usually exited) up to
        ``followed_s`` where given."""
        start = time.monotonic()
        with self._lock:
            threads = list(self._threads)
        for i, thread in enumerate(threads):
            limit = timeout_s if i == 0 or followed_s is None else followed_s
            thread.join(max(0.0, start + limit - time.monotonic()))
