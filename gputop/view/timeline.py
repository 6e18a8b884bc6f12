"""A recorded workload (``record --run``) as a WorkloadState at any time of its recording: what
the live view showed then, rebuilt from the trace's workload track, for ``gputop replay``.

At time T: the steps that ended by T (the last one's step and loss, the recent losses, the
rates over the recent steps, as ``workload.rates`` computes them live), the start event's facts
once it was written, the innermost phase open at T, the recorded ``joules_per_step`` counter's
value at T, its output lines written by T, and how the process ended once its ``exit`` (or the
workload's ``end``) mark is behind T, or is the workload's next event within one sample interval
of T (the exit comes just after the last sample, which would otherwise read "running"; its last
output lines with it). ``ended_ns`` is then the end; before it, the cursor's time, so
that the view's "elapsed" is the time into the run at the cursor (from the recording's first
sample, just after the launch), not the time since. Nothing is invented: what the trace does not
hold (the process tree) is empty.

The events are read as the index pass collects them (``WorkloadEvents``, in another thread):
each ``at()`` takes in the ones added since the last.
"""

from __future__ import annotations

import bisect
import dataclasses
from typing import Any, Mapping

from gputop.model import RankRow, RankStraggler, Sample, WorkloadState, WorkloadStep
from gputop.trace import CAT_WORKLOAD, ts_ns
from gputop.trace.marks import WorkloadEnd, WorkloadExit, WorkloadStart
from gputop.trace.recording import Trace, workload_steps
from gputop.trace.stream import WorkloadEvents
from gputop.workload import ranks, rates

# a distributed job at the cursor: each rank's recent steps, their rows, the straggler, the stall flag
RanksAt = tuple[dict[int, list[WorkloadStep]], tuple[RankRow, ...], RankStraggler | None, str | None]
NO_START = WorkloadStart(said=False)  # before the start mark
RECENT_STEPS = 64
RECENT_LOSSES = 120
OUTPUT_LINES = 200  # as the live view keeps (gputop.workload.launcher.OUTPUT_LINES)


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
        # the first start, end and exit marks, (ts_ns, the mark)
        self.start: tuple[int, WorkloadStart] | None = None
        self.end: tuple[int, WorkloadEnd] | None = None
        self.exit: tuple[int, WorkloadExit] | None = None
        self._phase_ns: list[int] = []
        self._phase_after: list[str | None] = []  # the innermost phase after each B/E
        self._open: list[str] = []
        self.first_ns: int | None = None
        self._out_ns: list[int] = []  # the output lines' times, in time order, and the lines
        self._out: list[str] = []
        # a distributed job's: each rank's steps in time order (and their times), each process's hello
        self._rank_steps: dict[int, list[WorkloadStep]] = {}
        self._rank_ns: dict[int, list[int]] = {}
        self._hellos: dict[int, Mapping[str, Any]] = {}
        interval = header.settings.get("interval_s")
        self._reach_ns = (
            round(interval * 1e9) if isinstance(interval, (int, float)) and not isinstance(interval, bool) and interval > 0 else 0
        )

    def _take_in(self) -> None:
        events = self.source.events
        new = events[self._seen : len(events)]
        self._seen += len(new)
        if not new:
            return
        mine = [e for e in new if e.get("pid") == self.pid]
        view = Trace(path=self.header.path, header=self.header.header, events=tuple(mine), complete=False)
        for step in workload_steps(view):
            where = bisect.bisect_right(self._step_ns, step.ts_ns)
            self._step_ns.insert(where, step.ts_ns)
            self.steps.insert(where, step)
            if step.rank is not None:
                stamps = self._rank_ns.setdefault(step.rank, [])
                where = bisect.bisect_right(stamps, step.ts_ns)
                stamps.insert(where, step.ts_ns)
                self._rank_steps.setdefault(step.rank, []).insert(where, step)
        self._hellos.update(ranks.recorded_hellos(mine, self.pid))
        for event in mine:
            ph, at = event.get("ph"), ts_ns(event.get("ts"))
            if at is None or event.get("cat") != CAT_WORKLOAD:
                continue
            name, args = event.get("name"), event.get("args")
            if ph == "i" and name in ("start", "end", "exit"):
                self._take_mark(str(name), at, args)
            elif ph == "i" and name in ("stdout", "stderr") and isinstance(args, dict) and isinstance(args.get("line"), str):
                where = bisect.bisect_right(self._out_ns, at)
                self._out_ns.insert(where, at)
                self._out.insert(where, args["line"])
            elif ph in ("B", "E") and isinstance(name, str):
                if ph == "B":
                    self._open.append(name)
                elif name in self._open:  # closes the innermost of its name, and those inside it
                    del self._open[len(self._open) - 1 - self._open[::-1].index(name) :]
                self._phase_ns.append(at)
                self._phase_after.append(self._open[-1] if self._open else None)

    def _take_mark(self, kind: str, at: int, args: Any) -> None:
        """The first mark of its kind, typed (gputop.trace.marks); later ones are ignored."""
        args = args if isinstance(args, dict) else None
        if kind == "start" and self.start is None:
            self.start = (at, WorkloadStart.of(args))
        elif kind == "end" and self.end is None:
            self.end = (at, WorkloadEnd.of(args))
        elif kind == "exit" and self.exit is None:
            self.exit = (at, WorkloadExit.of(args))

    def _counter_at(self, name: str, at: int) -> float | None:
        values, stamps = self.source.counters.get(name), self.source.stamps.get(name)
        if values is None or stamps is None:
            return None
        n = len(values)  # the values are appended after their stamps: the first n have both
        i = bisect.bisect_right(stamps, at, 0, n) - 1
        return values[i] if i >= 0 else None

    def _reached(self, mark_ns: int, at: int, k: int) -> bool:
        """Whether a mark at ``mark_ns`` is behind the cursor at ``at`` (``k`` steps done by
        then): it is, or it is the workload's next event within one sample interval."""
        if mark_ns <= at:
            return True
        next_step = self._step_ns[k] if k < len(self._step_ns) else None
        return mark_ns <= at + self._reach_ns and (next_step is None or next_step > mark_ns)

    def _ranks_at(self, at: int, ended: int | None) -> RanksAt:
        """A distributed job's ranks at ``at``: each rank's recent steps, their rows, the
        straggler and the stall flag, as the live view had them then (nothing without ranks)."""
        by_rank = {}
        for rank, stamps in self._rank_ns.items():
            k = bisect.bisect_right(stamps, at)
            if k:
                by_rank[rank] = self._rank_steps[rank][max(0, k - RECENT_STEPS) : k]
        if not by_rank:
            return {}, (), None, None
        rows, straggler, stall = ranks.rows(by_rank, self._hellos, min(at, ended or at), ended=ended is not None)
        return by_rank, rows, straggler, stall

    def poll(self, sample: Sample | None = None) -> WorkloadState:
        """The state at ``sample``'s time (at the first start mark without one)."""
        self._take_in()
        at = sample.ts_ns if sample is not None else self.start[0] if self.start is not None else 0
        return self.at(at)

    def stop(self, grace_s: float = 0.0) -> None:
        """Nothing to stop: a recording's workload ended long ago."""

    def capture_stacks(self, timeout_s: float = 0.0) -> list[dict[str, Any]]:
        """No process to ask: a recording's stacks, where it has any, are in ``report``."""
        return []

    def at(self, at: int) -> WorkloadState:
        start = self.start[1] if self.start is not None and self.start[0] <= at else NO_START
        k = bisect.bisect_right(self._step_ns, at)
        end = self.end[1] if self.end is not None and self._reached(self.end[0], at, k) else None
        exit_ = self.exit[1] if self.exit is not None and self._reached(self.exit[0], at, k) else None
        started = self.header.header.get("start_ns")  # the launch comes just before the first sample
        if not isinstance(started, int) and self.start is not None:
            started = self.start[0]
        # output up to the cursor; once the run is over there, up to its end (its last words)
        over = [mark[0] for mark, seen in ((self.exit, exit_), (self.end, end)) if mark is not None and seen is not None]
        shown = bisect.bisect_right(self._out_ns, max([at, *over]))
        done = self.steps[max(0, k - RECENT_STEPS) : k]
        window = rates.window(done)
        flops, peak = start.flops_per_step, start.peak_flops
        live = rates.over(window, flops, peak)
        status, returncode, error, ended = "running", None, None, None
        if exit_ is not None and self.exit is not None:
            status = exit_.status or "failed"
            returncode, error, ended = exit_.returncode, exit_.error, self.exit[0]
        elif end is not None and self.end is not None:
            status = "ok" if end.status == "ok" else "failed"
            error, ended = end.error, self.end[0]
        by_rank, rank_rows, straggler, stall = self._ranks_at(at, ended)
        if by_rank:  # the job's step series is its slowest rank's; its samples/s the sum over ranks
            done = list(ranks.job_steps(by_rank))
            live = dataclasses.replace(live, samples_per_s=ranks.live_samples_per_s(s for mine in by_rank.values() for s in mine))
        last = done[-1] if done else None
        p = bisect.bisect_right(self._phase_ns, at) - 1
        phase = self._phase_after[p] if p >= 0 and status == "running" else None
        losses = tuple(s.loss for s in self.steps[max(0, k - RECENT_LOSSES) : k] if s.loss is not None)
        return WorkloadState(
            name=self.name,
            argv=self.argv,
            pid=self.pid,
            status=status,
            returncode=returncode,
            started_ns=started if isinstance(started, int) else at,
            # whether the workload reports progress at all (not "yet": before its first event too)
            ended_ns=ended if ended is not None else at,
            events=self.start is not None or bool(self.steps),
            device=start.device,
            device_name=start.device_name,
            precision=start.precision,
            batch_size=start.batch_size,
            sample_unit=start.sample_unit or "samples",
            flops_per_step=flops,
            tokens_per_sample=start.tokens_per_sample,
            peak_flops=peak,
            peak_flops_source=start.peak_flops_source,
            steps_planned=start.steps_planned,
            step=None if last is None else last.step,
            samples_per_s=live.samples_per_s,
            tflops=live.tflops,
            mfu_pct=live.mfu_pct,
            loss=None if last is None else last.loss,
            losses=losses,
            joules_per_step=self._counter_at("joules_per_step", at),
            recent_steps=tuple(done),
            error=error,
            pids=frozenset({self.pid}),
            output_tail=tuple(self._out[max(0, shown - OUTPUT_LINES) : shown]),
            phase=phase,
            last_step_age_s=None if last is None else max(0.0, (min(at, ended or at) - last.ts_ns) / 1e9),
            ranks=rank_rows,
            straggler=straggler,
            rank_stall=stall,
        )
