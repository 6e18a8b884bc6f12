"""The launched workload's track in a trace: its steps as nested slices (a detected step's data
waits as ``data_wait`` slices inside it), its phases kept nested, its marks, its output lines
(instants on its own thread), its counters and its processes' use (``job`` instants), and how
its process ended. One small class holds the nesting state."""

from __future__ import annotations

from typing import Iterable, Mapping, Sequence

from gputop.model import JobUsage, Placement, WorkloadMark, WorkloadState, WorkloadStep
from gputop.signals import signal_name
from gputop.trace.counters import Counters
from gputop.trace.schema import (
    CAT_WORKLOAD,
    WORKLOAD_TICK,
    dumps,
    instant,
    meta,
    number_text,
    phase_tid,
    plain_json,
    steps_tid,
    ts_text,
)

OUTPUT_TID_BASE = 40_000_000  # the workload's output (and processes) thread: beside steps and phases
RANK_TID_BASE = 50_000_000  # a rank's steps thread on the workload's pid: RANK_TID_BASE + rank
OTHER_TID_BASE = 60_000_000  # the steps of a process of the job that is no rank: + its pid
RANK_SORT_BASE = 100  # a rank's thread sorts at RANK_SORT_BASE + rank: the ranks stacked in order


def output_tid(pid: int) -> int:
    return OUTPUT_TID_BASE + pid


def rank_tid(rank: int | None, pid: int) -> int:
    """The thread a rank's steps are drawn on (by rank: a restarted rank keeps its track)."""
    return RANK_TID_BASE + rank if rank is not None else OTHER_TID_BASE + pid


def rank_track_name(rank: int | None, pids: Sequence[int], device: str | None) -> str:
    """A rank's thread as Perfetto lists it: "rank 1 · pid 4242 · cuda:1" ("cpu" on the CPU; its
    pids one after the other where it was restarted); "pid 4242" for a process that is no rank."""
    who = f"pid {pids[0]}" if len(pids) == 1 else "pids " + ", ".join(map(str, pids))
    parts = ([] if rank is None else [f"rank {rank}"]) + [who] + ([device] if device else [])
    return " · ".join(parts)


class WorkloadTrack:
    """Lines for the workload's process (pid = its real pid): steps on its ``steps`` thread,
    phases on its ``phases`` thread, kept nested whatever order the events come in."""

    def __init__(self, pid: int, name: str, argv: Sequence[str], counters: Counters) -> None:
        self.pid = int(pid)
        self.header = {"pid": self.pid, "name": str(name), "argv": [str(a) for a in argv]}
        self._counters = counters
        self.steps = 0
        self.steps_trimmed = 0  # drawn from the previous step's end (args.wall_s keeps the truth)
        self.steps_out_of_order = 0  # ended before the previous step: written as instants
        self.phases_unmatched = 0  # an E with no open B of its name: left out
        self._step_end_ns: dict[int, int] = {}  # by tid, the last step's end: a step never starts before it
        self._phases: list[str] = []  # names of the open phases, innermost last
        self._phase_ns = 0  # the last B or E written
        self.last_ns = 0  # the latest ts written on this track
        self.output_lines = 0
        self._job: JobUsage | None = None  # the reading last written
        self._rank_pids: dict[int, list[int]] = {}  # by thread: the pids that said hello on it

    @property
    def open_phases(self) -> bool:
        return bool(self._phases)

    def counter_lines(self, state: WorkloadState, ts_ns: int) -> list[str]:
        """The workload's rates as counters at a sample's time."""
        ts, out = ts_text(ts_ns), []
        for m in WORKLOAD_TICK:
            value = number_text(getattr(state, m, None))
            if value is not None:
                out.append(self._counters.line(self.pid, m, m, ts, value))
        job = state.job
        if job is not None and job is not self._job:  # read again (about every second)
            self._job = job
            out += self.job_lines(job, ts, state.placement)
        return out

    def job_lines(self, job: JobUsage, ts: str, placed: Placement | None = None) -> list[str]:
        """The job's processes as counters (for a timeline) and one ``job`` instant (for report):
        with the interval's CPU time by core and, where known, the GPUs the job was placed against."""
        out = []
        # (name, value, a catalogue metric of the same unit: it names the counter's arg key)
        for name, value, unit_of in (
            ("job_cpu_pct", job.cpu_pct, "cpu_util_pct"),
            ("job_busy_pct", job.busy_pct, "cpu_util_pct"),
            ("job_main_thread_cpu_pct", job.main_thread_cpu_pct, "cpu_util_pct"),
            ("job_rss_bytes", job.rss_bytes, "ram_used_bytes"),
        ):
            text = number_text(value)
            if text is not None:
                out.append(self._counters.line(self.pid, name, unit_of, ts, text))
        args: dict[str, object] = {
            "cpu_pct": job.cpu_pct,
            "busy_pct": job.busy_pct,
            "main_thread_cpu_pct": job.main_thread_cpu_pct,
            "main_thread_busy_pct": job.main_thread_busy_pct,
            "rss_bytes": job.rss_bytes,
            "cores": sorted(job.cores),
            "processes": [
                {
                    "pid": p.pid,
                    "name": p.name,
                    "role": p.role,
                    "cpu_pct": p.cpu_pct,
                    "threads": p.threads,
                    "rss_bytes": p.rss_bytes,
                    "cores": sorted(p.cores),
                    **({} if p.ppid is None else {"ppid": p.ppid}),
                    **({} if p.main_run_s is None else {"main_run_s": p.main_run_s, "main_queued_s": p.main_queued_s}),
                }
                for p in job.processes
            ],
            "core_cpu_s": [[core, seconds] for core, seconds in job.core_cpu_s],
            "interval_s": job.interval_s,
        }
        if placed is not None:
            args["placement_gpus"], args["placement_from"] = list(placed.gpus), placed.gpus_from
        out.append(instant(CAT_WORKLOAD, "job", self.pid, ts, args, tid=output_tid(self.pid)))
        return out

    def exit_lines(self, state: WorkloadState, ts_ns: int, extra: Mapping[str, object]) -> list[str]:
        """Phases still open are closed, then an instant ``exit`` with the final facts (status,
        returncode, error, stopped_by_gputop, steps) and ``extra`` where not None."""
        ts_ns = max(ts_ns, self.last_ns)
        rc = state.returncode
        args: dict[str, object] = {
            "status": state.status,
            "returncode": rc,
            "error": state.error,
            "stopped_by_gputop": state.status == "stopped",
            "steps": state.step,
        }
        if isinstance(rc, int) and rc < 0:
            args["signal"] = signal_name(-rc)
        for count in ("steps_trimmed", "steps_out_of_order", "phases_unmatched"):
            args[count] = getattr(self, count) or None
        args.update(extra)
        args = {k: v for k, v in args.items() if v is not None and plain_json(v)}
        lines = list(self.close_phases(ts_ns))
        lines.append(instant(CAT_WORKLOAD, "exit", self.pid, ts_text(ts_ns), args, tid=steps_tid(self.pid)))
        return lines

    def close_phases(self, ts_ns: int, down_to: int = 0) -> Iterable[str]:
        """E for every open phase above ``down_to`` on the stack, innermost first."""
        while len(self._phases) > down_to:
            yield self._phase_line("E", self._phases.pop(), ts_ns)

    def _phase_line(self, ph: str, name: str, ts_ns: int) -> str:
        """One B or E; never earlier than the one before on the thread (a child's clock that
        stepped back would otherwise reorder them and break the nesting)."""
        ts_ns = self._phase_ns = max(ts_ns, self._phase_ns)
        self.last_ns = max(self.last_ns, ts_ns)
        pid = self.pid
        body = dumps({"ph": ph, "cat": CAT_WORKLOAD, "name": name, "pid": pid, "tid": phase_tid(pid)})
        return f',{{"ts":{ts_text(ts_ns)},{body[1:]}\n'

    def lines(self, items: Iterable[WorkloadStep | WorkloadMark]) -> Iterable[str]:
        """The lines of steps and marks, as ``Workload.drain()`` gives them."""
        pid = self.pid
        tid = steps_tid(pid)
        for item in items:
            if isinstance(item, WorkloadStep):  # a rank's (or another process's) on a thread of its own
                yield from self._step_lines(item, pid, tid if item.pid is None else rank_tid(item.rank, item.pid))
            elif item.kind == "phase":
                if item.ph == "B":
                    self._phases.append(item.name)
                    yield self._phase_line("B", item.name, item.ts_ns)
                elif item.name in self._phases:  # closes it and whatever was opened inside it
                    at = len(self._phases) - 1 - self._phases[::-1].index(item.name)
                    yield from self.close_phases(item.ts_ns, down_to=at)
                else:
                    self.phases_unmatched += 1
            elif item.kind == "output":
                self.output_lines += 1
                self.last_ns = max(self.last_ns, item.ts_ns)
                yield instant(CAT_WORKLOAD, item.name, pid, ts_text(item.ts_ns), dict(item.args), tid=output_tid(pid))
            elif item.kind in ("start", "end", "hello", "bye", "stacks"):
                args = {k: v for k, v in dict(item.args).items() if plain_json(v)}
                self.last_ns = max(self.last_ns, item.ts_ns)
                yield instant(CAT_WORKLOAD, item.kind, pid, ts_text(item.ts_ns), args, tid=tid)
                if item.kind == "hello":
                    yield from self._thread_names(args)

    def _thread_names(self, hello: Mapping[str, object]) -> Iterable[str]:
        """The thread a process's steps go on, named and sorted (``thread_name``,
        ``thread_sort_index``), at its hello: a rank's steps, or those of another process of the
        job; none for the first process, whose steps are the workload's own. Metadata events
        come first in a viewer whatever their place in the file (they have no time)."""
        rank, who = hello.get("rank"), hello.get("pid")
        rank = rank if isinstance(rank, int) and not isinstance(rank, bool) else None
        if not isinstance(who, int) or (rank is None and hello.get("root") is True):
            return
        tid = rank_tid(rank, who)
        pids = self._rank_pids.setdefault(tid, [])
        if who not in pids:
            pids.append(who)
        device = hello.get("device")
        name = rank_track_name(rank, pids, device if isinstance(device, str) else None)
        yield "," + dumps({**meta("thread_name", self.pid, {"name": name}), "tid": tid}) + "\n"
        if rank is not None:
            yield "," + dumps({**meta("thread_sort_index", self.pid, {"sort_index": RANK_SORT_BASE + rank}), "tid": tid}) + "\n"

    def _step_lines(self, item: WorkloadStep, pid: int, tid: int) -> Iterable[str]:
        end = item.ts_ns
        begin = end - max(0, round(item.wall_s * 1e9))
        if item.source == "auto":
            # detected steps touch (each begins where the one before ended): drawn on whole
            # microseconds, which a viewer's doubles hold exactly, or the rounding of
            # ts + dur would overlap them (args.wall_s keeps the exact time)
            begin, end = -(-begin // 1000) * 1000, end // 1000 * 1000
            begin = min(begin, end)
        args: dict[str, object] = {
            "step": item.step,
            "samples": item.samples,
            "wall_s": item.wall_s,
            "loss": item.loss,
            "data_wait_s": item.data_wait_s,
            "backward_s": item.backward_s,
            "alloc_retries": item.alloc_retries,
            "joules": item.joules,
            "source": item.source,
            "pid": item.pid,
            "rank": item.rank,
        }
        args = {k: v for k, v in args.items() if v is not None and plain_json(v)}
        self.last_ns = max(self.last_ns, end)
        last_end = self._step_end_ns.get(tid, 0)
        if end < last_end:  # ended before the previous step: no nested slice
            self.steps_out_of_order += 1
            yield instant(CAT_WORKLOAD, "step", pid, ts_text(end), args, tid=tid)
        else:
            if begin < last_end:
                self.steps_trimmed += 1
                begin = last_end
            self._step_end_ns[tid] = end
            yield (
                f',{{"ph":"X","cat":"{CAT_WORKLOAD}","name":"step","pid":{pid},'
                f'"tid":{tid},"ts":{ts_text(begin)},"dur":{ts_text(end - begin)},'
                f'"args":{dumps(args)}}}\n'
            )
            for wait_begin, wait_ns in item.waits:  # inside the step as drawn, or left out
                wait_end = min((wait_begin + wait_ns) // 1000 * 1000, end)
                wait_begin = max(-(-wait_begin // 1000) * 1000, begin)
                if wait_end > wait_begin:
                    yield (
                        f',{{"ph":"X","cat":"{CAT_WORKLOAD}","name":"data_wait","pid":{pid},'
                        f'"tid":{tid},"ts":{ts_text(wait_begin)},"dur":{ts_text(wait_end - wait_begin)},'
                        f'"args":{{}}}}\n'
                    )
        loss = number_text(item.loss)
        if loss is not None:
            yield self._counters.line(pid, "loss", "loss", ts_text(end), loss)
        self.steps += 1
