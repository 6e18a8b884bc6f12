"""Chrome trace event files: a streaming, crash-safe writer and a forgiving reader.

The file is the JSON Array Format of the Trace Event Format, one event per line::

    [{"ph":"M","name":"gputop",...}        <- header: settings, host, version, GpuInfo of each device
    ,{"ph":"M","name":"process_name",...}
    ,{"ph":"C","name":"sm_active_pct","pid":10000001,"tid":10000001,"ts":1712345678901234.567,"args":{"%":87.5}}
    ...
    ]

Why this shape (the viewers' own rules):

- A bare array, not ``{"traceEvents": [...]}``: Perfetto accepts a bare array that ends without
  its ``]`` (json_trace_tokenizer.cc: end of file while ``kInsideTraceEventsArray`` with format
  ``kOnlyTraceEvents`` is OK; google/perfetto#926), and chrome://tracing's importer appends the
  ``]`` itself when the text starts with ``[`` (catapult trace_event_importer: strip a trailing
  comma and newlines, add ``]``). The object form has no such allowance in either.
- The comma goes *before* each event after the first, never after: a file cut between lines is
  then valid JSON once a ``]`` is added, with no trailing comma (Perfetto accepts a trailing comma
  only since google/perfetto#1822; catapult strips one). A clean close appends ``]``: strict JSON.
- A cut inside an event: Perfetto's tokenizer keeps waiting for the rest of the object and drops
  it at end of file; ``load`` here does the same. Each sample is written with one ``os.write`` to
  an ``O_APPEND`` descriptor (no user-space buffer), so a SIGKILL leaves whole lines.
- Counters (``ph: "C"``): Perfetto makes one track per arg, named ``"<name> <arg key>"``, and
  counts a non-numeric arg as a parse failure; so every counter has exactly one numeric arg. The
  name is the catalogue's metric name (``core3.core_util_pct`` for a core), the key its unit
  (``value`` where it has none): track ``"sm_active_pct %"``. A ``None`` is no event (a gap),
  never 0; NaN and infinities are not JSON and are skipped too. The CPU's counters are written
  at every sample; a GPU's only at samples that read it (about every 0.1 s at most, see
  gputop.sampler): a GPU with no counter at a sample's ``ts`` keeps its last values, which is
  also how Perfetto draws a counter track (a step held until the next value). A read where no
  value at all answered is an instant ``GPU k: no values`` (cat ``gputop.empty``) instead, so
  that it reads as n/a, not as the values before. Likewise the
  CPU's RAM, load and per-core clocks (re-read every 0.5 s) are written only when they changed,
  all together with ``ram_total_bytes``: a sample without it keeps the last ones.
- One pid per device, far above real pids (pid 0 is the idle task to Perfetto): CPU 10,000,000,
  GPU k 10,000,001 + k; tid = pid. Metadata events carry no ``ts`` (Perfetto allows that only for
  ``ph: "M"``). Throttle changes and a lost GPU are thread-scoped instants (``ph: "i"``, ``s: "t"``).
- ``ts`` is microseconds from ``time.time_ns()`` written with all three decimals, so the reader
  gets the exact nanoseconds back; ASCII only (``ensure_ascii``), so a cut never splits a character.
- A launched workload (``record --run``) is a process of its own, on its real pid, but never on
  tid = pid: that is the main thread of a PyTorch profiler trace of the same process (Kineto),
  which ``gputop merge`` puts beside it. Its steps are complete events (``ph: "X"``, name
  ``step``, ``args.step``, ``args.wall_s``) on the thread ``steps`` (tid = STEPS_TID_BASE + pid),
  from ``ts_ns - wall_s`` to ``ts_ns``; a step that starts before the previous one ended is drawn
  from that end (slices on one thread must nest) and keeps its true ``wall_s`` in ``args``; one
  that ends before the previous one did cannot be drawn and is an instant ``step`` with the same
  args. Its phases are ``B``/``E`` pairs on the thread ``phases`` (tid = PHASE_TID_BASE + pid:
  phase ``compile`` wraps step 1, which would not nest on one thread), kept nested by the writer
  (an ``E`` closes the innermost ``B`` of its name and any opened inside it, an ``E`` with no
  ``B`` is left out, phases still open when the workload ends are closed then). start, end (the
  workload's own word) and exit (how its process ended: status, returncode, error, stopped_by)
  are instants on the steps thread; ``samples_per_s``, ``tflops``, ``mfu_pct``,
  ``joules_per_step`` and ``step`` are counters at each sample, ``loss`` one at each step. The
  header's ``workload`` names its pid, name and argv.
"""

from __future__ import annotations

import json
import math
import os
import socket
from dataclasses import dataclass, field, fields
from decimal import Decimal, InvalidOperation
from typing import Any, Iterable, Mapping, Sequence

from gputop import __version__, metrics
from gputop import format as fmt
from gputop.model import CpuSample, GpuInfo, GpuSample, Sample, to_dict
from gputop.workload import WorkloadStep, signal_name

TRACE_VERSION = 2  # 2: a GPU's counters only when read, RAM/load/core clocks only when changed
READS_VERSIONS = (1, 2)  # version 1 wrote every counter at every sample: it reads the same way
HEADER = "gputop"  # name of the metadata event that marks a gputop trace and carries its settings
CPU_PID = 10_000_000
GPU_PID_BASE = 10_000_001
CAT_CLOCKS = "gputop.clocks"
CAT_LOST = "gputop.lost"
CAT_EMPTY = "gputop.empty"  # a GPU read that gave no value at all (not "not read": see to_samples)
CAT_WORKLOAD = "gputop.workload"
PHASE_TID_BASE = 20_000_000  # the workload's phases thread: above real tids and gputop's own pids
STEPS_TID_BASE = 30_000_000  # the workload's steps thread (pids stay below 2**22 on Linux)
WORKLOAD_SORT_INDEX = 1000  # the workload's process after the devices
_WORKLOAD_TICK = ("step", "samples_per_s", "tflops", "mfu_pct", "joules_per_step")

_CPU_SCALARS = tuple(m for m in metrics.CPU_METRICS if metrics.metric(m).scope == "cpu")
# Read every few ticks and carried between (gputop.sources.cpu): written only when they changed,
# always together, ram_total_bytes among them (the reader's sign that the group was written).
_CPU_SLOW = ("ram_used_bytes", "ram_total_bytes", "load1")
_CPU_FAST = tuple(m for m in _CPU_SCALARS if m not in _CPU_SLOW)
_CPU_PER_CORE = tuple(m for m in metrics.CPU_METRICS if metrics.metric(m).scope == "core")
# core utilization last: see TraceWriter._sample_lines
_CPU_PER_CORE_LAST = tuple(sorted(_CPU_PER_CORE, key=lambda m: m == "core_util_pct"))
_GPU_COUNTERS = tuple(m for m in metrics.GPU_METRICS if metrics.metric(m).kind != "info")


class TraceError(Exception):
    """A file that is not a readable gputop trace; the message is one line for the user."""


def gpu_pid(index: int) -> int:
    return GPU_PID_BASE + index


def counter_name(metric: str, core: int | None = None) -> str:
    """The counter event's name: the catalogue name, prefixed ``core<i>.`` for a per-core metric."""
    return metric if core is None else f"core{core}.{metric}"


def counter_key(metric: str) -> str:
    """The counter's one arg key, which Perfetto appends to the track name: the metric's unit."""
    return metrics.metric(metric).unit or "value"


def _ts(ts_ns: int) -> str:
    """Microseconds with exactly three decimals: no float rounding on the way out."""
    return f"{ts_ns // 1000}.{ts_ns % 1000:03d}"


def _number(value: Any) -> str | None:
    """A JSON number, or None where the value is missing or not a finite number. (On the hot
    path of a 100 Hz recording: the exact types the model holds are tested first.)"""
    kind = type(value)
    if kind is float:
        return repr(value) if value - value == 0.0 else None  # NaN and infinities are not JSON
    if kind is int:
        return str(value)
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, int):
        return str(int(value))
    if isinstance(value, float):
        return repr(float(value)) if math.isfinite(value) else None
    return None


def _dumps(obj: Any) -> str:
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=True, allow_nan=False)


def dumps_event(obj: Any) -> str:
    """An event read by ``load`` written back exactly: a number keeps the text it was read from
    (json.dumps would round ``ts`` through a float and lose the nanoseconds)."""
    if isinstance(obj, _RawNumber):
        return obj.text
    if isinstance(obj, dict):
        return "{" + ",".join(f"{_dumps(str(k))}:{dumps_event(v)}" for k, v in obj.items()) + "}"
    if isinstance(obj, (list, tuple)):
        return "[" + ",".join(dumps_event(v) for v in obj) + "]"
    return _dumps(obj)


def _meta(name: str, pid: int, args: Mapping[str, Any]) -> dict[str, Any]:
    return {"ph": "M", "name": name, "pid": pid, "tid": pid, "args": dict(args)}


def header_events(first: Sample, settings: Mapping[str, Any] | None = None,
                  host: str | None = None,
                  workload: Mapping[str, Any] | None = None) -> list[dict[str, Any]]:
    """The metadata that opens a trace: gputop's header, then names and order of each device
    (and of a launched workload: ``{"pid", "name", "argv"}``)."""
    host = socket.gethostname() if host is None else host
    cores = len(first.cpu.core_util_pct)
    gpus = []
    for gpu in first.gpus:
        gpus.append({"pid": gpu_pid(gpu.info.index), **to_dict(gpu.info)})
    header = {
        "trace_version": TRACE_VERSION,
        "gputop_version": __version__,
        "host": host,
        "start_ns": first.ts_ns,
        "cpu_cores": cores,
        "cpu_pid": CPU_PID,
        "gpus": gpus,
        "gpu_unavailable": first.gpu_unavailable,
        "settings": dict(settings or {}),
    }
    if workload is not None:
        header["workload"] = dict(workload)
    events = [
        _meta(HEADER, CPU_PID, header),
        _meta("process_name", CPU_PID, {"name": f"CPU ({host}, {cores} cores)"}),
        _meta("process_sort_index", CPU_PID, {"sort_index": 0}),
        _meta("thread_name", CPU_PID, {"name": "CPU"}),
    ]
    for gpu in first.gpus:
        pid, info = gpu_pid(gpu.info.index), gpu.info
        events += [
            _meta("process_name", pid, {"name": f"GPU {info.index}: {info.name}"}),
            _meta("process_sort_index", pid, {"sort_index": 1 + info.index}),
            _meta("thread_name", pid, {"name": f"GPU {info.index}"}),
        ]
    if workload is not None:
        pid = workload["pid"]
        events += [
            _meta("process_name", pid, {"name": f"workload {workload['name']}"}),
            _meta("process_sort_index", pid, {"sort_index": WORKLOAD_SORT_INDEX}),
            {**_meta("thread_name", pid, {"name": "steps"}), "tid": steps_tid(pid)},
            {**_meta("thread_name", pid, {"name": "phases"}), "tid": phase_tid(pid)},
        ]
    return events


def phase_tid(pid: int) -> int:
    return PHASE_TID_BASE + pid


def steps_tid(pid: int) -> int:
    return STEPS_TID_BASE + pid


class _Counters:
    """Pre-built line prefixes: one counter line is three string joins, no json.dumps."""

    def __init__(self) -> None:
        self._prefix: dict[tuple[int, str], tuple[str, str]] = {}
        self._rows: dict[tuple[Any, ...], list[Any]] = {}

    def parts(self, pid: int, name: str, metric: str) -> tuple[str, str]:
        parts = self._prefix.get((pid, name))
        if parts is None:
            head = f',{{"ph":"C","name":{_dumps(name)},"pid":{pid},"tid":{pid},"ts":'
            tail = f',"args":{{{_dumps(counter_key(metric))}:'
            parts = self._prefix[(pid, name)] = (head, tail)
        return parts

    def line(self, pid: int, name: str, metric: str, ts: str, value: str) -> str:
        head, tail = self.parts(pid, name, metric)
        return f"{head}{ts}{tail}{value}}}}}\n"

    def rows(self, pid: int, metrics_: tuple[str, ...]) -> list[tuple[str, str, str]]:
        """(metric, head, tail) of each of ``metrics_`` on ``pid``, built once."""
        rows = self._rows.get((pid, metrics_))
        if rows is None:
            rows = self._rows[(pid, metrics_)] = [(m, *self.parts(pid, m, m)) for m in metrics_]
        return rows

    def core_rows(self, metric: str, cores: int) -> list[tuple[str, str]]:
        """(head, tail) of ``metric`` on each of ``cores`` cores, built once."""
        rows = self._rows.get((CPU_PID, metric, cores))
        if rows is None:
            rows = self._rows[(CPU_PID, metric, cores)] = [
                self.parts(CPU_PID, counter_name(metric, core), metric) for core in range(cores)]
        return rows


def _append_counters(out: list[str], rows: list[tuple[str, str, str]], values: Any, ts: str) -> None:
    """One line per row whose value (an attribute of ``values``) is a finite number."""
    for metric, head, tail in rows:
        text = _number(getattr(values, metric))
        if text is not None:
            out.append(f"{head}{ts}{tail}{text}}}}}\n")


class TraceWriter:
    """Appends samples to a trace file; ``close()`` adds the ``]`` that makes it strict JSON.

    ``create`` opens the file at once (so an unwritable path fails before any sampling); the
    header goes out with the first sample, whose GpuInfo it records.
    """

    def __init__(self, fd: int, path: str, settings: Mapping[str, Any] | None = None,
                 host: str | None = None) -> None:
        self.path = path
        self.settings = dict(settings or {})
        self.host = host
        self.samples = 0
        self.bytes_written = 0
        self._fd: int | None = fd
        self._counters = _Counters()
        self._reasons: dict[int, Any] = {}
        self._lost: dict[int, bool] = {}
        self._gpus: dict[int, GpuSample] = {}  # the reading each GPU's counters were last written from
        self._cpu_slow: tuple | None = None  # RAM, load and core clocks as last written
        self.workload: dict[str, Any] | None = None
        self.workload_steps = 0
        self.steps_trimmed = 0  # drawn from the previous step's end (args.wall_s keeps the truth)
        self.steps_out_of_order = 0  # ended before the previous step: written as instants
        self.phases_unmatched = 0  # an E with no open B of its name: left out
        self._step_end_ns = 0  # the last step's end: a step never starts before it (nesting)
        self._phases: list[str] = []  # names of the open phases, innermost last
        self._phase_ns = 0  # the last B or E written
        self._last_ns = 0  # the latest ts written: open phases are closed there at close()

    @classmethod
    def create(cls, path: str, *, force: bool = False, settings: Mapping[str, Any] | None = None,
               host: str | None = None) -> TraceWriter:
        """Open ``path`` for a new trace: FileExistsError if it exists (unless ``force``),
        another OSError where it cannot be written."""
        flags = os.O_WRONLY | os.O_CREAT | os.O_APPEND | getattr(os, "O_CLOEXEC", 0)
        flags |= os.O_TRUNC if force else os.O_EXCL
        fd = os.open(path, flags, 0o644)
        return cls(fd, path, settings, host)

    @property
    def closed(self) -> bool:
        return self._fd is None

    def set_workload(self, pid: int, name: str, argv: Sequence[str] = ()) -> None:
        """Name the launched workload's process; before the first sample (metadata comes first)."""
        if self.samples:
            raise ValueError("set_workload() must come before the first sample")
        self.workload = {"pid": int(pid), "name": str(name), "argv": [str(a) for a in argv]}

    def write_workload(self, items: Iterable[Any], state: Any = None, ts_ns: int | None = None) -> None:
        """The workload's steps and marks (``Workload.drain()``) and, with ``state`` and the
        sample's ``ts_ns``, its counters at that time. Nothing before the first sample (the
        header has to come first) and nothing without ``set_workload``."""
        if self.workload is None or self.samples == 0:
            return
        lines = list(self._workload_lines(items))
        if state is not None and ts_ns is not None:
            pid, ts = self.workload["pid"], _ts(ts_ns)
            for m in _WORKLOAD_TICK:
                value = _number(getattr(state, m, None))
                if value is not None:
                    lines.append(self._counters.line(pid, m, m, ts, value))
        if lines:
            self._write("".join(lines))

    def write_workload_exit(self, state: Any, ts_ns: int, **extra: Any) -> None:
        """How the workload's process ended (after ``stop()``): phases still open are closed, then
        an instant ``exit`` with the final WorkloadState facts (status, returncode, error,
        stopped_by_gputop, steps) and ``extra`` (``stopped_by``, events lost) where not None."""
        if self.workload is None or self.samples == 0:
            return
        ts_ns = max(ts_ns, self._last_ns)
        rc = getattr(state, "returncode", None)
        args: dict[str, Any] = {
            "status": state.status, "returncode": rc, "error": state.error,
            "stopped_by_gputop": state.status == "stopped", "steps": state.step}
        if isinstance(rc, int) and rc < 0:
            args["signal"] = signal_name(-rc)
        for count in ("steps_trimmed", "steps_out_of_order", "phases_unmatched"):
            args[count] = getattr(self, count) or None
        args.update(extra)
        args = {k: v for k, v in args.items() if v is not None and _plain_json(v)}
        pid = self.workload["pid"]
        lines = list(self._close_phases(ts_ns))
        lines.append(_instant(CAT_WORKLOAD, "exit", pid, _ts(ts_ns), args, tid=steps_tid(pid)))
        self._write("".join(lines))

    def _close_phases(self, ts_ns: int, down_to: int = 0) -> Iterable[str]:
        """E for every open phase above ``down_to`` on the stack, innermost first."""
        pid = self.workload["pid"]  # type: ignore[index]
        while len(self._phases) > down_to:
            yield self._phase_line("E", self._phases.pop(), pid, ts_ns)

    def _phase_line(self, ph: str, name: str, pid: int, ts_ns: int) -> str:
        """One B or E; never earlier than the one before on the thread (a child's clock that
        stepped back would otherwise reorder them and break the nesting)."""
        ts_ns = self._phase_ns = max(ts_ns, self._phase_ns)
        self._last_ns = max(self._last_ns, ts_ns)
        body = _dumps({"ph": ph, "cat": CAT_WORKLOAD, "name": name, "pid": pid, "tid": phase_tid(pid)})
        return f',{{"ts":{_ts(ts_ns)},{body[1:]}\n'

    def _workload_lines(self, items: Iterable[Any]) -> Iterable[str]:
        pid = self.workload["pid"]  # type: ignore[index]
        tid = steps_tid(pid)
        for item in items:
            kind = getattr(item, "kind", "step")
            if kind == "step":
                end = item.ts_ns
                begin = end - max(0, round(item.wall_s * 1e9))
                args = {"step": item.step, "samples": item.samples, "wall_s": item.wall_s}
                if item.loss is not None:
                    args["loss"] = item.loss
                args = {k: v for k, v in args.items() if _plain_json(v)}
                self._last_ns = max(self._last_ns, end)
                if end < self._step_end_ns:  # ended before the previous step: no nested slice
                    self.steps_out_of_order += 1
                    yield _instant(CAT_WORKLOAD, "step", pid, _ts(end), args, tid=tid)
                else:
                    if begin < self._step_end_ns:
                        self.steps_trimmed += 1
                        begin = self._step_end_ns
                    self._step_end_ns = end
                    yield (f',{{"ph":"X","cat":"{CAT_WORKLOAD}","name":"step","pid":{pid},'
                           f'"tid":{tid},"ts":{_ts(begin)},"dur":{_ts(end - begin)},'
                           f'"args":{_dumps(args)}}}\n')
                loss = _number(item.loss)
                if loss is not None:
                    yield self._counters.line(pid, "loss", "loss", _ts(end), loss)
                self.workload_steps += 1
            elif kind == "phase":
                if item.ph == "B":
                    self._phases.append(item.name)
                    yield self._phase_line("B", item.name, pid, item.ts_ns)
                elif item.name in self._phases:  # closes it and whatever was opened inside it
                    at = len(self._phases) - 1 - self._phases[::-1].index(item.name)
                    yield from self._close_phases(item.ts_ns, down_to=at)
                else:
                    self.phases_unmatched += 1
            elif kind in ("start", "end"):
                args = {k: v for k, v in dict(item.args).items() if _plain_json(v)}
                self._last_ns = max(self._last_ns, item.ts_ns)
                yield _instant(CAT_WORKLOAD, kind, pid, _ts(item.ts_ns), args, tid=tid)

    def write_sample(self, sample: Sample) -> None:
        self._last_ns = max(self._last_ns, sample.ts_ns)
        lines = []
        if self.samples == 0:
            head = header_events(sample, self.settings, self.host, self.workload)
            lines.append("[" + _dumps(head[0]) + "\n")
            lines.extend("," + _dumps(e) + "\n" for e in head[1:])
        lines.extend(self._sample_lines(sample))
        self._write("".join(lines))
        self.samples += 1

    def _sample_lines(self, sample: Sample) -> list[str]:
        """GPUs first, the CPU last, ending with every core's utilization: the reader needs
        those to call a sample complete, so a cut inside a sample drops the whole sample."""
        ts = _ts(sample.ts_ns)
        out: list[str] = []
        rows = self._counters.rows
        for gpu in sample.gpus:
            pid = gpu_pid(gpu.info.index)
            if gpu is self._gpus.get(pid):  # not read again since the last sample: nothing new
                continue
            self._gpus[pid] = gpu
            if gpu.lost != self._lost.get(pid, False):
                self._lost[pid] = gpu.lost
                name = f"GPU {gpu.info.index} lost" if gpu.lost else f"GPU {gpu.info.index} answering"
                out.append(_instant(CAT_LOST, name, pid, ts, {"lost": gpu.lost}))
            if gpu.lost:
                continue
            before = len(out)
            _append_counters(out, rows(pid, _GPU_COUNTERS), gpu, ts)
            if len(out) == before:  # read, and nothing answered: say so, or it would read as carried
                out.append(_instant(CAT_EMPTY, f"GPU {gpu.info.index}: no values", pid, ts, {}))
            reasons = gpu.clock_event_reasons
            if pid not in self._reasons or reasons != self._reasons[pid]:
                self._reasons[pid] = reasons
                args = {} if reasons is None else {"clock_event_reasons": ",".join(reasons)}
                name = "clocks: n/a" if reasons is None else (
                    f"clocks held: {fmt.reasons(reasons)}" if reasons else "clocks: not held")
                out.append(_instant(CAT_CLOCKS, name, pid, ts, args))
        cpu = sample.cpu
        _append_counters(out, rows(CPU_PID, _CPU_FAST), cpu, ts)
        slow = (cpu.ram_used_bytes, cpu.ram_total_bytes, cpu.load1, cpu.core_freq_mhz)
        per_core = _CPU_PER_CORE_LAST
        if slow != self._cpu_slow:  # read again and changed (the host re-reads them every 0.5 s)
            self._cpu_slow = slow
            _append_counters(out, rows(CPU_PID, _CPU_SLOW), cpu, ts)
        else:
            per_core = ("core_util_pct",)
        for m in per_core:
            values = getattr(cpu, m)
            for (head, tail), value in zip(self._counters.core_rows(m, len(values)), values):
                text = _number(value)
                if text is not None:
                    out.append(f"{head}{ts}{tail}{text}}}}}\n")
        return out

    def _write(self, text: str) -> None:
        if self._fd is None:
            raise ValueError(f"trace {self.path} is closed")
        data = text.encode("ascii")
        view = memoryview(data)
        while view:  # one write in practice; a short write (disk full) continues where it stopped
            n = os.write(self._fd, view)
            view = view[n:]
        self.bytes_written += len(data)

    def close(self) -> None:
        """Finish the file with ``]`` (strict JSON from here on) and close it. Idempotent.

        A trace closed before its first sample gets no ``]``: it stays empty, and ``load``
        says so, rather than a bare ``]`` that no viewer reads."""
        if self._fd is None:
            return
        try:
            if self.samples:
                if self._phases:  # a recording stopped while a phase was under way
                    self._write("".join(self._close_phases(self._last_ns)))
                self._write("]\n")
        finally:
            fd, self._fd = self._fd, None
            os.close(fd)

    def __enter__(self) -> TraceWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _plain_json(value: Any) -> bool:
    """A value that strict JSON can hold as is (no NaN, no objects of other types)."""
    if value is None or isinstance(value, (str, bool, int)):
        return True
    return isinstance(value, float) and math.isfinite(value)


def _instant(cat: str, name: str, pid: int, ts: str, args: Mapping[str, Any],
             tid: int | None = None) -> str:
    """A thread-scoped instant event line; ``ts`` goes in as its exact pre-formatted text."""
    body = _dumps({"ph": "i", "s": "t", "cat": cat, "name": name, "pid": pid,
                   "tid": pid if tid is None else tid, "args": dict(args)})
    return f',{{"ts":{ts},{body[1:]}\n'


class _RawNumber(float):
    """A parsed JSON float that remembers its source text, so ``ts`` converts to exact ns."""

    __slots__ = ("text",)

    def __new__(cls, text: str) -> _RawNumber:
        self = super().__new__(cls, text)
        self.text = text
        return self



# ---------------------------------------------------------------------------------------------
# Reading


@dataclass(frozen=True)
class Trace:
    """A loaded trace: every complete event, the header, and whether the file was closed cleanly."""

    path: str
    header: dict[str, Any]
    events: tuple[dict[str, Any], ...]
    complete: bool  # the closing ] was there: the recording finished cleanly
    gpus: tuple[GpuInfo, ...] = field(default=())

    @property
    def version(self) -> int:
        return self.header["trace_version"]

    @property
    def settings(self) -> dict[str, Any]:
        return self.header.get("settings") or {}

    @property
    def gpu_unavailable(self) -> str | None:
        return self.header.get("gpu_unavailable")

    def samples(self) -> list[Sample]:
        """The recording as model Samples, one per sample timestamp, oldest first."""
        return to_samples(self)

    @property
    def workload(self) -> dict[str, Any] | None:
        """The launched workload (``pid``, ``name``, ``argv``) of a ``record --run``, else None."""
        workload = self.header.get("workload")
        return workload if isinstance(workload, dict) and isinstance(workload.get("pid"), int) else None

    def workload_steps(self) -> list[WorkloadStep]:
        """The workload's steps, in order (empty without a workload)."""
        return workload_steps(self)

    def workload_mark(self, kind: str) -> dict[str, Any] | None:
        """The ``args`` of the workload's ``start``, ``end`` or ``exit`` instant, or None if not
        recorded."""
        workload = self.workload
        for event in self.events:
            if (event.get("ph") == "i" and event.get("cat") == CAT_WORKLOAD and event.get("name") == kind
                    and workload is not None and event.get("pid") == workload["pid"]):
                args = event.get("args")
                return _plain(args) if isinstance(args, dict) else {}
        return None

    def workload_counter(self, metric: str) -> list[float]:
        """Every value of one of the workload's counters (``samples_per_s``, ...), in file order."""
        workload = self.workload
        if workload is None:
            return []
        out = []
        for event in self.events:
            if event.get("ph") == "C" and event.get("pid") == workload["pid"] and event.get("name") == metric:
                parsed = _counter(event)
                if parsed is not None:
                    out.append(parsed[2])
        return out


def _exact_float(text: str) -> _RawNumber:
    return _RawNumber(text)


_DECODER = json.JSONDecoder(parse_float=_exact_float)


def load(path: str | os.PathLike) -> Trace:
    """Read a gputop trace, complete or cut off at any byte.

    A cut file yields every complete event before the cut. TraceError (one line) for a file
    that cannot be read, is empty, is not JSON, is not a trace or not gputop's, or has a
    trace version this gputop does not know.
    """
    path = os.fspath(path)
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as exc:
        raise TraceError(f"cannot read {path}: {exc.strerror or exc}") from None
    return parse(data, path)


def parse(data: bytes | str, name: str = "<trace>") -> Trace:
    """``load`` for text already in memory; ``name`` stands for the file in messages."""
    text = data.decode("utf-8", errors="replace") if isinstance(data, bytes) else data
    events, complete = _events(name, text)
    return _trace(name, events, complete)


def _events(path: str, text: str) -> tuple[list[dict[str, Any]], bool]:
    start = len(text) - len(text.lstrip())
    if start == len(text):
        raise TraceError(f"{path} is empty (the recording stopped before its first sample?)")
    if text[start] == "{":
        return _object_form(path, text), True
    if text[start] != "[":
        try:
            json.loads(text)
        except ValueError:
            raise TraceError(f"{path} is not JSON (a trace starts with '[')") from None
        raise TraceError(f"{path} is JSON but not a trace (not an array of events)")
    events: list[dict[str, Any]] = []
    pos, end = start + 1, len(text)
    while True:
        pos = _skip_space(text, pos)
        if pos < end and text[pos] == ",":
            pos = _skip_space(text, pos + 1)
        if pos >= end:
            return events, False  # cut off: no closing ]
        if text[pos] == "]":
            if text[pos + 1:].strip():
                raise TraceError(f"{path} is not JSON: data after the closing ']'")
            return events, True
        try:
            event, pos = _DECODER.raw_decode(text, pos)
        except json.JSONDecodeError as exc:
            if "\n" in text[pos:].rstrip():  # more lines follow: damage, not a cut
                raise TraceError(f"{path} is not JSON at line {exc.lineno}: {exc.msg}") from None
            return events, False  # the last event was cut off mid-way
        if not isinstance(event, dict):
            raise TraceError(f"{path} is JSON but not a trace: event {len(events)} is not an object")
        events.append(event)


def _skip_space(text: str, pos: int) -> int:
    end = len(text)
    while pos < end and text[pos] in " \t\r\n":
        pos += 1
    return pos


def _object_form(path: str, text: str) -> list[dict[str, Any]]:
    try:
        doc = json.loads(text, parse_float=_exact_float)
    except ValueError:
        raise TraceError(f"{path} is not JSON (or is an object-form trace cut off, which cannot "
                         "be read)") from None
    events = doc.get("traceEvents") if isinstance(doc, dict) else None
    if not isinstance(events, list) or not all(isinstance(e, dict) for e in events):
        raise TraceError(f"{path} is JSON but not a trace (no traceEvents array)")
    return events


def _trace(path: str, events: list[dict[str, Any]], complete: bool) -> Trace:
    header = next((e for e in events if e.get("ph") == "M" and e.get("name") == HEADER), None)
    if header is None:
        if not events:
            raise TraceError(f"{path} ends before gputop's header (cut off before the first sample)")
        raise TraceError(f"{path} is a trace, but not gputop's (no '{HEADER}' metadata event)")
    args = header.get("args")
    if not isinstance(args, dict) or "trace_version" not in args:
        raise TraceError(f"{path}: gputop header without a trace_version")
    version = args["trace_version"]
    if isinstance(version, bool) or version not in READS_VERSIONS:
        raise TraceError(f"{path} is gputop trace version {version!r}; this gputop "
                         f"({__version__}) reads versions {', '.join(map(str, READS_VERSIONS))}")
    raw_gpus = args.get("gpus") or []
    if not isinstance(raw_gpus, list) or not all(isinstance(g, dict) for g in raw_gpus):
        raise TraceError(f"{path}: unreadable GPU description in the header (gpus is not a list "
                         "of objects)")
    try:
        gpus = tuple(_gpu_info(g) for g in raw_gpus)
    except (TypeError, ValueError) as exc:
        raise TraceError(f"{path}: unreadable GPU description in the header ({exc})") from None
    return Trace(path=path, header=_plain(args), events=tuple(events), complete=complete, gpus=gpus)


_INFO_FIELDS = {f.name for f in fields(GpuInfo)}


def _gpu_info(doc: Mapping[str, Any]) -> GpuInfo:
    known = {k: _plain(v) for k, v in doc.items() if k in _INFO_FIELDS}
    return GpuInfo(**known)


def _plain(value: Any) -> Any:
    """Parsed numbers as plain floats, recursively (the reader's exact floats are a subclass)."""
    if isinstance(value, _RawNumber):
        return float(value)
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


def ts_ns(value: Any) -> int | None:
    """An event's ``ts`` (microseconds) as integer nanoseconds, exactly where it was written so."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    if isinstance(value, int):
        return value * 1000
    text = value.text if isinstance(value, _RawNumber) else repr(value)
    try:
        return int((Decimal(text) * 1000).to_integral_value())
    except (InvalidOperation, ValueError, OverflowError):
        return None


def workload_steps(trace: Trace) -> list[WorkloadStep]:
    """The ``step`` slices on the workload's pid, back as WorkloadSteps (``ts_ns`` = the end)."""
    workload = trace.workload
    if workload is None:
        return []
    pid, steps = workload["pid"], []
    for event in trace.events:
        ph = event.get("ph")
        if event.get("pid") != pid or event.get("cat") != CAT_WORKLOAD or event.get("name") != "step":
            continue
        if ph == "X":  # drawn from begin for dur; args.wall_s (where written) is its true length
            begin, dur = ts_ns(event.get("ts")), ts_ns(event.get("dur"))
            end = None if begin is None or dur is None else begin + dur
        elif ph == "i":  # a step that could not be drawn: at its end, with args.wall_s
            end, dur = ts_ns(event.get("ts")), None
        else:
            continue
        args = event.get("args")
        if end is None or not isinstance(args, dict):
            continue
        step, samples, loss, wall = args.get("step"), args.get("samples"), args.get("loss"), args.get("wall_s")
        if not isinstance(step, int) or not isinstance(samples, int):
            continue
        loss = float(loss) if isinstance(loss, (int, float)) and not isinstance(loss, bool) else None
        if isinstance(wall, (int, float)) and not isinstance(wall, bool) and math.isfinite(wall) and wall >= 0:
            wall_s = float(wall)
        elif dur is not None:
            wall_s = dur / 1e9
        else:
            continue
        steps.append(WorkloadStep(step=step, samples=samples, loss=loss, wall_s=wall_s, ts_ns=end))
    steps.sort(key=lambda s: s.ts_ns)
    return steps


# ---------------------------------------------------------------------------------------------
# Back to model Samples


@dataclass
class _Group:
    cpu: dict[str, Any] = field(default_factory=dict)
    cores: dict[str, dict[int, Any]] = field(default_factory=dict)
    gpus: dict[int, dict[str, Any]] = field(default_factory=dict)
    changes: list[tuple[int, str, Any]] = field(default_factory=list)  # (pid, what, value)


def _counter(event: Mapping[str, Any]) -> tuple[str, int | None, Any] | None:
    """(metric, core or None, value) of one of gputop's counters, or None for anything else."""
    name, args = event.get("name"), event.get("args")
    if not isinstance(name, str) or not isinstance(args, dict) or len(args) != 1:
        return None
    (value,) = args.values()
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    core = None
    if name.startswith("core") and "." in name:
        index, _, name = name.partition(".")
        if not index[4:].isdigit():
            return None
        core = int(index[4:])
    if name not in metrics.CATALOGUE:
        return None
    return name, core, _plain(value)


def to_samples(trace: Trace) -> list[Sample]:
    """Rebuild one Sample per timestamp: counters by pid and name, GpuInfo from the header,
    throttle reasons and lost state carried forward from their instants. A GPU with no counter
    at a timestamp was not read then (GPUs are read about every 0.1 s at most, the CPU at every
    sample): its last counters are carried forward. Otherwise a metric with no event at a
    timestamp is None. A timestamp whose CPU part is incomplete (a cut inside the last sample)
    is left out."""
    gpu_by_pid = {gpu_pid(info.index): info for info in trace.gpus}
    cores = trace.header.get("cpu_cores")
    groups: dict[int, _Group] = {}
    for event in trace.events:
        ph, pid = event.get("ph"), event.get("pid")
        if ph not in ("C", "i") or (pid != CPU_PID and pid not in gpu_by_pid):
            continue
        at = ts_ns(event.get("ts"))
        if at is None:
            continue
        group = groups.get(at)
        if group is None:
            group = groups[at] = _Group()
        if ph == "C":
            parsed = _counter(event)
            if parsed is None:
                continue
            metric, core, value = parsed
            if pid == CPU_PID:
                if core is None:
                    group.cpu[metric] = value
                else:
                    group.cores.setdefault(metric, {})[core] = value
            else:
                group.gpus.setdefault(pid, {})[metric] = value
        elif event.get("cat") == CAT_CLOCKS:
            raw = (event.get("args") or {}).get("clock_event_reasons")
            reasons = None if raw is None else tuple(r for r in str(raw).split(",") if r)
            group.changes.append((pid, "reasons", reasons))
        elif event.get("cat") == CAT_EMPTY:  # read at this timestamp, every value n/a
            group.gpus.setdefault(pid, {})
        elif event.get("cat") == CAT_LOST:
            group.changes.append((pid, "lost", bool((event.get("args") or {}).get("lost"))))

    reasons: dict[int, tuple[str, ...] | None] = {}
    lost: dict[int, bool] = {}
    carried: dict[int, dict[str, Any]] = {}  # each GPU's counters as last written
    slow: tuple[dict[str, Any], dict[int, Any]] | None = None  # RAM, load, core clocks as last written
    out: list[Sample] = []
    for at in sorted(groups):
        group = groups[at]
        for pid, what, value in group.changes:
            (reasons if what == "reasons" else lost)[pid] = value
        if "ram_total_bytes" in group.cpu:  # the slow group was written here (else: carried)
            slow = ({m: group.cpu.get(m) for m in _CPU_SLOW}, group.cores.get("core_freq_mhz", {}))
        cpu = _cpu_sample(group, cores, slow)
        if cpu is None:
            continue
        gpus = []
        for pid, info in gpu_by_pid.items():
            if lost.get(pid):
                gpus.append(GpuSample(info, lost=True))
                continue
            values = group.gpus.get(pid)
            if values is None:  # not read at this sample (GPUs: about every 0.1 s at most)
                values = carried.get(pid, {})
            carried[pid] = values
            gpus.append(GpuSample(info, clock_event_reasons=reasons.get(pid),
                                  **{m: values.get(m) for m in _GPU_COUNTERS}))
        out.append(Sample(ts_ns=at, cpu=cpu, gpus=tuple(gpus), gpu_unavailable=trace.gpu_unavailable))
    return out


def _cpu_sample(group: _Group, cores: int | None,
                slow: tuple[dict[str, Any], dict[int, Any]] | None) -> CpuSample | None:
    """The CPU at one timestamp: its own counters, and RAM, load and core clocks as last written
    (at this timestamp or before). None where incomplete."""
    cpu = group.cpu
    util = group.cores.get("core_util_pct", {})
    n = cores if isinstance(cores, int) else len(util)
    if cpu.get("cpu_util_pct") is None or len(util) < n or slow is None:
        return None
    scalars, freq = slow
    if scalars["ram_used_bytes"] is None or scalars["ram_total_bytes"] is None:
        return None
    return CpuSample(
        cpu_util_pct=cpu["cpu_util_pct"],
        core_util_pct=tuple(util[i] for i in range(n)),
        core_freq_mhz=tuple(freq.get(i) for i in range(n)),
        cpu_power_w=cpu.get("cpu_power_w"),
        ram_used_bytes=scalars["ram_used_bytes"],
        ram_total_bytes=scalars["ram_total_bytes"],
        load1=scalars["load1"],
    )
