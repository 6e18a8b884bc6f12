"""A recorded workload (``record --run``) as a WorkloadState at any time of its recording: what
the live view showed then, rebuilt from the trace's workload track, for ``gputop replay``.

At time T: the steps that ended by T (the last one's step and loss, the recent losses, the
rates over the recent steps, as ``workload.rates`` computes them live), the start event's facts
once it was written, the innermost phase open at T, the recorded ``joules_per_step`` counter's
value at T, and how the process ended once its ``exit`` (or the workload's ``end``) mark is
behind T. ``ended_ns`` is then the end; before it, the cursor's time, so that the view's
"elapsed" is the time into the run at the cursor, not the time since. Nothing is invented: what
the trace does not hold (the output log, the process tree) is empty.

The events are read as the index pass collects them (``WorkloadEvents``, in another thread):
each ``at()`` takes in the ones added since the last.
"""

from __future__ import annotations

import bisect
from typing import Any, Mapping

from gputop.model import Sample, WorkloadState, WorkloadStep
from gputop.trace import CAT_WORKLOAD, ts_ns
from gputop.trace.recording import Trace, workload_steps
from gputop.trace.schema import plain
from gputop.trace.stream import WorkloadEvents
from gputop.workload import rates

RECENT_STEPS = 64
RECENT_LOSSES = 120


class WorkloadTimeline:
    """``poll(sample)``: the workload's state at the sample's time (feed.SupportsPoll)."""

    def __init__(self, header: Trace, events: WorkloadEvents) -> None:
        workload = header.workload
        assert workload is not None
        self.header = header
        self.pid: int = workload["pid"]
        self.name = str(workload.get("name") or "workload")
        self.argv = tuple(str(a) for a in workload.get("argv") or ())
        self.source = events
        self._seen = 0  # of source.events taken in
        self.steps: list[WorkloadStep] = []
        self._step_ns: list[int] = []
        self.marks: dict[str, tuple[int, dict[str, Any]]] = {}  # the first start, end, exit
        self._phase_ns: list[int] = []
        self._phase_after: list[str | None] = []  # the innermost phase after each B/E
        self._open: list[str] = []
        self.first_ns: int | None = None

    def _take_in(self) -> None:
        events = self.source.events
        new = events[self._seen:len(events)]
        self._seen += len(new)
        if not new:
            return
        mine = [e for e in new if e.get("pid") == self.pid]
        view = Trace(path=self.header.path, header=self.header.header, events=tuple(mine), complete=False)
        for step in workload_steps(view):
            where = bisect.bisect_right(self._step_ns, step.ts_ns)
            self._step_ns.insert(where, step.ts_ns)
            self.steps.insert(where, step)
        for event in mine:
            ph, at = event.get("ph"), ts_ns(event.get("ts"))
            if at is None or event.get("cat") != CAT_WORKLOAD:
                continue
            name = event.get("name")
            if ph == "i" and name in ("start", "end", "exit") and name not in self.marks:
                args = event.get("args")
                self.marks[str(name)] = (at, plain(args) if isinstance(args, dict) else {})
            elif ph in ("B", "E") and isinstance(name, str):
                if ph == "B":
                    self._open.append(name)
                elif name in self._open:  # closes the innermost of its name, and those inside it
                    del self._open[len(self._open) - 1 - self._open[::-1].index(name):]
                self._phase_ns.append(at)
                self._phase_after.append(self._open[-1] if self._open else None)

    def _mark(self, kind: str, at: int) -> Mapping[str, Any] | None:
        mark = self.marks.get(kind)
        return mark[1] if mark is not None and mark[0] <= at else None

    def _counter_at(self, name: str, at: int) -> float | None:
        values, stamps = self.source.counters.get(name), self.source.stamps.get(name)
        if values is None or stamps is None:
            return None
        n = len(values)  # the values are appended after their stamps: the first n have both
        i = bisect.bisect_right(stamps, at, 0, n) - 1
        return values[i] if i >= 0 else None

    def poll(self, sample: Sample | None = None) -> WorkloadState:
        """The state at ``sample``'s time (at the first start mark without one)."""
        self._take_in()
        at = sample.ts_ns if sample is not None else self.marks.get("start", (0, {}))[0]
        return self.at(at)

    def stop(self, grace_s: float = 0.0) -> None:
        """Nothing to stop: a recording's workload ended long ago."""

    def at(self, at: int) -> WorkloadState:
        start = dict(self._mark("start", at) or {})
        end, exit_ = self._mark("end", at), self._mark("exit", at)
        started = self.marks["start"][0] if "start" in self.marks else self.header.header.get("start_ns")
        k = bisect.bisect_right(self._step_ns, at)
        done = self.steps[max(0, k - RECENT_STEPS):k]
        last = done[-1] if done else None
        window = rates.window(done)
        flops, peak = _positive(start.get("flops_per_step")), _positive(start.get("peak_flops"))
        live = rates.over(window, flops, peak)
        status, returncode, error, ended = "running", None, None, None
        if exit_ is not None:
            status = str(exit_.get("status") or "failed")
            returncode = exit_.get("returncode") if isinstance(exit_.get("returncode"), int) else None
            error = exit_.get("error") if isinstance(exit_.get("error"), str) else None
            ended = self.marks["exit"][0]
        elif end is not None:
            status = "ok" if end.get("status") == "ok" else "failed"
            error = end.get("error") if isinstance(end.get("error"), str) else None
            ended = self.marks["end"][0]
        p = bisect.bisect_right(self._phase_ns, at) - 1
        phase = self._phase_after[p] if p >= 0 and status == "running" else None
        losses = tuple(s.loss for s in self.steps[max(0, k - RECENT_LOSSES):k] if s.loss is not None)
        return WorkloadState(
            name=self.name, argv=self.argv, pid=self.pid, status=status, returncode=returncode,
            started_ns=started if isinstance(started, int) else at,
            ended_ns=ended if ended is not None else at, events=bool(start or done),
            device=_text(start.get("device")), device_name=_text(start.get("device_name")),
            precision=_text(start.get("precision")), batch_size=_count(start.get("batch_size")),
            sample_unit=_text(start.get("sample_unit")) or "samples", flops_per_step=flops,
            tokens_per_sample=_count(start.get("tokens_per_sample")),
            peak_flops=peak, peak_flops_source=_text(start.get("peak_flops_source")),
            steps_planned=_count(start.get("steps_planned")),
            step=None if last is None else last.step,
            samples_per_s=live.samples_per_s, tflops=live.tflops, mfu_pct=live.mfu_pct,
            loss=None if last is None else last.loss, losses=losses,
            joules_per_step=self._counter_at("joules_per_step", at),
            recent_steps=tuple(done), error=error, pids=frozenset({self.pid}), output_tail=(),
            phase=phase,
            last_step_age_s=None if last is None else max(0.0, (min(at, ended or at) - last.ts_ns) / 1e9),
        )


def _positive(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value != value:
        return None
    return float(value) if 0 < value < float("inf") else None


def _count(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else None


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None
