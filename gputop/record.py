"""`gputop record`: sample headless into a trace that Perfetto and chrome://tracing open.

Imports neither textual nor torch. The output file is opened before the first sample, so a path
that cannot be written is reported at once. Ctrl-C and SIGTERM end the recording cleanly (the
file is closed with its ``]``); a SIGKILL leaves a file that still loads (see gputop.trace).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from typing import Any, Callable, TextIO

from gputop import format as fmt
from gputop.cliutil import INTERVAL, StopSignals, Stopped, seconds
from gputop.sampler import iter_samples
from gputop.trace import TraceWriter

PROG = "gputop record"
EXAMPLES = """\
examples:
  gputop record --out trace.json                       until Ctrl-C, one sample a second
  gputop record --out trace.json --interval 0.01 --duration 60
                                                       one minute at 100 Hz
  gputop record --out trace.json --force               overwrite an existing trace.json

Open the file in https://ui.perfetto.dev or chrome://tracing, or summarize it with
'gputop report trace.json'.
"""
PROGRESS_EVERY_S = 0.25  # the progress line is redrawn at most this often, whatever the rate


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Add ``record`` to the CLI's subparsers (the parser class is the CLI's own)."""
    parser = subparsers.add_parser(
        "record", help="record samples to a Chrome/Perfetto trace file",
        description="Record every CPU core and every GPU, headless, to a trace file in the Chrome "
        "trace event format (JSON). Stops at --duration, Ctrl-C or SIGTERM.",
        epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", required=True, metavar="PATH", help="trace file to write")
    parser.add_argument("--interval", type=INTERVAL, default=1.0, metavar="S",
                        help="seconds between samples (default 1; 0.01 for 100 Hz)")
    parser.add_argument("--duration", type=seconds(0.0, 366 * 86400), default=None, metavar="S",
                        help="stop after S seconds (default: until Ctrl-C or SIGTERM)")
    parser.add_argument("--force", action="store_true", help="overwrite PATH if it exists")
    return parser


def _error(message: str) -> int:
    sys.stderr.write(f"{PROG}: error: {message}\n")
    return 1


def run(args: argparse.Namespace, *, sampler: Any = None, stderr: TextIO | None = None,
        clock: Callable[[], float] = time.monotonic) -> int:
    """Record until --duration, Ctrl-C or SIGTERM. ``sampler`` is for tests; by default the
    real sources are built (after the output file is open, so a bad path costs nothing)."""
    stderr = sys.stderr if stderr is None else stderr
    settings = {"interval_s": args.interval, "duration_s": args.duration,
                "command": "gputop record", "pid": os.getpid()}
    if os.path.isdir(args.out):
        return _error(f"{args.out} is a directory; --out names the trace file to write")
    try:
        writer = TraceWriter.create(args.out, force=args.force, settings=settings)
    except FileExistsError:
        return _error(f"{args.out} exists (use --force to overwrite it)")
    except OSError as exc:
        return _error(f"cannot write {args.out}: {exc.strerror or exc}")
    own_sampler = sampler is None
    try:
        if own_sampler:
            from gputop.cli import build_sampler
            sampler = build_sampler()
        progress = _Progress(writer, stderr, clock) if _isatty(stderr) else None
        with StopSignals() as stop:
            try:
                for sample in iter_samples(sampler, args.interval, args.duration, clock=clock,
                                           sleep=stop.sleep):
                    writer.write_sample(sample)
                    if progress:
                        progress.update()
                    if stop.event.is_set():
                        break
            except Stopped:
                pass
            if progress:
                progress.finish()
    except OSError as exc:  # disk full, file system gone: what was written still loads
        return _error(f"writing {args.out} failed after {writer.samples} samples: "
                      f"{exc.strerror or exc}")
    finally:
        try:
            writer.close()
        finally:
            if own_sampler and sampler is not None:
                sampler.close()
    return 0


def _isatty(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


class _Progress:
    """``recording trace.json  12.3 s  1234 samples  1.2 MiB`` on one redrawn stderr line."""

    def __init__(self, writer: TraceWriter, stream: TextIO, clock: Callable[[], float]) -> None:
        self.writer, self.stream, self.clock = writer, stream, clock
        self.start = clock()
        self.last = -PROGRESS_EVERY_S

    def line(self) -> str:
        elapsed = self.clock() - self.start
        return (f"recording {self.writer.path}  {elapsed:.1f} s  {self.writer.samples} samples  "
                f"{fmt.bytes_(self.writer.bytes_written)}  (Ctrl-C to stop)")

    def update(self) -> None:
        now = self.clock()
        if now - self.last >= PROGRESS_EVERY_S:
            self.last = now
            self.stream.write("\r\x1b[K" + self.line())
            self.stream.flush()

    def finish(self) -> None:
        self.stream.write("\r\x1b[K" + self.line().replace("  (Ctrl-C to stop)", "") + "\n")
        self.stream.flush()
