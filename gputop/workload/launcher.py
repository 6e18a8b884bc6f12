"""``Workload``: the facade over one launched workload. It starts the process group, drains its
pipes, reads its events and gives energy to its steps; callers only ever see ``WorkloadState``
snapshots (``poll()``) and, for a recorder, the steps and marks (``drain()``)."""

from __future__ import annotations

import collections
import dataclasses
import math
import os
import threading
import time
from typing import Any, Callable, Mapping, Sequence

from gputop.model import JobUsage, Placement, Sample, WorkloadMark, WorkloadState, WorkloadStep
from gputop.signals import signal_name
from gputop.workload import causes, inject, insight, placement, ranks, rates
from gputop.workload.channel import ENV_SOCK, EventSocket
from gputop.workload.energy import EnergyCurve
from gputop.workload.events import ENV_FD, ENV_FILE, EventReader
from gputop.workload.pipes import EventLines, OutputLines
from gputop.workload.process import Child, ProcessGroup
from gputop.workload.procs import JobWatch
from gputop.workload.targets import BUNDLED, resolve

OUTPUT_LINES = 200  # lines of stdout+stderr kept
RECENT_STEPS = 64  # steps kept in WorkloadState.recent_steps
RECENT_LOSSES = 120
EVENT_LINES = 100_000  # event lines held between two polls; more are dropped (and counted)
PIDS_EVERY_S = 1.0  # the process tree is walked at most this often
RECENT_SAMPLES = 64  # samples kept for a distributed job's ranks' GPUs (the straggler's cause)
RECENT_READINGS = 10  # readings of the job's processes kept (about a second apart): its ranks' host threads
RANKS_JOIN_S = 2.0  # the main process has exited: its ranks' connections are read to their end this long at most


class Workload:
    """A workload launched under observation: start(), poll() as often as you like, stop().

    The child runs ``sys.executable`` in its own session and process group (so one signal reaches
    it and every process it spawned), with a pipe for its events (GPUTOP_EVENTS_FD) and its
    stdout/stderr captured (see gputop.workload.process for the parent-death signal and the
    subreaper: call ``start()`` from the main thread).

    ``poll()`` does not block: it takes the events that reader threads have collected, reaps the
    process and returns a WorkloadState (once, when the process has just exited, it waits up to
    0.25 s for the last lines, which only take that long when a grandchild still holds a pipe).
    A recorder (``collect=True``) also calls ``drain()`` for every step and mark since its last
    call.

    A Python script (not a bundled workload, which reports its own steps) is instrumented unless
    ``instrument=False``: gputop/workload/inject goes first on its PYTHONPATH, and its steps are
    detected (``source: "auto"``) once it imports torch.
    """

    resolve = staticmethod(resolve)

    def __init__(
        self,
        target: str,
        args: Sequence[str] = (),
        *,
        env: Mapping[str, str] | None = None,
        cwd: str | None = None,
        output_lines: int = OUTPUT_LINES,
        keep_steps: int = RECENT_STEPS,
        collect: bool = False,
        clock_ns: Callable[[], int] = time.time_ns,
        instrument: bool = True,
    ) -> None:
        self.name, command = resolve(target, cwd)
        self.argv: tuple[str, ...] = (*command, *args)
        self.instrumented = instrument and not (target in BUNDLED and command[1:2] == ("-m",))
        self._env = dict(os.environ if env is None else env)
        self._cwd = cwd
        self._clock_ns = clock_ns
        self._output = OutputLines(output_lines, collect=collect)
        self._lock = threading.RLock()
        self._group = ProcessGroup()
        self._events: EventLines | None = None
        self._channel: EventSocket | None = None  # the socket the processes of an instrumented job reach
        self._reader = EventReader(self.name)
        self._started_ns = 0
        self._ended_ns: int | None = None
        self._stopped = False
        self._kill_at: float | None = None  # monotonic time of SIGKILL, while stop() waits
        self._steps: collections.deque[WorkloadStep] = collections.deque(maxlen=max(1, keep_steps))
        self._run = rates.RunTotals()  # every step's, for a finished job's whole-run rates
        self._run_by_rank = ranks.RunTotalsByRank()  # a distributed job's, rank by rank
        self._rank_totals = ranks.RankTotals()  # each rank's steps and samples, every attempt's (serve's counters)
        self._rank_steps: dict[int, collections.deque[WorkloadStep]] = {}  # each rank's recent steps
        self._gone_pids: set[int] = set()  # ranks' processes that have gone while the job runs
        self._samples: collections.deque[Sample] = collections.deque(maxlen=RECENT_SAMPLES)  # once it has ranks
        self._losses: collections.deque[float] = collections.deque(maxlen=RECENT_LOSSES)
        self._collect = collect  # keep every step and mark for drain() (a recorder)
        # a recorder loses nothing: unbounded, and emptied by each drain() (record drains every
        # DRAIN_S whatever its --interval); a viewer keeps no pending items at all
        self._pending: collections.deque[WorkloadStep | WorkloadMark] = collections.deque()
        self.pending_dropped = 0  # items drain() never saw (kept for the recorder's report: 0)
        self._energy = EnergyCurve(self._env)
        self._pids: frozenset[int] = frozenset()
        self._pids_at = -math.inf
        self._watch: JobWatch | None = None
        self._job: JobUsage | None = None
        self._readings: collections.deque[causes.Reading] = collections.deque(maxlen=RECENT_READINGS)
        self._sample: Sample | None = None  # the latest, for the live verdict
        self._core_cpu_s: dict[int, float] = {}  # the job's CPU time by core, since it started
        self._gpus_seen: set[int] = set()  # GPUs whose process lists held one of its pids
        self._placed: tuple[object, Placement | None] = (None, None)  # (what it was drawn from, it)
        self._state: WorkloadState | None = None

    # ---- launching --------------------------------------------------------------------------

    @property
    def proc(self) -> Child | None:
        """The main process (a Popen), once started."""
        return self._group.proc

    @property
    def pid(self) -> int | None:
        return self._group.pid

    @property
    def pgid(self) -> int | None:
        return self._group.pid  # start_new_session: the child leads its own group

    @property
    def events_ignored(self) -> int:
        """Lines that were not a valid event, and events of unknown kinds."""
        return self._reader.ignored

    def start(self) -> WorkloadState:
        """Launch the child (once). WorkloadError if it cannot be executed."""
        with self._lock:
            if self._group.proc is not None or self._stopped:
                raise RuntimeError("a Workload is started once")
            read_fd, write_fd = os.pipe()
            env = dict(self._env)
            env.pop(ENV_FILE, None)
            env[ENV_FD] = str(write_fd)
            env.pop(ENV_SOCK, None)  # an outer gputop's: never this job's
            if self.instrumented:
                # output as it is printed, not in 8 KiB blocks: the hooks' sitecustomize makes
                # every Python process's stdout line-buffered, a line one write, so the lines of
                # a job's ranks (one pipe) never run together, as PYTHONUNBUFFERED's would (a
                # line's text and its newline written apart)
                env = inject.environment(env)
                try:
                    self._channel = EventSocket()
                    env[ENV_SOCK] = self._channel.path
                except OSError:  # no socket (an odd TMPDIR): the first process's pipe only
                    env.pop(ENV_SOCK, None)
            else:
                env.setdefault("PYTHONUNBUFFERED", "1")  # no hooks: no sitecustomize to do it
            self._started_ns = self._clock_ns()
            try:
                self._group.spawn(self.argv, env, self._cwd, pass_fds=(write_fd,))
            except BaseException:
                os.close(read_fd)
                self._close_channel()
                raise
            finally:
                os.close(write_fd)
            self._events = EventLines(read_fd, None if self._collect else EVENT_LINES)
            if self._channel is not None:
                self._channel.attach(self._events.follow)
            for stream, is_stderr in ((self._group.stdout, False), (self._group.stderr, True)):
                if stream is not None:
                    self._output.follow(stream, is_stderr=is_stderr)
            self._pids = frozenset({self._group.pid}) if self._group.pid is not None else frozenset()
            if self._group.pid is not None:
                self._watch = JobWatch(self._group.pid)
                self._job = self._watch.read(self._pids)  # the baseline: CPU % n/a until the next
            return self._snapshot()

    # ---- reading ----------------------------------------------------------------------------

    def poll(self, sample: Sample | None = None) -> WorkloadState:
        """What the workload has reported, now; never blocks. ``sample`` (a gputop Sample)
        feeds the energy per step."""
        with self._lock:
            self._read_events()
            if sample is not None:
                self._energy.add(sample, self._reader.start)
                self._sample = sample
                if self._rank_steps:
                    self._samples.append(sample)
                self._gpus_seen |= placement.job_gpus(sample.gpus, self._pids)
            if self._ended_ns is None and self._group.poll() is not None:
                self._finish()
            self._refresh_pids()
            return self._snapshot()

    @property
    def state(self) -> WorkloadState:
        with self._lock:
            return self._state if self._state is not None else self._snapshot()

    def drain(self) -> list[WorkloadStep | WorkloadMark]:
        """Every step and mark read since the last drain(), oldest first (for a recorder; needs
        ``Workload(..., collect=True)``), then every output line since: ``output`` marks named
        ``stdout`` or ``stderr``, ``args`` {"line", and "progress": true for a redrawn line}."""
        if not self._collect:
            raise RuntimeError("drain() needs Workload(..., collect=True)")
        with self._lock:
            self._read_events()
            out: list[WorkloadStep | WorkloadMark] = list(self._pending)
            self._pending.clear()
        for ts_ns, is_stderr, progress, line in self._output.take():
            args: dict[str, object] = {"line": line, "progress": True} if progress else {"line": line}
            out.append(WorkloadMark("output", ts_ns, name="stderr" if is_stderr else "stdout", args=args))
        return out

    def _read_events(self) -> None:
        if self._events is None:
            return
        for line in self._events.take():
            item = self._reader.feed(line)
            if item is None:
                continue
            if isinstance(item, WorkloadStep):
                self._steps.append(item)
                self._run.add(item)
                self._run_by_rank.add(item)
                self._rank_totals.add(item)
                if item.rank is not None:
                    self._rank_steps.setdefault(item.rank, collections.deque(maxlen=self._steps.maxlen)).append(item)
                if item.loss is not None:
                    self._losses.append(item.loss)
            if self._collect:
                self._pending.append(item)

    def stalled_ranks(self, now_ns: int | None = None) -> dict[int, float]:
        """The ranks that have stopped stepping (``ranks.stalled``): rank -> seconds since its last step."""
        with self._lock:
            recent = [s for mine in self._rank_steps.values() for s in mine]
        return ranks.stalled(recent, self._clock_ns() if now_ns is None else now_ns)

    def stalled_job(self, now_ns: int | None = None) -> float | None:
        """A job without ranks that has stopped stepping (``ranks.quiet_s``): seconds since its
        last step; None where it steps on, has not stepped, or has ranks (``stalled_ranks``)."""
        with self._lock:
            if self._rank_steps:
                return None
            recent = list(self._steps)
        return ranks.quiet_s(recent, self._clock_ns() if now_ns is None else now_ns)

    def ranks_seen(self) -> set[int]:
        """The ranks that have stepped."""
        with self._lock:
            return set(self._rank_steps)

    def rank_totals(self) -> dict[int, ranks.RankTotal]:
        """Each rank's steps and samples since the job began (every attempt's), by rank."""
        with self._lock:
            return self._rank_totals.totals()

    def run_id(self) -> str | None:
        """The job's run id as its processes gave it in their hellos (torchrun's rendezvous id,
        ``TORCHELASTIC_RUN_ID``); None where none gave one."""
        with self._lock:
            ids = sorted({f["run_id"] for f in self._reader.processes.values() if f.get("run_id")})
        return ids[0] if ids else None

    def capture_stacks(self, timeout_s: float = 5.0) -> list[dict[str, Any]]:
        """Every connected process's Python stacks, asked through the events socket (answered by a
        thread of the hooks in each; see gputop.workload.channel): a list of ``{pid, rank, ts_ns,
        threads: [{thread, main, stack}]}``, by rank, of those that answered within ``timeout_s``
        ([] for a job without the socket, or ended). Blocks up to ``timeout_s``: not on a UI thread."""
        channel = self._channel
        if channel is None:
            return []
        answers = channel.capture_stacks(timeout_s)
        return sorted(answers, key=lambda a: (not isinstance(a.get("rank"), int), a.get("rank") or 0, a.get("pid") or 0))

    # ---- the process ------------------------------------------------------------------------

    def _finish(self) -> None:
        """The main process has exited (and was reaped by poll/wait): collect what is left."""
        self._ended_ns = self._clock_ns()
        # its last lines and events: there at once, unless a grandchild holds the pipes
        self._output.join(0.25)
        if self._events is not None:  # the ranks' connections: their last lines, even on a busy machine
            self._events.join(0.25, None if self._channel is None else RANKS_JOIN_S)
        self._read_events()
        self._group.reap()
        self._group.note_gone()
        self._close_channel()

    def _close_channel(self) -> None:
        if self._channel is not None:
            self._channel.close()
            self._channel = None

    def _refresh_pids(self) -> None:
        pid = self._group.pid
        if pid is None:
            return
        if self._ended_ns is not None:
            self._pids = frozenset()
            return
        now = time.monotonic()
        if now - self._pids_at < PIDS_EVERY_S:
            return
        from gputop.sources.cpu import process_tree  # psutil lives there

        self._pids_at = now
        self._pids = process_tree(pid) or frozenset({pid})
        if self._watch is not None:
            ranks = [p for p, facts in self._reader.processes.items() if facts.get("rank") is not None]
            self._gone_pids.update(p for p in ranks if p not in self._pids)
            self._job = self._watch.read(self._pids, ranks)
            if self._job is not None:
                placement.add(self._core_cpu_s, self._job.core_cpu_s)
                reading = causes.reading_of(self._job)
                if reading is not None:
                    self._readings.append(reading)

    def stop(self, grace_s: float = 3.0) -> WorkloadState:
        """SIGTERM to the whole group, SIGKILL after ``grace_s``, reap. Idempotent; a workload
        still running when called ends with status "stopped". The waiting is done without the
        lock, so poll() from another thread (the TUI's event loop) carries on meanwhile."""
        group = self._group
        with self._lock:
            if group.proc is None:
                self._stopped = True
                return self._snapshot()
            if self._ended_ns is None and group.poll() is None:
                self._stopped = True
            elif self._ended_ns is None:  # exited since the last poll(): see what is left of it
                self._finish()
            if group.gone:
                self._pids = frozenset()
                return self._snapshot()
            self._kill_at = time.monotonic() + grace_s  # poll() says "stopping" meanwhile
        group.terminate(grace_s)
        with self._lock:
            if self._ended_ns is None:
                self._finish()
            group.reap()
            if self._events is not None:
                self._events.join(1.0)
            self._read_events()
            self._pids = frozenset()
            group.note_gone()
            return self._snapshot()

    def __enter__(self) -> Workload:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ---- the snapshot -----------------------------------------------------------------------

    def _status(self) -> tuple[str, str | None]:
        if self._group.proc is None:
            return ("stopped" if self._stopped else "running"), None
        if self._ended_ns is None:
            return ("stopping" if self._kill_at is not None else "running"), None
        end = self._reader.end or {}
        reason = self._output.reason
        if self._stopped:
            return "stopped", None
        if end.get("status") == "error":
            return "failed", end.get("error") or reason or "the workload reported an error"
        rc = self._group.returncode
        if rc == 0:
            return "ok", None
        if rc is not None and rc < 0:  # its last words (a progress bar, a log line) are not why
            return "failed", f"killed by {signal_name(-rc)}"
        return "failed", reason or f"exit code {rc}"

    def _with_joules(self) -> None:
        """Give each recent step without energy its share, once the curve covers it."""
        for i, s in enumerate(self._steps):
            if s.joules is None:
                joules = self._energy.joules(s)
                if joules is not None:
                    self._steps[i] = dataclasses.replace(s, joules=joules)
                    self._run.add_joules(s, joules)

    def _placement(self, start: Mapping[str, Any]) -> Placement | None:
        """The job's placement, worked out again only when what it is drawn from changed (the
        job's CPU time is read about every second; a poll may come at 100 Hz)."""
        sample = self._sample
        key = (
            id(self._job),
            frozenset(self._gpus_seen),
            start.get("device"),
            start.get("device_uuid"),
            None if sample is None else tuple(id(g.info) for g in sample.gpus),
        )
        if key != self._placed[0]:
            self._placed = (
                key,
                insight.live_placement(sample, self._gpus_seen, start.get("device"), start.get("device_uuid"), self._env, self._core_cpu_s),
            )
        return self._placed[1]

    def _snapshot(self) -> WorkloadState:
        self._with_joules()
        status, error = self._status()
        start = self._reader.start
        now_ns = self._ended_ns if self._ended_ns is not None else self._clock_ns()
        by_rank, straggler, stall = ranks.rows(
            self._rank_steps,
            self._reader.processes,
            now_ns,
            gone_pids=self._gone_pids,
            ended=self._ended_ns is not None,
            samples=self._samples,
            readings=self._readings,
        )
        # a distributed job's step series: its straggler's (the rank the others wait for, as report
        # takes it), else its slowest rank's
        held = self._rank_steps.get(straggler.rank) if straggler is not None else None
        series = held or ranks.job_steps(self._rank_steps) or self._steps
        window = rates.window(series)
        last = series[-1] if series else None
        if self._ended_ns is None:  # running: the recent steps'
            live = rates.over(window, start.get("flops_per_step"), start.get("peak_flops"))
            if last is not None and last.rank is not None:  # a distributed job's: the sum over its ranks
                live = dataclasses.replace(
                    live, samples_per_s=ranks.live_samples_per_s(s for mine in self._rank_steps.values() for s in mine)
                )
        else:  # ended: the whole run's, as the job's own summary and the replay give them
            live = self._run.rates(start.get("flops_per_step"), start.get("peak_flops"))
            if self._run_by_rank.ranks:  # a distributed job's: the sum over its ranks
                live = dataclasses.replace(live, samples_per_s=self._run_by_rank.samples_per_s())
        judged = list(series)  # (without ranks, series is self._steps)
        output = self._output.snapshot()
        phases = self._reader.phases
        self._state = WorkloadState(
            name=self.name,
            argv=self.argv,
            pid=self._group.pid,
            status=status,
            returncode=self._group.returncode,
            started_ns=self._started_ns,
            ended_ns=self._ended_ns,
            events=self._reader.read > 0,
            device=start.get("device"),
            device_name=start.get("device_name"),
            precision=start.get("precision"),
            batch_size=start.get("batch_size"),
            sample_unit=start.get("sample_unit") or "samples",
            tokens_per_sample=start.get("tokens_per_sample"),
            flops_per_step=start.get("flops_per_step"),
            peak_flops=start.get("peak_flops"),
            peak_flops_source=start.get("peak_flops_source"),
            steps_planned=start.get("steps_planned"),
            step=None if last is None else last.step,
            samples_per_s=live.samples_per_s,
            tflops=live.tflops,
            mfu_pct=live.mfu_pct,
            loss=None if last is None else last.loss,
            losses=tuple(self._losses),
            joules_per_step=rates.joules_per_step(window) if self._ended_ns is None else self._run.joules_per_step,
            recent_steps=tuple(series),
            error=error,
            pids=self._pids,
            output_tail=output,
            phase=phases[-1] if phases else None,
            events_ignored=self._reader.ignored + (self._events.dropped if self._events else 0),
            last_step_age_s=None if last is None else max(0.0, (now_ns - last.ts_ns) / 1e9),
            kill_in_s=None if status != "stopping" or self._kill_at is None else max(0.0, self._kill_at - time.monotonic()),
            steps_source=self._reader.steps_source,
            # over the steps the verdict is drawn from, so the two agree: a distributed job's
            # slowest rank's (as report takes them), its own loader workers counted
            data_wait_share=rates.data_wait_share(insight.measured(judged) or list(judged)),
            job=self._job,
            verdict=insight.live_verdict(
                tuple(judged), start.get("device"), self._job, self._sample, self._env, start.get("device_uuid"), judged[-1].pid
            )
            if judged
            else None,
            placement=self._placement(start),
            ranks=by_rank,
            straggler=straggler,
            rank_stall=stall,
            rank_steps=tuple(sorted((s for mine in self._rank_steps.values() for s in mine), key=lambda s: s.ts_ns)),
        )
        return self._state
