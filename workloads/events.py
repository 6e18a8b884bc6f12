"""Workload events: one JSON object a line, written for gputop to read.

Dependency-free on purpose (standard library only), so a user's own training script can copy this
file and report its progress to gputop the same way the bundled workloads do.

Where the events go is named by the environment:

- ``GPUTOP_EVENTS_FD=<int>``: a file descriptor the launcher left open for us (a pipe's write end).
  Used only if that descriptor is open and is a pipe: the variable is inherited through the
  environment by the script's own children, which do not get the descriptor (and may have
  something else of their own open under that number);
- ``GPUTOP_EVENTS_FILE=<path>``: a file, appended to (tests, recording by hand).

With neither set, every call is a cheap no-op, so a script run on its own behaves as usual.

Schema (every event carries ``"event"`` and ``"ts_ns"`` = ``time.time_ns()`` when it was written):

- ``start``: source ("events": reported by the workload itself; gputop's hooks in a launched
  script write ``"auto"``, see gputop/workload/inject), name, device, device_name, device_uuid (a CUDA device's UUID, or None),
  precision, batch_size, flops_per_step, peak_flops, peak_flops_source ("table" | "measured" |
  None), pid, plus optional extras (sample_unit, ...)
- ``step``: step (1-based index), samples (in this step), loss (float or None), wall_s (this
  step's wall time; the step ran from ``ts_ns - wall_s`` to ``ts_ns``). A step gputop detected
  has ``source: "auto"``, samples null where the batch could not be seen, and ``data_wait_s`` and
  ``waits`` ([[begin_ns, dur_ns], ...]) where the script iterates a DataLoader
- ``phase``: name, ph ("B" begin | "E" end), as in the Chrome trace format
- ``end``: steps (completed), status ("ok" | "error"), error (message, only when status is error)

Writing never raises: if the reader has gone away (BrokenPipeError, a closed descriptor, ...) the
writer turns itself off and the workload carries on. Each event is one ``os.write`` of a short
line (no Python buffering, so nothing is held back; lines under PIPE_BUF reach a pipe whole).
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import stat
import time
from typing import Any, Iterator, Mapping

ENV_FD = "GPUTOP_EVENTS_FD"
ENV_FILE = "GPUTOP_EVENTS_FILE"


def _clean(value: Any) -> Any:
    """Strict JSON has no NaN or Infinity: a non-finite float is written as null."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _num(value: Any) -> str:
    """A number as JSON text: null for None, NaN and infinities."""
    if value is None:
        return "null"
    value = float(value)
    return repr(value) if math.isfinite(value) else "null"


class EventWriter:
    """Writes workload events to a file descriptor; does nothing when it has none."""

    def __init__(self, fd: int | None = None, *, owns_fd: bool = False) -> None:
        self._fd = fd
        self._owns_fd = owns_fd

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> "EventWriter":
        env = os.environ if environ is None else environ
        fd_text = env.get(ENV_FD, "").strip()
        if fd_text:
            try:
                fd = int(fd_text)
                is_pipe = stat.S_ISFIFO(os.fstat(fd).st_mode)
            except (ValueError, OSError, OverflowError):
                return cls(None)
            return cls(fd if is_pipe else None)
        path = env.get(ENV_FILE, "").strip()
        if path:
            try:
                fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
            except OSError:
                return cls(None)
            return cls(fd, owns_fd=True)
        return cls(None)

    @property
    def enabled(self) -> bool:
        return self._fd is not None

    def emit(self, event: str, **fields: Any) -> bool:
        """Write one event; returns False (and stops for good) if it could not be written."""
        if self._fd is None:
            return False
        record = {"event": event}
        record.update((k, _clean(v)) for k, v in fields.items())
        record.setdefault("ts_ns", time.time_ns())
        try:
            data = (json.dumps(record, separators=(",", ":"), default=str) + "\n").encode()
        except (TypeError, ValueError):
            return False
        return self._write(data)

    def _write(self, data: bytes) -> bool:
        try:
            while data:
                written = os.write(self._fd, data)  # type: ignore[arg-type]
                data = data[written:]
        except (OSError, TypeError):  # BrokenPipeError, EBADF, ENOSPC...: reader gone; carry on
            self.close()
            return False
        return True

    # Convenience wrappers, one per event type -------------------------------------------------

    def start(self, **fields: Any) -> bool:
        fields.setdefault("pid", os.getpid())
        fields.setdefault("source", "events")  # gputop's own hooks say "auto" (steps detected)
        return self.emit("start", **fields)

    def step(self, step: int, samples: int, loss: float | None, wall_s: float, **extra: Any) -> bool:
        if self._fd is None:
            return False
        if extra or type(step) is not int or type(samples) is not int:
            return self.emit("step", step=step, samples=samples, loss=loss, wall_s=wall_s, **extra)
        # Fast path, the one event written every step: formatted by hand (a few times cheaper
        # than json.dumps); repr() of a finite float is valid JSON.
        return self._write(
            f'{{"event":"step","step":{step},"samples":{samples},"loss":{_num(loss)},'
            f'"wall_s":{_num(wall_s)},"ts_ns":{time.time_ns()}}}\n'.encode()
        )

    def phase_begin(self, name: str) -> bool:
        return self.emit("phase", name=name, ph="B")

    def phase_end(self, name: str) -> bool:
        return self.emit("phase", name=name, ph="E")

    @contextlib.contextmanager
    def phase(self, name: str) -> Iterator[None]:
        self.phase_begin(name)
        try:
            yield
        finally:
            self.phase_end(name)

    def end(self, steps: int, status: str = "ok", error: str | None = None) -> bool:
        fields: dict[str, Any] = {"steps": steps, "status": status}
        if error is not None:
            fields["error"] = error
        return self.emit("end", **fields)

    def close(self) -> None:
        fd, self._fd = self._fd, None
        if fd is not None and self._owns_fd:
            with contextlib.suppress(OSError):
                os.close(fd)
