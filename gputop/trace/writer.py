"""TraceWriter: appends samples (and a launched workload's track) to a trace file, one whole line
per event, each sample in one ``os.write``, so a crash leaves a file that still loads. The format
is docs/trace-format.md."""

from __future__ import annotations

import os
import socket
from typing import Any, Iterable, Mapping, Sequence

from gputop import __version__
from gputop import format as fmt
from gputop.model import (
    GpuSample,
    Sample,
    WorkloadMark,
    WorkloadState,
    WorkloadStep,
    to_dict,
)
from gputop.trace.counters import Counters, append_counters
from gputop.trace.schema import (
    CAT_CLOCKS,
    CAT_DRIVER,
    CAT_EMPTY,
    CAT_LOST,
    CPU_FAST,
    CPU_PER_CORE_LAST,
    CPU_PID,
    CPU_SLOW,
    GPU_COUNTERS,
    HEADER,
    TRACE_VERSION,
    WORKLOAD_SORT_INDEX,
    dumps,
    gpu_pid,
    instant,
    meta,
    number_text,
    phase_tid,
    steps_tid,
    ts_text,
)
from gputop.trace.track import WorkloadTrack, output_tid


def header_events(
    first: Sample, settings: Mapping[str, Any] | None = None, host: str | None = None, workload: Mapping[str, Any] | None = None
) -> list[dict[str, Any]]:
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
        meta(HEADER, CPU_PID, header),
        meta("process_name", CPU_PID, {"name": f"CPU ({host}, {cores} cores)"}),
        meta("process_sort_index", CPU_PID, {"sort_index": 0}),
        meta("thread_name", CPU_PID, {"name": "CPU"}),
    ]
    for gpu in first.gpus:
        pid, info = gpu_pid(gpu.info.index), gpu.info
        events += [
            meta("process_name", pid, {"name": f"GPU {info.index}: {info.name}"}),
            meta("process_sort_index", pid, {"sort_index": 1 + info.index}),
            meta("thread_name", pid, {"name": f"GPU {info.index}"}),
        ]
    if workload is not None:
        pid = workload["pid"]
        events += [
            meta("process_name", pid, {"name": f"workload {workload['name']}"}),
            meta("process_sort_index", pid, {"sort_index": WORKLOAD_SORT_INDEX}),
            {**meta("thread_name", pid, {"name": "steps"}), "tid": steps_tid(pid)},
            {**meta("thread_name", pid, {"name": "phases"}), "tid": phase_tid(pid)},
            # its stdout and stderr lines, and its processes' use
            {**meta("thread_name", pid, {"name": "output, processes"}), "tid": output_tid(pid)},
        ]
    return events


class TraceWriter:
    """Appends samples to a trace file; ``close()`` adds the ``]`` that makes it strict JSON.

    ``create`` opens the file at once (so an unwritable path fails before any sampling); the
    header goes out with the first sample, whose GpuInfo it records.
    """

    def __init__(self, fd: int, path: str, settings: Mapping[str, Any] | None = None, host: str | None = None) -> None:
        self.path = path
        self.settings = dict(settings or {})
        self.host = host
        self.samples = 0
        self.bytes_written = 0
        self._fd: int | None = fd
        self._counters = Counters()
        self._last_sample_ns = 0
        self._reasons: dict[int, Any] = {}
        self._lost: dict[int, bool] = {}
        self._gpus: dict[int, GpuSample] = {}  # the reading each GPU's counters were last written from
        self._cpu_slow: tuple[Any, ...] | None = None  # RAM, load and core clocks as last written
        self._track: WorkloadTrack | None = None  # the launched workload's, after set_workload
        self._last_ns = 0  # the latest ts written: open phases are closed there at close()
        self._failed = False  # a write raised (disk full): nothing more is appended, close() only closes

    @classmethod
    def create(cls, path: str, *, force: bool = False, settings: Mapping[str, Any] | None = None, host: str | None = None) -> TraceWriter:
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
        self._track = WorkloadTrack(pid, name, argv, self._counters)

    @property
    def workload(self) -> dict[str, Any] | None:
        """The header's ``workload``: ``{"pid", "name", "argv"}``, after set_workload."""
        return None if self._track is None else self._track.header

    def write_workload(
        self, items: Iterable[WorkloadStep | WorkloadMark], state: WorkloadState | None = None, ts_ns: int | None = None
    ) -> None:
        """The workload's steps and marks (``Workload.drain()``) and, with ``state`` and the
        sample's ``ts_ns``, its counters at that time. Nothing before the first sample (the
        header has to come first) and nothing without ``set_workload``."""
        track = self._track
        if track is None or self.samples == 0:
            return
        lines = list(track.lines(items))
        if state is not None and ts_ns is not None:
            lines += track.counter_lines(state, ts_ns)
        if lines:
            self._write("".join(lines))

    def write_workload_exit(self, state: WorkloadState, ts_ns: int, **extra: object) -> None:
        """How the workload's process ended (after ``stop()``): see WorkloadTrack.exit_lines."""
        track = self._track
        if track is None or self.samples == 0:
            return
        self._write("".join(track.exit_lines(state, max(ts_ns, self._last_ns), extra)))

    # the workload track's counts, for the recorder's closing line
    @property
    def workload_steps(self) -> int:
        return 0 if self._track is None else self._track.steps

    @property
    def output_lines(self) -> int:
        return 0 if self._track is None else self._track.output_lines

    @property
    def steps_trimmed(self) -> int:
        return 0 if self._track is None else self._track.steps_trimmed

    @property
    def steps_out_of_order(self) -> int:
        return 0 if self._track is None else self._track.steps_out_of_order

    @property
    def phases_unmatched(self) -> int:
        return 0 if self._track is None else self._track.phases_unmatched

    def write_sample(self, sample: Sample) -> None:
        self._last_ns = max(self._last_ns, sample.ts_ns, self._track.last_ns if self._track else 0)
        self._last_sample_ns = sample.ts_ns
        lines = []
        if self.samples == 0:
            head = header_events(sample, self.settings, self.host, self.workload)
            lines.append("[" + dumps(head[0]) + "\n")
            lines.extend("," + dumps(e) + "\n" for e in head[1:])
        lines.extend(self._sample_lines(sample))
        self._write("".join(lines))
        self.samples += 1

    def _sample_lines(self, sample: Sample) -> list[str]:
        """GPUs first, the CPU last, ending with every core's utilization: the reader needs
        those to call a sample complete, so a cut inside a sample drops the whole sample."""
        ts = ts_text(sample.ts_ns)
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
                out.append(instant(CAT_LOST, name, pid, ts, {"lost": gpu.lost}))
            if gpu.lost:
                continue
            before = len(out)
            append_counters(out, rows(pid, GPU_COUNTERS), gpu, ts)
            if len(out) == before:  # read, and nothing answered: say so, or it would read as carried
                out.append(instant(CAT_EMPTY, f"GPU {gpu.info.index}: no values", pid, ts, {}))
            reasons = gpu.clock_event_reasons
            if pid not in self._reasons or reasons != self._reasons[pid]:
                self._reasons[pid] = reasons
                args = {} if reasons is None else {"clock_event_reasons": ",".join(reasons)}
                name = "clocks: n/a" if reasons is None else (f"clocks held: {fmt.reasons(reasons)}" if reasons else "clocks: not held")
                out.append(instant(CAT_CLOCKS, name, pid, ts, args))
        cpu = sample.cpu
        append_counters(out, rows(CPU_PID, CPU_FAST), cpu, ts)
        slow = (cpu.ram_used_bytes, cpu.ram_total_bytes, cpu.load1, cpu.core_freq_mhz)
        per_core = CPU_PER_CORE_LAST
        if slow != self._cpu_slow:  # read again and changed (the host re-reads them every 0.5 s)
            self._cpu_slow = slow
            append_counters(out, rows(CPU_PID, CPU_SLOW), cpu, ts)
        else:
            per_core = ("core_util_pct",)
        for m in per_core:
            values = getattr(cpu, m)
            for (head, tail), value in zip(self._counters.core_rows(m, len(values)), values):
                text = number_text(value)
                if text is not None:
                    out.append(f"{head}{ts}{tail}{text}}}}}\n")
        return out

    def _write(self, text: str) -> None:
        if self._fd is None:
            raise ValueError(f"trace {self.path} is closed")
        data = text.encode("ascii")
        view = memoryview(data)
        try:
            while view:  # one write in practice; a short write (disk full) continues where it stopped
                n = os.write(self._fd, view)
                view = view[n:]
        except OSError:
            self._failed = True  # the file ends in a cut line, which the reader forgives; more would not help
            raise
        self.bytes_written += len(data)

    def write_driver_time(self, seconds: float, calls: int, over_s: float) -> None:
        """The recorder's own time in GPU driver calls over the recording: an instant
        (``CAT_DRIVER``) on the CPU track at the last sample's time (the header, written with the
        first sample, cannot know it). Nothing before the first sample or after a failed write."""
        if self.samples and not self._failed and over_s > 0:
            ms_per_s = 1000.0 * seconds / over_s
            args = {"driver_ms_per_s": round(ms_per_s, 3), "calls_per_s": round(calls / over_s, 1), "over_s": round(over_s, 3)}
            name = f"gputop's own driver time: {ms_per_s:.1f} ms/s"
            self._write(instant(CAT_DRIVER, name, CPU_PID, ts_text(self._last_sample_ns), args))

    def close(self) -> None:
        """Finish the file with ``]`` (strict JSON from here on) and close it. Idempotent.

        A trace closed before its first sample gets no ``]``: it stays empty, and ``load``
        says so, rather than a bare ``]`` that no viewer reads. After a write failed (disk full)
        nothing more is written: the file stays as the failure cut it, readable as such."""
        if self._fd is None:
            return
        try:
            if self.samples and not self._failed:
                track = self._track
                if track is not None and track.open_phases:  # stopped while a phase was under way
                    self._write("".join(track.close_phases(max(self._last_ns, track.last_ns))))
                self._write("]\n")
        finally:
            fd, self._fd = self._fd, None
            os.close(fd)

    def __enter__(self) -> TraceWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
