"""Launch a workload (a bundled one or any script) under observation, read its events, stop it.

CONTRACT (written first so the launcher and the TUI's workload panel can be built side by side):
the TUI and ``gputop record --run`` only ever see ``WorkloadState`` snapshots from
``Workload.poll()``; they never touch the child process or its pipes.
"""

from __future__ import annotations

import bisect
import collections
import contextlib
import dataclasses
import json
import math
import os
import re
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from typing import Any, Mapping, Sequence


@dataclass(frozen=True, slots=True)
class WorkloadStep:
    """One ``step`` event: the step ran from ``ts_ns - wall_s`` to ``ts_ns`` (time.time_ns clock)."""

    step: int
    samples: int
    loss: float | None
    wall_s: float
    ts_ns: int
    joules: float | None = None  # energy of the devices it ran on during this step, where known


@dataclass(frozen=True, slots=True)
class WorkloadState:
    """What a launched workload has reported so far, and how its process stands.

    ``None`` means "not reported": a script that writes no events still has a name, pid, status,
    pids and output, and every achievement field is None (shown as n/a, never 0).
    """

    name: str  # "cnn" for a bundled workload, else the script's file name
    argv: tuple[str, ...]  # the full command line of the child
    pid: int | None  # the main process; also its process group id. None before it started
    status: str  # "running" | "ok" (exit 0) | "failed" (non-zero exit or end status error) | "stopped" (by gputop)
    returncode: int | None  # None while running; negative: killed by that signal
    started_ns: int  # time.time_ns() when launched
    ended_ns: int | None
    events: bool  # True once any event was read
    device: str | None  # "cpu", "cuda", "cuda:1"
    device_name: str | None
    precision: str | None
    batch_size: int | None
    sample_unit: str  # "samples", "images", "tokens" (from start's extras; default "samples")
    flops_per_step: float | None
    peak_flops: float | None
    peak_flops_source: str | None  # "table" | "measured" | None
    steps_planned: int | None
    step: int | None  # the last step reported
    samples_per_s: float | None  # over the recent steps (a sliding window of wall time)
    tflops: float | None  # flops_per_step / step wall time, in TFLOP/s
    mfu_pct: float | None  # achieved / peak_flops x 100
    loss: float | None  # the last loss reported
    losses: tuple[float, ...]  # recent losses, oldest first (for a sparkline)
    joules_per_step: float | None  # GPU energy delta (or CPU package energy on CPU) per step
    recent_steps: tuple[WorkloadStep, ...]  # the last steps, oldest first
    error: str | None  # the end event's error; on a crash, the last line of stderr
    pids: frozenset[int]  # the main process and its live descendants (data-loader workers)
    output_tail: tuple[str, ...]  # the last lines of stdout and stderr, interleaved as they came
    phase: str | None = None  # the innermost phase now under way ("setup", "measure_peak", ...)
    events_ignored: int = 0  # event lines malformed, of a kind not known, or dropped unread
    # seconds from the last step's end to this snapshot (to the end, once ended); None before the
    # first step. The rates above are over the last steps *reported*: a view can call them stale
    # when this is well above their step time (a hang, a long evaluation, a data-loader stall)
    last_step_age_s: float | None = None

    @property
    def running(self) -> bool:
        return self.status == "running"

    @property
    def elapsed_s(self) -> float:
        import time
        end = self.ended_ns if self.ended_ns is not None else time.time_ns()
        return max(0.0, (end - self.started_ns) / 1e9)


# ---------------------------------------------------------------------------------------------
# The launcher. Everything below may change; the two dataclasses above are the contract.


BUNDLED = ("cnn", "mlp", "transformer", "matmul")  # python -m gputop.workloads.<name>
ENV_FD = "GPUTOP_EVENTS_FD"  # the names in workloads/events.py (not imported: it is a script helper)
ENV_FILE = "GPUTOP_EVENTS_FILE"
OUTPUT_LINES = 200  # lines of stdout+stderr kept
RECENT_STEPS = 64  # steps kept in WorkloadState.recent_steps
RECENT_LOSSES = 120
RATE_WINDOW_S = 3.0  # samples_per_s etc. over the last steps adding up to this much step time
MAX_LINE = 65536  # an event or output line longer than this is cut (output) or dropped (events)
EVENT_LINES = 100_000  # event lines held between two polls; more are dropped (and counted)
PIDS_EVERY_S = 1.0  # the process tree is walked at most this often
CURVE_POINTS = 4096  # samples of energy kept (steps older than that keep what they were given)


class WorkloadError(Exception):
    """A workload that cannot be launched; the message is one line for the user."""


@dataclass(frozen=True, slots=True)
class WorkloadMark:
    """A non-step event, for a recorder: ``start``, ``end``, or ``phase`` (``ph`` "B"/"E")."""

    kind: str
    ts_ns: int
    name: str = ""
    ph: str = ""
    args: Mapping[str, Any] = dataclasses.field(default_factory=dict)


def resolve(target: str) -> tuple[str, tuple[str, ...]]:
    """(name, command) for ``target``: a bundled workload's name, or the path of a Python script.

    WorkloadError (one line) for a missing file, a directory, a script that does not compile
    (file:line) or a name that is neither a file nor a bundled workload."""
    if not target:
        raise WorkloadError(f"no workload given: name one of {', '.join(BUNDLED)}, or a Python script")
    if target in BUNDLED:  # a file of that name in the way is still reachable as ./cnn
        return target, (sys.executable, "-m", f"gputop.workloads.{target}")
    looks_like_path = os.sep in target or target.endswith(".py") or os.path.exists(target)
    if not looks_like_path:
        raise WorkloadError(f"unknown workload {target!r}: not a file, and not one of the bundled "
                            f"workloads ({', '.join(BUNDLED)})")
    if os.path.isdir(target):
        raise WorkloadError(f"{target} is a directory, not a Python script")
    try:
        with open(target, "rb") as f:
            source = f.read()
    except FileNotFoundError:
        raise WorkloadError(f"no such file: {target}") from None
    except OSError as exc:
        raise WorkloadError(f"cannot read {target}: {exc.strerror or exc}") from None
    try:
        compile(source, target, "exec", dont_inherit=True)
    except SyntaxError as exc:
        where = f"{target}:{exc.lineno}" if exc.lineno else target
        raise WorkloadError(f"{where}: syntax error: {exc.msg}") from None
    except ValueError as exc:  # null bytes: not a Python source file
        raise WorkloadError(f"{target} is not a Python script ({exc})") from None
    return os.path.basename(target), (sys.executable, target)


def _libc_prctl():
    """libc's prctl, loaded in the parent: nothing may be dlopen()ed between fork and exec."""
    if not sys.platform.startswith("linux"):
        return None
    import ctypes
    import ctypes.util

    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        return libc.prctl
    except (OSError, AttributeError):
        return None


_PR_SET_PDEATHSIG = 1
_PR_SET_CHILD_SUBREAPER = 36


def _child_setup(prctl: Any, parent: int) -> Any:
    """The preexec function: runs between fork and exec, so the prctl call and little else. The
    child has inherited gputop's Python SIGTERM handler (record's StopSignals, the TUI's), which
    would swallow the parent-death signal until exec: SIGTERM goes back to its default first."""
    sigterm = int(signal.SIGTERM)

    def in_child() -> None:
        signal.signal(sigterm, signal.SIG_DFL)
        if prctl is not None:
            prctl(_PR_SET_PDEATHSIG, sigterm, 0, 0, 0)
            if os.getppid() != parent:  # the parent died before prctl took effect
                os._exit(1)
    return in_child


def signal_name(number: int) -> str:
    """``SIGKILL`` for 9; ``signal 64`` for a number without a name."""
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"


_LINE_END = re.compile(rb"(\r\n|\r|\n)")


class _Output:
    """stdout and stderr of the child, read by two daemon threads into one bounded deque of lines
    (``\\r`` ends a line too, for progress bars); the last line of stderr that is not a progress
    update (a line ended by, or drawn after, a lone ``\\r``: a tqdm bar) is kept apart."""

    def __init__(self, maxlen: int) -> None:
        self.lines: collections.deque[str] = collections.deque(maxlen=maxlen)
        self.last_stderr: str | None = None
        self._lock = threading.Lock()
        self._threads: list[threading.Thread] = []

    def follow(self, stream: Any, is_stderr: bool) -> None:
        thread = threading.Thread(target=self._read, args=(stream, is_stderr), daemon=True,
                                  name=f"workload-{'stderr' if is_stderr else 'stdout'}")
        thread.start()
        self._threads.append(thread)

    def _read(self, stream: Any, is_stderr: bool) -> None:
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
        with self._lock:
            for line, progress in lines:
                if not line:
                    continue
                self.lines.append(line)
                if is_stderr and not progress:
                    self.last_stderr = line

    def snapshot(self) -> tuple[tuple[str, ...], str | None]:
        with self._lock:
            return tuple(self.lines), self.last_stderr

    def join(self, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        for thread in self._threads:
            thread.join(max(0.0, deadline - time.monotonic()))


class _EventLines:
    """The events pipe, read by a daemon thread into a deque of lines, so the child never blocks
    on a full pipe whatever the consumer's pace (a paused view, a long interval). Bounded for a
    viewer (``maxlen``: older lines dropped and counted); unbounded for a recorder, which must
    lose no step and empties it every DRAIN_S (gputop.record)."""

    def __init__(self, fd: int, maxlen: int) -> None:
        self.lines: collections.deque[bytes] = collections.deque(maxlen=maxlen)
        self.dropped = 0  # lines lost unread: the deque was full, or a line was over MAX_LINE
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._read, args=(fd,), daemon=True,
                                        name="workload-events")
        self._thread.start()

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

    def join(self, timeout_s: float) -> None:
        self._thread.join(timeout_s)


def _number(value: Any, *, positive: bool = False) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return None
    if positive and value <= 0:
        return None
    return float(value)


def _int(value: Any, low: int = 0) -> int | None:
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        return None
    return value


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def _gpu_uuid(uuid: str) -> str:
    """NVML's spelling of a GPU UUID ("GPU-" and lower case; torch gives it without "GPU-")."""
    uuid = uuid.strip().lower()
    return uuid if uuid.startswith(("gpu-", "mig-")) else "gpu-" + uuid


def _visible_gpu(device: str | None, env: Mapping[str, str]) -> tuple[str, str] | None:
    """The NVML device a child's ``cuda``/``cuda:N`` is: ("index", "2") or ("uuid", "GPU-..."),
    through CUDA_VISIBLE_DEVICES; None where it cannot be told (MIG, an odd list, not cuda)."""
    if device is None or not (device == "cuda" or device.startswith("cuda:")):
        return None
    try:
        ordinal = int(device.partition(":")[2] or 0)
    except ValueError:
        return None
    visible = env.get("CUDA_VISIBLE_DEVICES")
    if visible is None:
        return "index", str(ordinal)
    entries = [e.strip() for e in visible.split(",")]
    if ordinal >= len(entries) or not entries[ordinal]:
        return None
    entry = entries[ordinal]
    if entry.isdigit():
        return "index", entry
    if entry.startswith("GPU-"):
        return "uuid", entry
    return None


class Workload:
    """A workload launched under observation: start(), poll() as often as you like, stop().

    The child runs ``sys.executable`` in its own session and process group (so one signal reaches
    it and every process it spawned), with a pipe for its events (GPUTOP_EVENTS_FD) and its
    stdout/stderr captured. On Linux it asks the kernel for SIGTERM when its parent goes away
    (PR_SET_PDEATHSIG), so even a SIGKILLed gputop leaves no orphan behind. The kernel sends that
    signal when the *thread* that forked the child exits, so call ``start()`` from the main thread
    (or a thread that lives as long as gputop). gputop also makes itself a child subreaper, so a
    grandchild orphaned by the workload comes back to it and is reaped (where init does not reap,
    as in some containers, it would otherwise stay a zombie in the group).

    ``poll()`` does not block: it takes the events that reader threads have collected, reaps the
    process and returns a WorkloadState (once, when the process has just exited, it waits up to
    0.25 s for the last lines, which only take that long when a grandchild still holds a pipe).
    The pipes are drained by threads whatever the caller's pace, so the child never blocks on a
    write. A recorder (``collect=True``) also calls ``drain()`` for every step and mark since its
    last call.
    """

    def __init__(self, target: str, args: Sequence[str] = (), *, env: Mapping[str, str] | None = None,
                 cwd: str | None = None, output_lines: int = OUTPUT_LINES,
                 keep_steps: int = RECENT_STEPS, collect: bool = False,
                 clock_ns: Any = time.time_ns) -> None:
        self.name, command = resolve(target)
        self.argv: tuple[str, ...] = (*command, *args)
        self._env = dict(os.environ if env is None else env)
        self._cwd = cwd
        self._clock_ns = clock_ns
        self._output = _Output(output_lines)
        self._lock = threading.RLock()
        self.proc: subprocess.Popen | None = None
        self._events: _EventLines | None = None
        self._started_ns = 0
        self._ended_ns: int | None = None
        self._stopped = False
        self._group_gone = False  # stop() saw the whole group gone: never signal that pgid again
        self._start: dict[str, Any] = {}
        self._end: dict[str, Any] | None = None
        self._events_read = 0
        self.events_ignored = 0  # lines that were not a valid event, and events of unknown kinds
        self._steps: collections.deque[WorkloadStep] = collections.deque(maxlen=max(1, keep_steps))
        self._losses: collections.deque[float] = collections.deque(maxlen=RECENT_LOSSES)
        self._collect = collect  # keep every step and mark for drain() (a recorder)
        # a recorder loses nothing: unbounded, and emptied by each drain() (record drains every
        # DRAIN_S whatever its --interval); a viewer keeps no pending items at all
        self._pending: collections.deque[WorkloadStep | WorkloadMark] = collections.deque()
        self.pending_dropped = 0  # items drain() never saw (kept for the recorder's report: 0)
        self._phases: list[str] = []
        self._early: collections.deque[Any] = collections.deque(maxlen=64)  # samples before start
        self._curve: list[tuple[int, float]] = []  # (ts_ns, cumulative joules) of the device
        self._last_gpu_reading: Any = None  # the GpuSample last put on the curve
        self._pids: frozenset[int] = frozenset()
        self._pids_at = -math.inf
        self._state: WorkloadState | None = None

    resolve = staticmethod(resolve)

    # ---- launching --------------------------------------------------------------------------

    @property
    def pid(self) -> int | None:
        return None if self.proc is None else self.proc.pid

    @property
    def pgid(self) -> int | None:
        return self.pid  # start_new_session: the child leads its own group

    def start(self) -> WorkloadState:
        """Launch the child (once). WorkloadError if it cannot be executed."""
        with self._lock:
            if self.proc is not None or self._stopped:
                raise RuntimeError("a Workload is started once")
            prctl = _libc_prctl()
            if prctl is not None:  # orphaned grandchildren come back to us, to be reaped
                prctl(_PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
            read_fd, write_fd = os.pipe()
            env = dict(self._env)
            env.pop(ENV_FILE, None)
            env[ENV_FD] = str(write_fd)
            env.setdefault("PYTHONUNBUFFERED", "1")  # output as it is printed, not in 8 KiB blocks
            in_child = _child_setup(prctl, os.getpid())
            self._started_ns = self._clock_ns()
            try:
                self.proc = subprocess.Popen(
                    self.argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                    stderr=subprocess.PIPE, pass_fds=(write_fd,), start_new_session=True,
                    preexec_fn=in_child, env=env, cwd=self._cwd)
            except (OSError, subprocess.SubprocessError) as exc:
                os.close(read_fd)
                reason = getattr(exc, "strerror", None) or exc
                raise WorkloadError(f"cannot start {' '.join(self.argv[:3])}: {reason}") from None
            finally:
                os.close(write_fd)
            self._events = _EventLines(read_fd, None if self._collect else EVENT_LINES)
            self._output.follow(self.proc.stdout, is_stderr=False)
            self._output.follow(self.proc.stderr, is_stderr=True)
            self._pids = frozenset({self.proc.pid})
            return self._snapshot()

    # ---- reading ----------------------------------------------------------------------------

    def poll(self, sample: Any = None) -> WorkloadState:
        """What the workload has reported, now; never blocks. ``sample`` (a gputop Sample)
        feeds the energy per step."""
        with self._lock:
            self._read_events()
            if sample is not None:
                self._add_energy(sample)
            if self.proc is not None and self._ended_ns is None and self.proc.poll() is not None:
                self._finish()
            self._refresh_pids()
            return self._snapshot()

    @property
    def state(self) -> WorkloadState:
        with self._lock:
            return self._state if self._state is not None else self._snapshot()

    def drain(self) -> list[WorkloadStep | WorkloadMark]:
        """Every step and mark read since the last drain(), oldest first (for a recorder; needs
        ``Workload(..., collect=True)``)."""
        if not self._collect:
            raise RuntimeError("drain() needs Workload(..., collect=True)")
        with self._lock:
            self._read_events()
            out = list(self._pending)
            self._pending.clear()
            return out

    def _read_events(self) -> None:
        if self._events is None:
            return
        for line in self._events.take():
            self._event(line)

    def _event(self, line: bytes) -> None:
        if not line.strip():
            return
        try:
            record = json.loads(line)
        except ValueError:
            self.events_ignored += 1
            return
        if not isinstance(record, dict):
            self.events_ignored += 1
            return
        kind, ts_ns = record.get("event"), _int(record.get("ts_ns"), 1)
        handled = False
        if ts_ns is not None:
            if kind == "step":
                handled = self._on_step(record, ts_ns)
            elif kind == "start":
                handled = self._on_start(record, ts_ns)
            elif kind == "phase":
                handled = self._on_phase(record, ts_ns)
            elif kind == "end":
                handled = self._on_end(record, ts_ns)
        if handled:
            self._events_read += 1
        else:
            self.events_ignored += 1

    def _on_step(self, e: dict, ts_ns: int) -> bool:
        step, samples, wall = _int(e.get("step")), _int(e.get("samples")), _number(e.get("wall_s"))
        loss = e.get("loss")
        if step is None or samples is None or wall is None or wall < 0:
            return False
        if loss is not None and _number(loss) is None:
            return False
        step_ = WorkloadStep(step=step, samples=samples, loss=_number(loss), wall_s=wall, ts_ns=ts_ns)
        self._steps.append(step_)
        if step_.loss is not None:
            self._losses.append(step_.loss)
        self._pend(step_)
        return True

    def _on_start(self, e: dict, ts_ns: int) -> bool:
        self._start = {
            "device": _text(e.get("device")), "device_name": _text(e.get("device_name")),
            "device_uuid": _text(e.get("device_uuid")),
            "precision": _text(e.get("precision")), "batch_size": _int(e.get("batch_size"), 1),
            "sample_unit": _text(e.get("sample_unit")) or "samples",
            "flops_per_step": _number(e.get("flops_per_step"), positive=True),
            "peak_flops": _number(e.get("peak_flops"), positive=True),
            "peak_flops_source": e.get("peak_flops_source") if e.get("peak_flops_source") in ("table", "measured") else None,
            "steps_planned": _int(e.get("steps_planned"), 1),
        }
        self._pend(WorkloadMark("start", ts_ns, name=self.name, args={
            k: v for k, v in self._start.items() if v is not None}))
        return True

    def _on_phase(self, e: dict, ts_ns: int) -> bool:
        name, ph = _text(e.get("name")), e.get("ph")
        if name is None or ph not in ("B", "E"):
            return False
        if ph == "B":
            self._phases.append(name)
        elif name in self._phases:
            del self._phases[len(self._phases) - 1 - self._phases[::-1].index(name)]
        self._pend(WorkloadMark("phase", ts_ns, name=name, ph=ph))
        return True

    def _on_end(self, e: dict, ts_ns: int) -> bool:
        status = e.get("status")
        if status not in ("ok", "error"):
            return False
        error = e.get("error") if isinstance(e.get("error"), str) else None
        self._end = {"status": status, "error": error, "steps": _int(e.get("steps"))}
        args = {"status": status, **({"error": error} if error else {})}
        self._pend(WorkloadMark("end", ts_ns, name=self.name, args=args))
        return True

    def _pend(self, item: WorkloadStep | WorkloadMark) -> None:
        if not self._collect:
            return
        if len(self._pending) == self._pending.maxlen:
            self.pending_dropped += 1
        self._pending.append(item)

    # ---- the process ------------------------------------------------------------------------

    def _finish(self) -> None:
        """The main process has exited (and was reaped by poll/wait): collect what is left."""
        self._ended_ns = self._clock_ns()
        # its last lines and events: there at once, unless a grandchild holds the pipes
        self._output.join(0.25)
        if self._events is not None:
            self._events.join(0.25)
        self._read_events()
        self._reap_group()
        # nothing of the group left: its pgid may be handed to an unrelated group from now on,
        # so stop() must never signal it
        self._group_gone = not self._group_alive()

    def _reap_group(self) -> None:
        """Reap members of the workload's group that were orphaned and came back to us."""
        pgid = self.pgid
        if pgid is None:
            return
        while True:
            try:
                pid, _ = os.waitpid(-pgid, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return

    def _group_alive(self) -> bool:
        try:
            os.killpg(self.pgid, 0)  # type: ignore[arg-type]
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True

    def _refresh_pids(self) -> None:
        if self.proc is None:
            return
        if self._ended_ns is not None:
            self._pids = frozenset()
            return
        now = time.monotonic()
        if now - self._pids_at < PIDS_EVERY_S:
            return
        from gputop.sources.cpu import process_tree  # psutil lives there

        self._pids_at = now
        self._pids = process_tree(self.proc.pid) or frozenset({self.proc.pid})

    def stop(self, grace_s: float = 3.0) -> WorkloadState:
        """SIGTERM to the whole group, SIGKILL after ``grace_s``, reap. Idempotent; a workload
        still running when called ends with status "stopped". The waiting is done without the
        lock, so poll() from another thread (the TUI's event loop) carries on meanwhile."""
        with self._lock:
            proc = self.proc
            if proc is None:
                self._stopped = True
                return self._snapshot()
            if self._ended_ns is None and proc.poll() is None:
                self._stopped = True
            elif self._ended_ns is None:  # exited since the last poll(): see what is left of it
                self._finish()
            if self._group_gone:
                self._pids = frozenset()
                return self._snapshot()
            self._signal_group(signal.SIGTERM)
        if not self._wait_group(grace_s):
            self._signal_group(signal.SIGKILL)
            proc.wait()
            self._wait_group(2.0)
        with self._lock:
            if self._ended_ns is None:
                self._finish()
            self._reap_group()
            if self._events is not None:
                self._events.join(1.0)
            self._read_events()
            self._pids = frozenset()
            self._group_gone = not self._group_alive()
            return self._snapshot()

    def _wait_group(self, timeout_s: float) -> bool:
        """Wait until the main process has exited and the group is empty; True if it did.
        Group members are reaped only once Popen has reaped the main process (waitpid(-pgid)
        would otherwise take its exit status away from Popen)."""
        deadline = time.monotonic() + timeout_s
        while True:
            if self.proc is not None and self.proc.poll() is not None:
                self._reap_group()
                if not self._group_alive():
                    return True
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.02)

    def _signal_group(self, sig: int) -> None:
        if self._group_gone:  # the pgid is no longer the workload's
            return
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.pgid, sig)  # type: ignore[arg-type]

    def __enter__(self) -> Workload:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ---- energy -----------------------------------------------------------------------------

    def _reading(self, sample: Any) -> tuple[int, float | None, bool] | None:
        """(ts_ns, value, is_power) for the workload's device in ``sample``; None where the device
        is not one whose energy can be read (not yet known, mps, a MIG slice...). CPU: the package
        power (each reading the mean since the previous tick). GPU: the energy counter."""
        device = self._start.get("device")
        if device == "cpu":
            return sample.ts_ns, sample.cpu.cpu_power_w, True
        uuid = self._start.get("device_uuid")
        # The device's own UUID, where the workload says it, is the sure match: a CUDA ordinal
        # follows CUDA_DEVICE_ORDER (fastest first by default), NVML's index the PCI bus order.
        key = ("uuid", _gpu_uuid(uuid)) if isinstance(uuid, str) and uuid else _visible_gpu(device, self._env)
        if key is None:
            return None
        for gpu in getattr(sample, "gpus", ()):
            if key == ("index", str(gpu.info.index)) or (
                    key[0] == "uuid" and gpu.info.uuid and gpu.info.uuid.lower().startswith(key[1].lower())):
                if gpu is self._last_gpu_reading:  # not read again since (GPUs: every ~0.1 s):
                    return None  # its time is the sample that first carried it
                self._last_gpu_reading = gpu
                return sample.ts_ns, None if gpu.lost else gpu.energy_j, False
        return sample.ts_ns, None, False

    def _add_energy(self, sample: Any) -> None:
        """Extend the cumulative-joules curve: samples seen before the start event (which names
        the device) wait in a small buffer. A gap (no reading) restarts the curve."""
        if not self._start:
            self._early.append(sample)
            return
        for s in (*self._early, sample):
            self._extend_curve(s)
        self._early.clear()

    def _extend_curve(self, sample: Any) -> None:
        reading = self._reading(sample)
        if reading is None:
            return
        ts, value, is_power = reading
        curve = self._curve
        if value is None or (curve and ts <= curve[-1][0]):
            curve.clear()
            return
        if not is_power:
            curve.append((ts, value))
        elif not curve:
            curve.append((ts, 0.0))  # the first power reading is for the time before: a start
        else:
            curve.append((ts, curve[-1][1] + value * (ts - curve[-1][0]) / 1e9))
        if len(curve) > 2 * CURVE_POINTS:
            del curve[:-CURVE_POINTS]

    def _at(self, ts: int) -> float:
        curve = self._curve
        hi = bisect.bisect_right(curve, ts, key=lambda point: point[0])
        hi = min(max(hi, 1), len(curve) - 1)
        (t0, e0), (t1, e1) = curve[hi - 1], curve[hi]
        return e0 + (e1 - e0) * (ts - t0) / (t1 - t0)

    def _with_joules(self) -> None:
        """Give each recent step without energy its share, once the curve covers the step
        (linear between samples: a step shorter than the interval gets the interval's mean
        power times its wall time)."""
        curve = self._curve
        if len(curve) < 2:
            return
        first, last = curve[0][0], curve[-1][0]
        for i, s in enumerate(self._steps):
            if s.joules is not None:
                continue
            begin = s.ts_ns - int(s.wall_s * 1e9)
            if first <= begin and s.ts_ns <= last:
                joules = self._at(s.ts_ns) - self._at(begin)
                if joules >= 0:  # a counter that went back (driver reload) is no measurement
                    self._steps[i] = dataclasses.replace(s, joules=joules)

    # ---- the snapshot -----------------------------------------------------------------------

    def _status(self) -> tuple[str, str | None]:
        proc = self.proc
        if proc is None:
            return ("stopped" if self._stopped else "running"), None
        if self._ended_ns is None:
            return "running", None
        end = self._end or {}
        _, last_stderr = self._output.snapshot()
        if self._stopped:
            return "stopped", None
        if end.get("status") == "error":
            return "failed", end.get("error") or last_stderr or "the workload reported an error"
        rc = proc.returncode
        if rc == 0:
            return "ok", None
        if rc is not None and rc < 0:  # its last words (a progress bar, a log line) are not why
            return "failed", f"killed by {signal_name(-rc)}"
        return "failed", last_stderr or f"exit code {rc}"

    def _window(self) -> list[WorkloadStep]:
        """The recent steps the rates are taken over: the last ones adding up to RATE_WINDOW_S
        of step time, leaving out step 1 (allocation, autotuning, compiling) once there are more."""
        steps = [s for s in self._steps if s.step != 1] or list(self._steps)
        window, total = [], 0.0
        for s in reversed(steps):
            if window and total >= RATE_WINDOW_S:
                break
            window.append(s)
            total += s.wall_s
        return window

    def _snapshot(self) -> WorkloadState:
        self._with_joules()
        status, error = self._status()
        start = self._start
        window = self._window()
        wall = sum(s.wall_s for s in window)
        samples_per_s = tflops = mfu = None
        if window and wall > 0:
            samples_per_s = sum(s.samples for s in window) / wall
            if start.get("flops_per_step"):
                rate = start["flops_per_step"] * len(window) / wall
                tflops = rate / 1e12
                if start.get("peak_flops"):
                    mfu = 100.0 * rate / start["peak_flops"]
        energies = [s.joules for s in window if s.joules is not None]
        output, _ = self._output.snapshot()
        last = self._steps[-1] if self._steps else None
        now_ns = self._ended_ns if self._ended_ns is not None else self._clock_ns()
        proc = self.proc
        self._state = WorkloadState(
            name=self.name, argv=self.argv, pid=None if proc is None else proc.pid, status=status,
            returncode=None if proc is None else proc.returncode,
            started_ns=self._started_ns, ended_ns=self._ended_ns, events=self._events_read > 0,
            device=start.get("device"), device_name=start.get("device_name"),
            precision=start.get("precision"), batch_size=start.get("batch_size"),
            sample_unit=start.get("sample_unit") or "samples",
            flops_per_step=start.get("flops_per_step"), peak_flops=start.get("peak_flops"),
            peak_flops_source=start.get("peak_flops_source"),
            steps_planned=start.get("steps_planned"),
            step=None if last is None else last.step,
            samples_per_s=samples_per_s, tflops=tflops, mfu_pct=mfu,
            loss=None if last is None else last.loss, losses=tuple(self._losses),
            joules_per_step=sum(energies) / len(energies) if energies else None,
            recent_steps=tuple(self._steps), error=error, pids=self._pids,
            output_tail=output, phase=self._phases[-1] if self._phases else None,
            events_ignored=self.events_ignored + (self._events.dropped if self._events else 0),
            last_step_age_s=None if last is None else max(0.0, (now_ns - last.ts_ns) / 1e9),
        )
        return self._state
