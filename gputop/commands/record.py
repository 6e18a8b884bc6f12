"""`gputop record`: sample headless into a trace that Perfetto and chrome://tracing open.

Imports neither textual nor torch. The output file is opened before the first sample, so a path
that cannot be written is reported at once. Ctrl-C, SIGTERM and SIGHUP end the recording cleanly
(the file is closed with its ``]``); a SIGKILL leaves a file that still loads (see gputop.trace).

With ``--run`` a workload is launched (gputop.workload) and recorded with the devices: the
recording ends when it does (or at --duration, Ctrl-C, SIGTERM, SIGHUP, which stop it). Its steps,
phases and counters go into the trace on its own pid, written every DRAIN_S whatever --interval
(none is lost between two samples), and last an ``exit`` instant: how its process ended (status,
exit code or signal, error, stopped by gputop at --duration or on which signal), and how many
events could not be written as sent. The workload's stdout and stderr lines go into the trace
too (instants on its ``output`` thread, each stamped when read) and are echoed to this terminal as
they come (stdout to stdout, stderr to stderr; redrawn progress bars only to the trace), unless
``--quiet``. A Python script's training steps are detected (gputop.workload.inject) unless
``--no-instrument``. A distributed job that has stalled when the recording ends (a rank with no
step for many of its typical steps: gputop.workload.ranks.stalled), or a job without ranks whose
steps have stopped by the same rule (ranks.quiet_s), has every connected process's Python stacks
captured first (``Workload.capture_stacks``: the ranks and the first process) and written as
``stacks`` instants, which ``report`` prints.
"""

from __future__ import annotations

import argparse
import math
import os
import time
from typing import Any, Callable, TextIO

from gputop import console
from gputop import format as fmt
from gputop.argtypes import INTERVAL, file_name, seconds
from gputop.commands import launch
from gputop.environment import Environment
from gputop.exitstatus import ExitStatus
from gputop.model import Sample, WorkloadMark, WorkloadState, WorkloadStep
from gputop.sampler import SamplerLike, iter_samples
from gputop.signals import Stopped, StopSignals, signal_name
from gputop.trace import TraceWriter
from gputop.workload import Workload, WorkloadError
from gputop.workload.channel import stacks_text

PROG = "gputop record"
EXAMPLES = """\
examples:
  gputop record --out trace.json                       until Ctrl-C, one sample a second
  gputop record --out trace.json --interval 0.01 --duration 60
                                                       one minute at 100 Hz
  gputop record --out trace.json --force               overwrite an existing trace.json
  gputop record --out trace.json --run cnn -- --steps 50
                                                       record while a bundled workload runs
  gputop record --out trace.json --run train.py        ... or your own script (ends with it)

Open the file in https://ui.perfetto.dev or chrome://tracing, or summarize it with
'gputop report trace.json'.
"""
PROGRESS_EVERY_S = 0.25  # the progress line is redrawn at most this often, whatever the rate
DRAIN_S = 0.25  # a workload's steps are written at least this often, whatever --interval
STACKS_TIMEOUT_S = 5.0  # a stalled job's processes answer with their stacks within this


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> argparse.ArgumentParser:
    """Add ``record`` to the CLI's subparsers (the parser class is the CLI's own)."""
    parser = subparsers.add_parser(
        "record",
        help="record samples to a Chrome/Perfetto trace file",
        description="Record every CPU core and every GPU, headless, to a trace file in the Chrome "
        "trace event format (JSON). Stops at --duration, Ctrl-C, SIGTERM or SIGHUP.",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--out", required=True, type=file_name, metavar="PATH", help="trace file to write")
    parser.add_argument(
        "--interval",
        type=INTERVAL,
        default=1.0,
        metavar="S",
        help="seconds between samples (default 1; 0.01 for 100 Hz, where the GPUs "
        "are still read only about every 0.1 s: NVML refreshes no faster)",
    )
    parser.add_argument(
        "--duration",
        type=seconds(0.0, 366 * 86400),
        default=None,
        metavar="S",
        help="stop after S seconds (default: until Ctrl-C or SIGTERM)",
    )
    parser.add_argument("--force", action="store_true", help="overwrite PATH if it exists")
    launch.add_run_arguments(parser, "record until it ends", " (it is still recorded)")
    return parser


def run(args: argparse.Namespace, env: Environment) -> int:
    """Record until --duration, Ctrl-C or SIGTERM. ``env.sampler`` is used as given; without
    one, ``env.open_sampler`` builds the real sources, after the output file is open (so a bad
    path costs nothing), and they are closed at the end."""
    try:
        workload = launch.workload(args)
    except WorkloadError as exc:
        return env.error(str(exc), ExitStatus.USAGE)
    writer = _open_writer(args, workload)
    if isinstance(writer, str):
        return env.error(writer)
    sampler = env.sampler
    close_failed = None
    driver_from = None
    try:
        if sampler is None:
            # the GPUs' process lists (the costliest NVML reads) only for a launched job's GPUs:
            # the trace holds none
            sampler = env.open_sampler(2.0 if workload is not None else math.inf)
        intervals = getattr(sampler, "read_intervals", None)
        if intervals is not None:  # (the header goes out with the first sample)
            writer.settings["read_every_s"] = intervals()
        driver_from = (_driver_time(sampler), env.clock())
        progress = _Progress(writer, env.stderr, env.clock) if env.stderr_isatty else None
        echo = None if getattr(args, "quiet", False) else _Echo(env.stdout, env.stderr, progress)
        recording = _Recording(writer, workload, sampler, progress, echo)
        recording.record(args, env.clock)
    except WorkloadError as exc:
        return env.error(str(exc), ExitStatus.USAGE)
    except OSError as exc:  # disk full, file system gone: what was written still loads
        return env.error(f"writing {args.out} failed after {writer.samples} samples: {exc.strerror or exc}")
    finally:
        if sampler is not None and driver_from is not None:
            _write_driver_time(writer, sampler, driver_from, env.clock())
        close_failed = _close(writer, sampler if env.sampler is None else None)
    if close_failed:  # the disk filled at the very end: the samples are there, the closing ] is not
        return env.error(f"writing {args.out} failed at its end after {writer.samples} samples: {close_failed}")
    return _workload_ended(recording, env.stderr)


def _open_writer(args: argparse.Namespace, workload: Workload | None) -> TraceWriter | str:
    """The trace file, created with its header's settings; or why it could not be."""
    settings = {"interval_s": args.interval, "duration_s": args.duration, "command": "gputop record", "pid": os.getpid()}
    if workload is not None:
        settings["run"] = list(workload.argv)
    if os.path.isdir(args.out):
        return f"{args.out} is a directory; --out names the trace file to write"
    try:
        return TraceWriter.create(args.out, force=args.force, settings=settings)
    except FileExistsError:
        return f"{args.out} exists (use --force to overwrite it)"
    except OSError as exc:
        return f"cannot write {args.out}: {exc.strerror or exc}"


def _driver_time(sampler: SamplerLike) -> tuple[float, int] | None:
    """The sampler's own time in GPU driver calls so far (seconds, calls), where it counts it."""
    driver_time = getattr(sampler, "driver_time", None)
    return None if driver_time is None else driver_time()


def _write_driver_time(writer: TraceWriter, sampler: SamplerLike, start: tuple[tuple[float, int] | None, float], now: float) -> None:
    """The recording's driver time since ``start`` ((driver time, clock) after the open) into the trace."""
    first, end = start[0], _driver_time(sampler)
    if first is not None and end is not None:
        try:
            writer.write_driver_time(end[0] - first[0], end[1] - first[1], now - start[1])
        except OSError:
            pass  # the disk filled: the closing ] fails the same way and says so


def _close(writer: TraceWriter, sampler: SamplerLike | None) -> str | None:
    """The trace closed, then the sources this command opened; why the closing ``]`` could not
    be written, or None."""
    try:
        writer.close()
    except OSError as exc:
        return exc.strerror or str(exc)
    finally:
        if sampler is not None:
            sampler.close()
    return None


def _workload_ended(recording: _Recording, stderr: TextIO) -> int:
    """How the workload ended, on one stderr line; the exit status (1: it failed)."""
    state = recording.state
    if state is None:
        return ExitStatus.OK
    if recording.stall:
        stderr.write(f"{PROG}: {recording.stall}\n")
    stderr.write(launch.ended_line(PROG, state, recording.stopped_by, _lost(state, recording.workload, recording.writer)) + "\n")
    return ExitStatus.FAILURE if state.status == "failed" else ExitStatus.OK


class _Recording:
    """One recording under way: samples (and the workload's steps and marks) into the writer,
    until --duration, a stop signal or the workload's end; what became of the workload."""

    def __init__(
        self, writer: TraceWriter, workload: Workload | None, sampler: SamplerLike, progress: _Progress | None, echo: _Echo | None
    ) -> None:
        self.writer, self.workload, self.sampler, self.progress = writer, workload, sampler, progress
        self.drain: Drain = (lambda: []) if workload is None else _drainer(workload, echo)
        self.state: WorkloadState | None = None
        self.stopped_by: str | None = None  # "--duration", or the signal that stopped the recording
        self.stall: str | None = None  # the ranks that had stalled when it ended, and where their stacks are

    def record(self, args: argparse.Namespace, clock: Callable[[], float]) -> None:
        with StopSignals() as stop:
            sleep = stop.sleep if self.workload is None else _draining(stop.sleep, self.workload, self.writer, self.drain)
            try:
                self._start_workload()
                if self._sample(args, stop, clock, sleep):
                    self.stopped_by = "--duration"
            except Stopped:
                pass
            finally:
                if stop.signal is not None:
                    self.stopped_by = signal_name(stop.signal)
                self._stop_workload()
            if self.progress:
                self.progress.finish(self.state)

    def _start_workload(self) -> None:
        if self.workload is not None:  # on this (the main) thread: see Workload.start
            self.workload.start()
            if self.workload.pid is not None:
                self.writer.set_workload(self.workload.pid, self.workload.name, self.workload.argv)

    def _sample(self, args: argparse.Namespace, stop: StopSignals, clock: Callable[[], float], sleep: Callable[[float], None]) -> bool:
        """Samples written until one of the ends; True where it was --duration's."""
        for sample in iter_samples(self.sampler, args.interval, args.duration, clock=clock, sleep=sleep):
            self._write(sample)
            if self.progress:
                self.progress.update(self.state)
            if stop.event.is_set():
                return False
            if self.state is not None and not self.state.running:
                # one more sample once the GPUs can be read again, so that the energy
                # of the last steps is covered (as `compare` does)
                stop.sleep(self.sampler.gpu_interval_s)
                self._write(self.sampler.sample())
                return False
        return True

    def _write(self, sample: Sample) -> None:
        self.writer.write_sample(sample)
        if self.workload is not None:
            self.state = self.workload.poll(sample)
            self.writer.write_workload(self.drain(), self.state, sample.ts_ns)

    def _stop_workload(self) -> None:
        """The workload stopped (if it still runs), its last items and its exit written."""
        if self.workload is None:
            return
        self._stacks_on_stall(self.workload)
        state = self.state = self.workload.stop()
        self.writer.write_workload(self.drain())
        self.writer.write_workload_exit(
            state,
            time.time_ns(),
            stopped_by=self.stopped_by if state.status == "stopped" else None,
            events_ignored=state.events_ignored or None,
            pending_dropped=self.workload.pending_dropped or None,
        )

    def _stacks_on_stall(self, workload: Workload) -> None:
        """Where the recording ends while ranks of the job have stalled (``ranks.stalled``), every
        rank's Python stacks first: a ``stacks`` instant per process that answered, and one for
        each rank that did not, with what stalled."""
        if not workload.poll().running:
            return
        stalled = workload.stalled_ranks()
        quiet = None if stalled else workload.stalled_job()  # a job without ranks: its one series
        if not stalled and quiet is None:
            return
        what = ", ".join(f"rank {r}: no step for {s:.0f} s" for r, s in sorted(stalled.items())) or f"no step for {quiet:.0f} s"
        answers = workload.capture_stacks(STACKS_TIMEOUT_S)
        now = time.time_ns()
        marks = [WorkloadMark("stacks", now, args={"stalled": what, **stacks_args(a)}) for a in answers]
        heard = {a.get("rank") for a in answers}
        marks += [
            WorkloadMark(
                "stacks", now, args={"stalled": what, "rank": r, "stacks": None, "error": f"no answer within {STACKS_TIMEOUT_S:g} s"}
            )
            for r in sorted(workload.ranks_seen() - heard)
        ]
        if not stalled and not answers:  # the one process of a job without ranks did not answer
            error = f"no answer within {STACKS_TIMEOUT_S:g} s"
            marks.append(WorkloadMark("stacks", now, args={"stalled": what, "rank": None, "root": True, "stacks": None, "error": error}))
        self.writer.write_workload([*self.drain(), *marks])
        self.stall = f"{what}; {len(answers)} processes' stacks are in the trace ('gputop report {self.writer.path}')"


def stacks_args(answer: dict[str, Any]) -> dict[str, Any]:
    """One process's answer to a ``stacks`` request as a trace instant's plain args: its threads'
    stacks as one text, the main thread first."""
    pid, rank = answer.get("pid"), answer.get("rank")
    return {
        "pid": pid if isinstance(pid, int) else None,
        "rank": rank if isinstance(rank, int) else None,
        "root": answer.get("root") is True,
        "threads": sum(isinstance(t, dict) for t in answer.get("threads") or ()),
        "stacks": stacks_text(answer),
    }


Drain = Callable[[], "list[WorkloadStep | WorkloadMark]"]


def _drainer(workload: Workload, echo: _Echo | None) -> Drain:
    """``workload.drain()``, echoing its output lines on the way."""

    def drain() -> list[WorkloadStep | WorkloadMark]:
        items = workload.drain()
        if echo is not None:
            echo.lines(items)
        return items

    return drain


class _Echo:
    """The workload's output lines, echoed: stdout's to stdout, stderr's to stderr; a redrawn
    progress line (a tqdm bar) only into the trace. The progress line is cleared first."""

    def __init__(self, stdout: TextIO, stderr: TextIO, progress: _Progress | None) -> None:
        self.stdout, self.stderr, self.progress = stdout, stderr, progress

    def lines(self, items: list[WorkloadStep | WorkloadMark]) -> None:
        lines = launch.shown(items)
        if not lines:
            return
        if self.progress is not None:
            self.stderr.write(console.CLEAR_LINE)
            self.progress.last = -PROGRESS_EVERY_S  # redrawn at the next update
        launch.echo(lines, self.stdout, self.stderr)


def _draining(sleep: Callable[[float], None], workload: Workload, writer: TraceWriter, drain: Drain) -> Callable[[float], None]:
    """``sleep``, in slices of DRAIN_S, writing the workload's steps and marks after each: with a
    long --interval and short steps, they would otherwise pile up between two samples. Returns
    early once the workload has ended, so its end is recorded without waiting out --interval."""

    def drained_sleep(seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                return
            sleep(min(left, DRAIN_S))
            if writer.samples:  # items drained before the header would be lost
                writer.write_workload(drain())
            if not workload.poll().running:
                return

    return drained_sleep


def _lost(state: WorkloadState, workload: Workload | None, writer: TraceWriter) -> str:
    """``; 3 event lines ignored, ...`` for what did not reach the trace as it was sent."""
    counts = [
        (state.events_ignored, "event lines ignored (malformed, unknown, or unread)"),
        (0 if workload is None else workload.pending_dropped, "events dropped unwritten"),
        (writer.steps_out_of_order, "steps out of order (written as instants)"),
        (writer.phases_unmatched, "phase ends without a begin (left out)"),
    ]
    return "".join(f"; {n} {what}" for n, what in counts if n)


class _Progress:
    """``recording trace.json  12.3 s  1234 samples  1.2 MiB`` on one redrawn stderr line."""

    def __init__(self, writer: TraceWriter, stream: TextIO, clock: Callable[[], float]) -> None:
        self.writer, self.stream, self.clock = writer, stream, clock
        self.start = clock()
        self.last = -PROGRESS_EVERY_S

    def line(self, state: WorkloadState | None = None) -> str:
        elapsed = self.clock() - self.start
        step = ""
        if state is not None and state.step is not None:
            step = f"  {state.name} step {state.step}/{state.steps_planned or '?'}"
        return (
            f"recording {self.writer.path}  {elapsed:.1f} s  {self.writer.samples} samples  "
            f"{fmt.bytes_(self.writer.bytes_written)}{step}  (Ctrl-C to stop)"
        )

    def update(self, state: WorkloadState | None = None) -> None:
        now = self.clock()
        if now - self.last >= PROGRESS_EVERY_S:
            self.last = now
            self.stream.write(console.CLEAR_LINE + self.line(state))
            self.stream.flush()

    def finish(self, state: WorkloadState | None = None) -> None:
        self.stream.write(console.CLEAR_LINE + self.line(state).replace("  (Ctrl-C to stop)", "") + "\n")
        self.stream.flush()
