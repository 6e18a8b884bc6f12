"""`gputop replay trace.json`: the live view over a recording, with a time cursor.

Loading and checking the trace imports no textual: a file that is missing, not JSON, not a trace
or holds no complete sample is one line on stderr and exit 1, before any screen is drawn. A
recording cut off by a crash (no closing ``]``) replays the samples it has.
"""

from __future__ import annotations

import argparse
import sys
from typing import Callable, TextIO

from gputop.argtypes import number
from gputop.exitstatus import ExitStatus
from gputop.feed import ReplayFeed
from gputop.trace import TraceError, load

PROG = "gputop replay"
EXAMPLES = """\
examples:
  gputop replay trace.json              play it at the recorded pace
  gputop replay trace.json --speed 4    four times faster
  gputop replay trace.json --paused     start paused on the first sample

keys: space play/pause, left/right one sample, [ and ] speed (0.25x to 16x), home/end, ? help
"""
MIN_SPEED, MAX_SPEED = 0.25, 16.0


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> argparse.ArgumentParser:
    """Add ``replay`` to the CLI's subparsers (the parser class is the CLI's own)."""
    parser = subparsers.add_parser(
        "replay", help="the live view over a recorded trace, with a time cursor",
        description="Replay a trace written by 'gputop record' in the live view: play, pause, "
        "step sample by sample and change speed; the charts show the history up to the cursor.",
        epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("trace", metavar="TRACE", help="trace file written by 'gputop record'")
    parser.add_argument("--speed", type=number(MIN_SPEED, MAX_SPEED, "a playback speed"), default=1.0, metavar="X",
                        help="playback speed, 0.25 to 16 (default 1: the recorded pace; "
                        "rounded to 0.25, 0.5, 1, 2, 4, 8 or 16)")
    parser.add_argument("--paused", action="store_true", help="start paused on the first sample")
    return parser


def run(args: argparse.Namespace, *, show: Callable[[ReplayFeed], int],
        stderr: TextIO | None = None) -> int:
    """Load the recording (any problem with it is one line, before a screen is drawn), then
    ``show`` the feed (the CLI's: the terminal check, then the app)."""
    stderr = sys.stderr if stderr is None else stderr
    try:
        trace = load(args.trace)
        samples = trace.samples()
        if not samples:
            raise TraceError(f"{args.trace} has no complete sample")
    except TraceError as exc:
        stderr.write(f"{PROG}: error: {exc}\n")
        return ExitStatus.FAILURE
    host = trace.header.get("host")
    return show(ReplayFeed(samples, host=host if isinstance(host, str) else "", complete=trace.complete,
                           speed=args.speed, playing=not args.paused))
