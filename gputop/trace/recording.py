"""A loaded recording: ``Trace`` (every complete event, the header, the devices it names, and
whether the file was closed cleanly) and ``StreamedTrace`` (one read by streaming, its counters
held as floats), with what a Trace gives back: its Samples (``to_samples``, the decoder over
every event) and its workload's steps (``workload_steps``). The readers (``reader``, ``stream``)
build them; the decoder below them never sees a Trace."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

from gputop.model import GpuInfo, Sample, WorkloadStep
from gputop.trace.decode import SampleDecoder, counter_value, ts_ns
from gputop.trace.schema import CAT_WORKLOAD, plain


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
        return int(self.header["trace_version"])

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
            if (
                event.get("ph") == "i"
                and event.get("cat") == CAT_WORKLOAD
                and event.get("name") == kind
                and workload is not None
                and event.get("pid") == workload["pid"]
            ):
                args = event.get("args")
                return plain(args) if isinstance(args, dict) else {}
        return None

    def workload_counter(self, metric: str) -> list[float]:
        """Every value of one of the workload's counters (``samples_per_s``, ...), in file order."""
        workload = self.workload
        if workload is None:
            return []
        out = []
        for event in self.events:
            if event.get("ph") == "C" and event.get("pid") == workload["pid"] and event.get("name") == metric:
                parsed = counter_value(event)
                if parsed is not None:
                    out.append(parsed[2])
        return out


@dataclass(frozen=True)
class StreamedTrace(Trace):
    """A Trace read by streaming: ``events`` holds the metadata and the launched workload's own
    events (its steps, marks, phases: one or a few per step, never one per sample), its counters
    are in ``counters`` (one float each, in file order); the device samples are not held (they
    came from the stream: ``samples()`` gives none)."""

    counters: Mapping[str, Sequence[float]] = field(default_factory=dict)

    def workload_counter(self, metric: str) -> list[float]:
        return list(self.counters.get(metric, ()))


def to_samples(trace: Trace) -> list[Sample]:
    """Rebuild one Sample per timestamp: counters by pid and name, GpuInfo from the header,
    throttle reasons and lost state carried forward from their instants. A GPU with no counter
    at a timestamp was not read then (GPUs are read about every 0.1 s at most, the CPU at every
    sample): its last counters are carried forward (the same GpuSample object, as the sampler
    gives it). Otherwise a metric with no event at a timestamp is None. A timestamp whose CPU
    part is incomplete (a cut inside the last sample) is left out. (``SampleDecoder``, with every
    timestamp held until the end: the samples come out in time order, whatever the file's.)"""
    decoder = SampleDecoder(trace.gpus, trace.header.get("cpu_cores"), trace.gpu_unavailable, window=None)
    for event in trace.events:
        decoder.event(event)
    return decoder.finish()


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
        source = "auto" if args.get("source") == "auto" else "events"
        # a detected step whose batch could not be seen has no samples (n/a)
        if not isinstance(step, int) or not (isinstance(samples, int) or (samples is None and source == "auto")):
            continue
        loss = float(loss) if isinstance(loss, (int, float)) and not isinstance(loss, bool) else None
        if isinstance(wall, (int, float)) and not isinstance(wall, bool) and math.isfinite(wall) and wall >= 0:
            wall_s = float(wall)
        elif dur is not None:
            wall_s = dur / 1e9
        else:
            continue
        wait, joules = _seconds(args.get("data_wait_s")), _seconds(args.get("joules"))
        steps.append(
            WorkloadStep(
                step=step,
                samples=samples,
                loss=loss,
                wall_s=wall_s,
                ts_ns=end,
                joules=joules,
                source=source,
                data_wait_s=wait,
                pid=_count(args.get("pid"), 1),
                rank=_count(args.get("rank"), 0),
                backward_s=_seconds(args.get("backward_s")),
                alloc_retries=_count(args.get("alloc_retries"), 0),
            )
        )
    steps.sort(key=lambda s: s.ts_ns)
    return steps


def _count(value: object, low: int) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= low else None


def _seconds(value: Any) -> float | None:
    """A finite, non-negative number as a float, else None."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
        return None
    return float(value)
