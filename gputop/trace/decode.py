"""A trace's events back into model Samples: ``SampleDecoder`` (one ``Sample`` per sample
timestamp, GPU counters carried between reads, the CPU's slow group carried between changes),
fed parsed events or a stream's CounterRuns; and how one event's fields read (``ts_ns``,
``counter_value``). Over a whole loaded Trace it is ``recording.to_samples``."""

from __future__ import annotations

import dataclasses
import operator
from decimal import Decimal, InvalidOperation
from typing import Any, Callable, Mapping, Sequence

from gputop import metrics
from gputop.model import CpuSample, GpuInfo, GpuSample, Sample
from gputop.trace.schema import (
    CAT_CLOCKS,
    CAT_EMPTY,
    CAT_LOST,
    CPU_PID,
    CPU_SLOW,
    GPU_COUNTERS,
    CounterRun,
    RawNumber,
    gpu_pid,
    plain,
)


def ts_ns(value: Any) -> int | None:
    """An event's ``ts`` (microseconds) as integer nanoseconds, exactly where it was written so."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    if isinstance(value, int):
        return value * 1000
    text = value.text if isinstance(value, RawNumber) else repr(value)
    try:
        ns = int((Decimal(text) * 1000).to_integral_value())
    except (InvalidOperation, ValueError, OverflowError):
        return None
    return ns if 0 <= ns < MAX_TS_NS else None  # 1e400: no time a sample was taken at


MAX_TS_NS = 2**63  # time.time_ns() until the year 2262


class _Group:
    """One timestamp's events, as they are read (a plain class: one is made per sample)."""

    __slots__ = ("cpu", "cores", "gpus", "changes")

    def __init__(self) -> None:
        self.cpu: dict[str, Any] = {}
        self.cores: dict[str, dict[int, Any]] = {}
        self.gpus: dict[int, dict[str, Any]] = {}
        self.changes: list[tuple[int, str, Any]] = []  # (pid, what, value)

    def __deepcopy__(self, memo: dict[int, Any]) -> _Group:
        out = _Group()
        out.cpu, out.changes = dict(self.cpu), list(self.changes)
        out.cores = {k: dict(v) for k, v in self.cores.items()}
        out.gpus = {k: dict(v) for k, v in self.gpus.items()}
        return out


def counter_value(event: Mapping[str, Any]) -> tuple[str, int | None, Any] | None:
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
    return name, core, plain(value)


# GpuSample's fields after info and lost, up to processes (left at None): its counters
# (GPU_COUNTERS) and, at _REASONS_AT, the throttle reasons (from their instants)
_GPU_ARGS = tuple(f.name for f in dataclasses.fields(GpuSample))[2:-1]
_REASONS_AT = _GPU_ARGS.index("clock_event_reasons")
assert set(_GPU_ARGS) == {*GPU_COUNTERS, "clock_event_reasons"}
WINDOW = 64  # timestamps held open at once while streaming: a sample's events are written together
_CPU, _CORE, _GPU, _OTHER = 0, 1, 2, 3
_NONE: frozenset[int] = frozenset()


class SampleDecoder:
    """Samples from a trace's events as they come (``event`` for a parsed event, ``run`` for a
    stream's CounterRun); each call returns the samples it completed, ``finish`` the rest.

    Events are grouped by timestamp; a timestamp is complete once ``window`` newer ones have
    been seen (the writer writes a sample's events together, so this is exact for gputop's
    files; ``window=None`` holds every one until ``finish``). An event for a timestamp already
    given out is counted in ``late`` and left out. Events on other pids (a launched workload's)
    go to ``on_event`` / ``on_counter`` where given."""

    def __init__(
        self,
        gpus: Sequence[GpuInfo],
        cores: Any,
        gpu_unavailable: str | None,
        *,
        window: int | None = WINDOW,
        on_event: Callable[[dict[str, Any]], None] | None = None,
        on_counter: Callable[[int, str, int, Any], None] | None = None,
    ) -> None:
        self.gpu_by_pid = {gpu_pid(info.index): info for info in gpus}
        self.cores = cores if isinstance(cores, int) and not isinstance(cores, bool) else None
        self.gpu_unavailable = gpu_unavailable
        self.window = window
        self.on_event, self.on_counter = on_event, on_counter
        self.late = 0
        self.unreadable = 0  # time stamps that are no time (1e400): their events left out
        self._groups: dict[int, _Group] = {}
        self._done_ns: int | None = None  # the newest timestamp given out
        self._newest_ns = 0
        self._in_order = True  # every timestamp so far came after the one before (the oldest first)
        self._reasons: dict[int, tuple[str, ...] | None] = {}
        self._lost: dict[int, bool] = {}
        self._carried: dict[int, dict[str, Any]] = {}  # each GPU's counters as last written
        self._last: dict[int, GpuSample] = {}  # each GPU's sample as last built
        self._gpus: tuple[GpuSample, ...] | None = None  # the last sample's (carried when none is read)
        self._slow: tuple[dict[str, Any], dict[int, Any]] | None = None  # RAM, load, core clocks
        self._freqs: dict[int, tuple[Any, ...]] = {}  # the slow group's clocks as a tuple
        self._keys: dict[bytes, dict[bytes, tuple[int, int, str, int | None]]] = {}
        self._values: dict[bytes, Any] = {}

    # -- grouping ---------------------------------------------------------------------------

    def _group(self, at: int, out: list[Sample]) -> _Group | None:
        group = self._groups.get(at)
        if group is not None:
            return group
        if self._done_ns is not None and at <= self._done_ns:
            self.late += 1
            return None
        groups = self._groups
        if at < self._newest_ns:
            self._in_order = False  # from here on the oldest is looked for
        else:
            self._newest_ns = at
        group = groups[at] = _Group()
        if self.window is not None and len(groups) > self.window:
            oldest = next(iter(groups)) if self._in_order else min(groups)
            self._done_ns = oldest
            self._build(oldest, groups.pop(oldest), out)
        return group

    def finish(self) -> list[Sample]:
        """Every timestamp still held, in time order."""
        out: list[Sample] = []
        for at in sorted(self._groups):
            self._build(at, self._groups[at], out)
        self._groups.clear()
        return out

    def event(self, event: Mapping[str, Any]) -> list[Sample]:
        """One parsed event: the samples it completed."""
        out: list[Sample] = []
        ph, pid = event.get("ph"), event.get("pid")
        if ph not in ("C", "i") or (pid != CPU_PID and pid not in self.gpu_by_pid):
            if self.on_event is not None and isinstance(pid, int) and not isinstance(pid, bool):
                self.on_event(dict(event))
            return out
        at = ts_ns(event.get("ts"))
        if at is None:
            self.unreadable += 1
            return out
        group = self._group(at, out)
        if group is None:
            return out
        if ph == "C":
            parsed = counter_value(event)
            if parsed is None:
                return out
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
            held = None if raw is None else tuple(r for r in str(raw).split(",") if r)
            group.changes.append((pid, "reasons", held))
        elif event.get("cat") == CAT_EMPTY:  # read at this timestamp, every value n/a
            group.gpus.setdefault(pid, {})
        elif event.get("cat") == CAT_LOST:
            group.changes.append((pid, "lost", bool((event.get("args") or {}).get("lost"))))
        return out

    def run(self, run: CounterRun) -> list[Sample]:
        """A run of counter lines (gputop.trace.stream): the samples it completed. The same as
        ``event`` on each, without building a dict for any."""
        out: list[Sample] = []
        keys, values, groups = self._keys, self._values, self._groups
        last_stamp, group, at = b"", None, None
        for stamp, name, pid_text, text in zip(run.stamps, run.names, run.pids, run.values):
            if stamp != last_stamp:  # (a sample's lines are written together: one stamp a run of lines)
                last_stamp = stamp
                at = _stamp_ns(stamp)
                group = None if at is None else (groups.get(at) or self._group(at, out))
                self.unreadable += at is None  # (once a stamp: the loop is the trace's hot path)
            if group is None:
                continue
            by_name = keys.get(pid_text)
            if by_name is None:
                by_name = keys[pid_text] = {}
            key = by_name.get(name)
            if key is None:
                key = by_name[name] = self._key(name, pid_text)
            value = values.get(text)
            if value is None:
                if len(values) > 65536:
                    values.clear()
                value = values[text] = _number(text)
                if value is None:
                    continue
            kind, pid, metric, core = key
            if kind == _CORE and core is not None:  # (the commonest: a line a core a sample)
                cores = group.cores.get(metric)
                if cores is None:
                    cores = group.cores[metric] = {}
                cores[core] = value
            elif kind == _CPU:
                group.cpu[metric] = value
            elif kind == _GPU:
                gpu = group.gpus.get(pid)
                if gpu is None:
                    gpu = group.gpus[pid] = {}
                gpu[metric] = value
            elif pid >= 0 and self.on_counter is not None and at is not None:
                self.on_counter(pid, metric, at, value)
        return out

    def _key(self, name_b: bytes, pid_b: bytes) -> tuple[int, int, str, int | None]:
        name = name_b[7:-1].decode("ascii", errors="replace")  # in 'name":"power_w"'
        try:
            pid = int(pid_b[5:])  # in 'pid":10000001'
        except ValueError:
            return _OTHER, -1, name, None
        if pid != CPU_PID and pid not in self.gpu_by_pid:
            return _OTHER, pid, name, None
        parsed = counter_value({"name": name, "args": {"v": 0}})
        if parsed is None:
            return _OTHER, -1, name, None
        metric, core, _ = parsed
        if pid == CPU_PID:
            return (_CPU if core is None else _CORE), pid, metric, core
        return _GPU, pid, metric, core

    # -- building ---------------------------------------------------------------------------

    def _build(self, at: int, group: _Group, out: list[Sample]) -> None:
        changes = group.changes
        if changes:
            reasons, lost = self._reasons, self._lost
            for pid, what, value in changes:
                if what == "reasons":
                    reasons[pid] = value
                else:
                    lost[pid] = bool(value)
        cpu_values = group.cpu
        if "ram_total_bytes" in cpu_values:  # the slow group was written here (else: carried)
            self._slow = ({m: cpu_values.get(m) for m in CPU_SLOW}, group.cores.get("core_freq_mhz", {}))
            self._freqs = {}
        cpu = _cpu_sample(group, self.cores, self._slow, self._freqs)
        if cpu is None:
            return
        if group.gpus or changes or self._gpus is None:
            self._gpus = self._gpu_samples(group)
        out.append(Sample(at, cpu, self._gpus, self.gpu_unavailable))  # (positional: ts_ns, cpu, gpus, ...)

    def _gpu_samples(self, group: _Group) -> tuple[GpuSample, ...]:
        """Each GPU at a sample: read afresh, or the last reading carried (the same object)."""
        reasons, lost = self._reasons, self._lost
        changed = {pid for pid, _, _ in group.changes} if group.changes else _NONE
        gpus = []
        for pid, info in self.gpu_by_pid.items():
            values = group.gpus.get(pid)
            last = self._last.get(pid)
            if values is None and pid not in changed and last is not None:
                gpus.append(last)  # not read at this sample: the same reading, carried
                continue
            if lost.get(pid):
                gpu = GpuSample(info, lost=True)
            else:
                if values is None:  # not read at this sample (GPUs: about every 0.1 s at most)
                    values = self._carried.get(pid, {})
                self._carried[pid] = values
                args = list(map(values.get, _GPU_ARGS))  # positional (keywords cost more)
                args[_REASONS_AT] = reasons.get(pid)
                gpu = GpuSample(info, False, *args)
            self._last[pid] = gpu
            gpus.append(gpu)
        return tuple(gpus)


def _stamp_ns(piece: bytes) -> int | None:
    text = piece[4:]  # after 'ts":'
    digits = text[:-4] + text[-3:]  # the writer's "%d.%03d": microseconds to 3 places
    if text[-4:-3] == b"." and digits.isdigit():
        return int(digits)
    whole, dot, frac = text.partition(b".")
    if whole.isdigit() and not dot:
        return int(whole) * 1000
    try:
        return ts_ns(RawNumber(text.decode("ascii")))
    except (ValueError, UnicodeDecodeError):
        return None


def value_text(piece: bytes) -> bytes:
    """A CounterRun's value piece (``b'args":{"W":412.5}}'``) to its number's text (``b'412.5'``)."""
    colon = piece.find(b'":', 8)
    return piece[colon + 2 : piece.find(b"}", colon)]


def _number(piece: bytes) -> Any:
    """A counter's value piece as json reads it (an int where it has no fraction or exponent);
    None where it is not a number (null, true: left out, as ``counter_value`` does)."""
    text = value_text(piece)
    try:
        return int(text) if text.lstrip(b"-").isdigit() else plain(float(text))
    except ValueError:
        return None


def _cpu_sample(
    group: _Group, cores: int | None, slow: tuple[dict[str, Any], dict[int, Any]] | None, freq_cache: dict[int, tuple[Any, ...]]
) -> CpuSample | None:
    """The CPU at one timestamp: its own counters, and RAM, load and core clocks as last written
    (at this timestamp or before). None where incomplete. ``freq_cache``: the clocks of the
    last slow group as a tuple, by core count (emptied when a new slow group is written)."""
    cpu = group.cpu
    util = group.cores.get("core_util_pct", _NO_CORES)
    n = cores if isinstance(cores, int) else len(util)
    if cpu.get("cpu_util_pct") is None or len(util) < n or slow is None:
        return None
    scalars, freq = slow
    if scalars["ram_used_bytes"] is None or scalars["ram_total_bytes"] is None:
        return None
    try:
        per_core = _cores(util, n)
    except KeyError:  # a core's utilization missing (another core's there twice): incomplete
        return None
    clocks = freq_cache.get(n)
    if clocks is None:
        clocks = freq_cache[n] = tuple(map(freq.get, range(n)))
    # positional (once a sample: keywords cost more), in the fields' order: cpu_util_pct,
    # core_util_pct, core_freq_mhz, cpu_power_w, ram_used_bytes, ram_total_bytes, load1
    return CpuSample(
        cpu["cpu_util_pct"],
        per_core,
        clocks,
        cpu.get("cpu_power_w"),
        scalars["ram_used_bytes"],
        scalars["ram_total_bytes"],
        scalars["load1"],
    )


_NO_CORES: dict[int, Any] = {}
_GETTERS: dict[int, Callable[[Mapping[int, Any]], Any]] = {}


def _cores(util: Mapping[int, Any], n: int) -> tuple[Any, ...]:
    """Cores 0..n-1 of ``util`` as a tuple (an itemgetter, in C)."""
    if n <= 1:
        return (util[0],) if n else ()
    get = _GETTERS.get(n)
    if get is None:
        get = _GETTERS[n] = operator.itemgetter(*range(n))
    out: tuple[Any, ...] = get(util)
    return out
