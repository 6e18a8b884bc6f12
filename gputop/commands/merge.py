"""`gputop merge`: a gputop recording and a PyTorch profiler trace on one timeline.

gputop stamps its events with ``time.time_ns()`` (microseconds since the epoch in ``ts``).
PyTorch's profiler (Kineto) writes ``ts`` relative to ``baseTimeNanoseconds``, which is on the
same clock, so the profiler's absolute time is ``ts + baseTimeNanoseconds / 1000``. The merged
file is gputop's format (a bare JSON array, one event per line) and opens in Perfetto with the
GPU counters under the profiler's CPU ops and kernels.

Both inputs are streamed, in bounded memory whatever their length. The recording's counter
lines are copied as they are. The profiler's trace, one JSON document whose
``baseTimeNanoseconds`` may come after its events, is read twice by ``trace.chrome``: once to
check it and find its base, its metadata and its span, then again as its events are written.
"""

from __future__ import annotations

import argparse
import math
import os
import stat
import tempfile
from dataclasses import dataclass
from typing import Any, Iterator

from gputop import trace
from gputop.argtypes import file_name
from gputop.commands.progress import Progress
from gputop.environment import Environment
from gputop.exitstatus import ExitStatus
from gputop.trace.chrome import ChromeEvents, ChromeTraceError
from gputop.trace.schema import CounterRun
from gputop.trace.stream import TraceStream, decoder_for

EXAMPLES = """\
examples:
  gputop record --out gpu.json --interval 0.05 &      # while the job runs with torch.profiler
  gputop merge gpu.json torch_trace.json --out merged.json
"""


class MergeError(Exception):
    """One line for the user."""


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> argparse.ArgumentParser:
    p = sub.add_parser(
        "merge",
        help="merge a recording with a PyTorch profiler trace",
        description="Put a gputop recording and a PyTorch profiler chrome trace (prof.export_chrome_trace) on one timeline, in one file.",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("recording", help="trace written by 'gputop record'")
    p.add_argument("torch_trace", help="chrome trace exported by torch.profiler")
    p.add_argument("--out", required=True, type=file_name, metavar="PATH", help="merged trace to write")
    p.add_argument("--force", action="store_true", help="overwrite PATH if it exists")
    return p


def run(args: argparse.Namespace, env: Environment) -> int:
    stdout, stderr = env.stdout, env.stderr
    progress = None
    try:
        if os.path.exists(args.out) and not args.force:
            raise MergeError(f"{args.out} exists (use --force to overwrite it)")
        theirs = load_torch(args.torch_trace)
        size = os.path.getsize(args.recording) if os.path.isfile(args.recording) else 0
        progress = Progress(
            size, f"gputop merge: reading {os.path.basename(args.recording)}", stderr, clock=env.clock, tty=env.stderr_isatty
        )
        with TraceStream(args.recording, progress) as ours:
            written = _write_atomically(args.out, ours, theirs)
    except (MergeError, trace.TraceError) as exc:
        if progress is not None:
            progress.clear()
        return env.error(str(exc))
    if progress is not None:
        progress.clear()
    if theirs.note:
        print(f"gputop merge: note: {theirs.note}", file=stderr)
    gap = _disjoint(written.span, theirs.span)
    if gap:
        print(f"gputop merge: warning: {gap}", file=stderr)
    print(
        f"gputop merge: wrote {args.out}: {written.samples} samples and {written.ours:,} events of "
        f"the recording, {theirs.count:,} of the profiler",
        file=stdout,
    )
    return ExitStatus.OK


@dataclass
class Profile:
    """A profiler's trace, checked (one pass): what the merge needs before writing, and
    ``events()``, its events again with ``ts`` made absolute (microseconds since the epoch)."""

    source: ChromeEvents
    base_ns: int
    note: str | None  # where baseTimeNanoseconds is missing
    metadata: list[dict[str, Any]]  # its "M" events (a handful)
    count: int  # its events
    span: tuple[float, float] | None  # of its absolute ts (metadata left out)

    def events(self) -> Iterator[dict[str, Any]]:
        try:
            for event in self.source.events():
                yield _shifted(event, self.base_ns)
        except ChromeTraceError as exc:
            raise MergeError(str(exc)) from None


def load_torch(path: str) -> Profile:
    """The profiler's trace at ``path``, read through once (nothing of it held but its
    metadata); MergeError where it is not a readable chrome trace."""
    source = ChromeEvents(path)
    metadata: list[dict[str, Any]] = []
    count, low, high = 0, math.inf, -math.inf
    try:
        for event in source.events():
            count += 1
            if event.get("ph") == "M":
                metadata.append(event)
            elif isinstance(event.get("ts"), (int, float)):
                low, high = min(low, event["ts"]), max(high, event["ts"])
    except ChromeTraceError as exc:
        raise MergeError(str(exc)) from None
    base_ns = None if source.array else source.keys.get("baseTimeNanoseconds")
    note = None
    if base_ns is None:
        note = f"{path} has no baseTimeNanoseconds; its ts are taken as already absolute"
        base_ns = 0
    elif not isinstance(base_ns, int):
        raise MergeError(f"{path}: baseTimeNanoseconds is not an integer")
    metadata = [_shifted(e, base_ns) for e in metadata]
    span = None
    if low <= high:  # (the shift and round are monotonic: the shifted ends are the span's)
        span = (float(_shifted({"ts": low}, base_ns)["ts"]), float(_shifted({"ts": high}, base_ns)["ts"]))
    return Profile(source, base_ns, note, metadata, count, span)


def _shifted(event: dict[str, Any], base_ns: int) -> dict[str, Any]:
    if isinstance(event.get("ts"), (int, float)):
        return {**event, "ts": round(event["ts"] + base_ns / 1000, 3)}
    return event


_PROCESS_META = ("process_name", "process_sort_index", "process_labels")


def _metadata(ours: trace.Trace, theirs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Metadata first (gputop's header leads, so the result still loads as a gputop trace).

    A process both traces describe (the workload of a ``record --run``, profiled with
    torch.profiler) keeps the profiler's name and order, not two records for one pid; gputop's
    threads on it have tids of their own (trace.STEPS_TID_BASE, PHASE_TID_BASE)."""
    named = {(e.get("name"), e.get("pid")) for e in theirs if e.get("ph") == "M" and e.get("name") in _PROCESS_META}
    return [e for e in ours.events if e.get("ph") == "M" and (e.get("name"), e.get("pid")) not in named] + [
        e for e in theirs if e.get("ph") == "M"
    ]


@dataclass
class _Written:
    samples: int = 0  # complete samples of the recording (none: refused)
    ours: int = 0  # the recording's events
    span: tuple[float, float] | None = None  # of the recording's ts, in microseconds


def _write_atomically(path: str, ours: TraceStream, theirs: Profile) -> _Written:
    """The merged file, streamed: the metadata of both, the recording's events (its counter lines
    copied as they are), then the profiler's. Written beside ``path`` and renamed over it, with
    the mode of the file it replaces (else that of a new file, as ``record`` makes it). A
    recording with no complete sample is refused (as ``report`` does), leaving nothing."""
    directory = os.path.dirname(os.path.abspath(path))
    mode = _mode_for(path)
    try:
        fd, tmp = tempfile.mkstemp(prefix=".gputop-merge-", dir=directory)
    except OSError as exc:
        raise MergeError(f"cannot write in {directory}: {exc.strerror or exc}") from None
    done = _Written()
    decoder = decoder_for(ours.header)
    low, high = math.inf, -math.inf
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as f:
            for i, event in enumerate(_metadata(ours.header, theirs.metadata)):
                f.write((("[" if i == 0 else ",") + trace.dumps_event(event) + "\n").encode())
            for _, item in ours.items():
                if isinstance(item, CounterRun):
                    f.write(item.text + b"\n")
                    done.ours += item.lines
                    done.samples += len(decoder.run(item))
                    for stamp in (item.stamps[0], item.stamps[-1]):
                        ts = _ts_us(stamp)
                        low, high = min(low, ts), max(high, ts)
                    continue
                f.write(("," + trace.dumps_event(item) + "\n").encode())
                done.ours += 1
                done.samples += len(decoder.event(item))
                if item.get("ph") != "M" and isinstance(item.get("ts"), (int, float)):
                    low, high = min(low, float(item["ts"])), max(high, float(item["ts"]))
            done.samples += len(decoder.finish())
            if not done.samples:
                raise trace.TraceError(f"{ours.path} has no complete sample (nothing to merge)")
            for event in theirs.events():
                if event.get("ph") != "M":
                    f.write(("," + trace.dumps_event(event) + "\n").encode())
            f.write(b"]\n")
        os.replace(tmp, path)
    except OSError as exc:
        os.unlink(tmp)
        raise MergeError(f"cannot write {path}: {exc.strerror or exc}") from None
    except BaseException:
        os.unlink(tmp)
        raise
    done.span = (low, high) if low <= high else None
    return done


def _ts_us(stamp: bytes) -> float:
    try:
        return float(stamp[4:])  # after 'ts":'
    except ValueError:
        return math.nan


def _mode_for(path: str) -> int:
    """The mode of the file being replaced, else a new file's (0644 less the umask)."""
    try:
        return stat.S_IMODE(os.stat(path).st_mode)
    except OSError:
        umask = os.umask(0)
        os.umask(umask)
        return 0o644 & ~umask


def _disjoint(a: tuple[float, float] | None, b: tuple[float, float] | None) -> str | None:
    if a is None or b is None or (b[0] <= a[1] and a[0] <= b[1]):
        return None
    gap_s = (b[0] - a[1] if b[0] > a[1] else a[0] - b[1]) / 1e6
    return (
        f"the recording and the profiler trace do not overlap in time ({gap_s:.1f} s apart): "
        "were they taken on different machines, or the recording started after the profile?"
    )
