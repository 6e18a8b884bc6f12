"""The trace format's schema: version, pids and tids, categories, the counters written, how
a value becomes JSON text (and back, exactly), and a run of counter lines as written, taken apart
(``CounterRun``: ``stream`` makes it, ``decode`` reads it). The format itself is described in
docs/trace-format.md; the writer, reader and decoder beside this module follow it."""

from __future__ import annotations

import json
import math
from typing import Any, Mapping, NamedTuple

from gputop import metrics

TRACE_VERSION = 2  # 2: a GPU's counters only when read, RAM/load/core clocks only when changed
READS_VERSIONS = (1, 2)  # version 1 wrote every counter at every sample: it reads the same way
HEADER = "gputop"  # name of the metadata event that marks a gputop trace and carries its settings
CPU_PID = 10_000_000
GPU_PID_BASE = 10_000_001
CAT_CLOCKS = "gputop.clocks"
CAT_LOST = "gputop.lost"
CAT_DRIVER = "gputop.driver"  # at the end: the recorder's own driver time (ms/s, calls/s); decoders pass it by
CAT_EMPTY = "gputop.empty"  # a GPU read that gave no value at all (not "not read": see to_samples)
CAT_WORKLOAD = "gputop.workload"
PHASE_TID_BASE = 20_000_000  # the workload's phases thread: above real tids and gputop's own pids
STEPS_TID_BASE = 30_000_000  # the workload's steps thread (pids stay below 2**22 on Linux)
WORKLOAD_SORT_INDEX = 1000  # the workload's process after the devices
WORKLOAD_TICK = ("step", "samples_per_s", "tflops", "mfu_pct", "joules_per_step")

CPU_SCALARS = tuple(m for m in metrics.CPU_METRICS if metrics.metric(m).scope == "cpu")
# Read every few ticks and carried between (gputop.sources.cpu): written only when they changed,
# always together, ram_total_bytes among them (the reader's sign that the group was written).
CPU_SLOW = ("ram_used_bytes", "ram_total_bytes", "load1")
CPU_FAST = tuple(m for m in CPU_SCALARS if m not in CPU_SLOW)
CPU_PER_CORE = tuple(m for m in metrics.CPU_METRICS if metrics.metric(m).scope == "core")
# core utilization last: see TraceWriter._sample_lines
CPU_PER_CORE_LAST = tuple(sorted(CPU_PER_CORE, key=lambda m: m == "core_util_pct"))
GPU_COUNTERS = tuple(m for m in metrics.GPU_METRICS if metrics.metric(m).kind != "info")


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


def ts_text(ts_ns: int) -> str:
    """Microseconds with exactly three decimals: no float rounding on the way out."""
    return f"{ts_ns // 1000}.{ts_ns % 1000:03d}"


def number_text(value: Any) -> str | None:
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


def dumps(obj: Any) -> str:
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=True, allow_nan=False)


def dumps_event(obj: Any) -> str:
    """An event read by ``load`` written back exactly: a number keeps the text it was read from
    (json.dumps would round ``ts`` through a float and lose the nanoseconds)."""
    if isinstance(obj, RawNumber):
        return obj.text
    if isinstance(obj, dict):
        return "{" + ",".join(f"{dumps(str(k))}:{dumps_event(v)}" for k, v in obj.items()) + "}"
    if isinstance(obj, (list, tuple)):
        return "[" + ",".join(dumps_event(v) for v in obj) + "]"
    return dumps(obj)


def phase_tid(pid: int) -> int:
    return PHASE_TID_BASE + pid


def steps_tid(pid: int) -> int:
    return STEPS_TID_BASE + pid


def meta(name: str, pid: int, args: Mapping[str, Any]) -> dict[str, Any]:
    return {"ph": "M", "name": name, "pid": pid, "tid": pid, "args": dict(args)}


def plain_json(value: Any) -> bool:
    """A value that strict JSON can hold as is (no NaN, no objects of other types)."""
    if value is None or isinstance(value, (str, bool, int)):
        return True
    return isinstance(value, float) and math.isfinite(value)


def instant(cat: str, name: str, pid: int, ts: str, args: Mapping[str, Any], tid: int | None = None) -> str:
    """A thread-scoped instant event line; ``ts`` goes in as its exact pre-formatted text."""
    body = dumps({"ph": "i", "s": "t", "cat": cat, "name": name, "pid": pid, "tid": pid if tid is None else tid, "args": dict(args)})
    return f',{{"ts":{ts},{body[1:]}\n'


class RawNumber(float):
    """A parsed JSON float that remembers its source text, so ``ts`` converts to exact ns."""

    __slots__ = ("text",)
    text: str

    def __new__(cls, text: str) -> RawNumber:
        self = super().__new__(cls, text)
        self.text = text
        return self


def exact_float(text: str) -> RawNumber:
    return RawNumber(text)


def plain(value: Any) -> Any:
    """Parsed numbers as plain floats, recursively (the reader's exact floats are a subclass)."""
    if isinstance(value, RawNumber):
        return float(value)
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [plain(v) for v in value]
    return value


class CounterRun(NamedTuple):
    """Consecutive counter lines in the writer's own shape, taken apart by ``bytes.split`` on
    ``,"`` (in C, a whole run at once: five pieces a line): the pieces of line ``i`` are
    ``names[i]`` (as in ``b'name":"power_w"'``), ``pids[i]`` (``b'pid":10000001'``), ``stamps[i]``
    (``b'ts":1712345678901234.567'``) and ``values[i]`` (``b'args":{"W":412.5}}'``, and the next
    line's ``\\n,{"ph":"C"`` but on the last line; ``decode.value_text`` finds the number)."""

    offset: int  # of the first line
    text: bytes  # the lines themselves, joined by newlines (no newline at the end)
    lines: int  # how many
    names: list[bytes]
    pids: list[bytes]
    stamps: list[bytes]
    values: list[bytes]
