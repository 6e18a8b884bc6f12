"""`gputop merge`: a gputop recording and a PyTorch profiler trace on one timeline.

gputop stamps its events with ``time.time_ns()`` (microseconds since the epoch in ``ts``).
PyTorch's profiler (Kineto) writes ``ts`` relative to ``baseTimeNanoseconds``, which is on the
same clock, so the profiler's absolute time is ``ts + baseTimeNanoseconds / 1000``. The merged
file is gputop's format (a bare JSON array, one event per line) and opens in Perfetto with the
GPU counters under the profiler's CPU ops and kernels.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from typing import Any, Iterable

from gputop import trace
from gputop.argtypes import file_name
from gputop.exitstatus import ExitStatus

EXAMPLES = """\
examples:
  gputop record --out gpu.json --interval 0.05 &      # while the job runs with torch.profiler
  gputop merge gpu.json torch_trace.json --out merged.json
"""


class MergeError(Exception):
    """One line for the user."""


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> argparse.ArgumentParser:
    p = sub.add_parser(
        "merge", help="merge a recording with a PyTorch profiler trace",
        description="Put a gputop recording and a PyTorch profiler chrome trace "
                    "(prof.export_chrome_trace) on one timeline, in one file.",
        epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("recording", help="trace written by 'gputop record'")
    p.add_argument("torch_trace", help="chrome trace exported by torch.profiler")
    p.add_argument("--out", required=True, type=file_name, metavar="PATH", help="merged trace to write")
    p.add_argument("--force", action="store_true", help="overwrite PATH if it exists")
    return p


def run(args: argparse.Namespace) -> int:
    try:
        if os.path.exists(args.out) and not args.force:
            raise MergeError(f"{args.out} exists (use --force to overwrite it)")
        ours = trace.load(args.recording)
        theirs, base_note = load_torch(args.torch_trace)
        events = merged_events(ours, theirs)
        _write_atomically(args.out, events)
    except (MergeError, trace.TraceError) as exc:
        print(f"gputop merge: error: {exc}", file=sys.stderr)
        return ExitStatus.FAILURE
    if base_note:
        print(f"gputop merge: note: {base_note}", file=sys.stderr)
    gap = _disjoint(ours.events, theirs)
    if gap:
        print(f"gputop merge: warning: {gap}", file=sys.stderr)
    return ExitStatus.OK


def load_torch(path: str) -> tuple[list[dict[str, Any]], str | None]:
    """The profiler's events with ``ts`` made absolute (microseconds since the epoch)."""
    try:
        with open(path, "rb") as f:
            doc = json.loads(f.read())
    except OSError as exc:
        raise MergeError(f"cannot read {path}: {exc.strerror or exc}") from None
    except ValueError:
        raise MergeError(f"{path} is not JSON (was the profiler trace written completely?)") from None
    events = doc.get("traceEvents") if isinstance(doc, dict) else doc if isinstance(doc, list) else None
    if not isinstance(events, list) or not all(isinstance(e, dict) for e in events):
        raise MergeError(f"{path} is JSON but not a chrome trace (no traceEvents array)")
    base_ns = doc.get("baseTimeNanoseconds") if isinstance(doc, dict) else None
    note = None
    if base_ns is None:
        note = f"{path} has no baseTimeNanoseconds; its ts are taken as already absolute"
        base_ns = 0
    elif not isinstance(base_ns, int):
        raise MergeError(f"{path}: baseTimeNanoseconds is not an integer")
    shifted = []
    for event in events:
        if isinstance(event.get("ts"), (int, float)):
            event = {**event, "ts": round(event["ts"] + base_ns / 1000, 3)}
        shifted.append(event)
    return shifted, note


_PROCESS_META = ("process_name", "process_sort_index", "process_labels")


def merged_events(ours: trace.Trace, theirs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Metadata first (gputop's header leads, so the result still loads as a gputop trace).

    A process both traces describe (the workload of a ``record --run``, profiled with
    torch.profiler) keeps the profiler's name and order, not two records for one pid; gputop's
    threads on it have tids of their own (trace.STEPS_TID_BASE, PHASE_TID_BASE)."""
    named = {(e.get("name"), e.get("pid")) for e in theirs
             if e.get("ph") == "M" and e.get("name") in _PROCESS_META}
    meta = [e for e in ours.events
            if e.get("ph") == "M" and (e.get("name"), e.get("pid")) not in named
            ] + [e for e in theirs if e.get("ph") == "M"]
    timed = [e for e in ours.events if e.get("ph") != "M"] + [e for e in theirs if e.get("ph") != "M"]
    return meta + timed


def _write_atomically(path: str, events: Iterable[dict[str, Any]]) -> None:
    directory = os.path.dirname(os.path.abspath(path))
    try:
        fd, tmp = tempfile.mkstemp(prefix=".gputop-merge-", dir=directory)
    except OSError as exc:
        raise MergeError(f"cannot write in {directory}: {exc.strerror or exc}") from None
    try:
        with os.fdopen(fd, "w") as f:
            for i, event in enumerate(events):
                f.write(("[" if i == 0 else ",") + trace.dumps_event(event) + "\n")
            f.write("]\n")
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise


def _span(events: Iterable[dict[str, Any]]) -> tuple[float, float] | None:
    stamps = [float(e["ts"]) for e in events if e.get("ph") != "M" and isinstance(e.get("ts"), (int, float))]
    return (min(stamps), max(stamps)) if stamps else None


def _disjoint(ours: Iterable[dict[str, Any]], theirs: Iterable[dict[str, Any]]) -> str | None:
    a, b = _span(ours), _span(theirs)
    if a is None or b is None or (b[0] <= a[1] and a[0] <= b[1]):
        return None
    gap_s = (b[0] - a[1] if b[0] > a[1] else a[0] - b[1]) / 1e6
    return (f"the recording and the profiler trace do not overlap in time ({gap_s:.1f} s apart): "
            "were they taken on different machines, or the recording started after the profile?")
