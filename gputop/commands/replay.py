"""`gputop replay trace.json`: the live view over a recording, with a time cursor.

Loading and checking the trace imports no textual: a file that is missing, not JSON, not a trace
or holds no complete sample is one line on stderr and exit 1, before any screen is drawn. A
recording cut off by a crash (no closing ``]``) replays the samples it has.

A recording of any length opens at once: its samples are indexed by a thread while the first
ones are shown (gputop.trace.index), and decoded around the cursor on demand. A recording made
with ``record --run`` shows its workload's panel as it stood at the cursor (gputop.view.timeline).
"""

from __future__ import annotations

import argparse
import time
from typing import Callable

from gputop.argtypes import number
from gputop.environment import Environment
from gputop.trace import TraceError
from gputop.trace.index import SampleIndex
from gputop.trace.stream import TraceStream, WorkloadEvents
from gputop.view.feed import ReplayFeed
from gputop.view.timeline import WorkloadTimeline

PROG = "gputop replay"
EXAMPLES = """\
examples:
  gputop replay trace.json              play it at the recorded pace
  gputop replay trace.json --speed 4    four times faster
  gputop replay trace.json --paused     start paused on the first sample

keys: space play/pause, left/right one sample, shift+left/right 10 s, pgup/pgdn 1 min,
ctrl+left/right 10 %, 0-9 to that tenth, [ and ] speed (0.25x to 256x), home/end, ? help
"""
MIN_SPEED, MAX_SPEED = 0.25, 256.0


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> argparse.ArgumentParser:
    """Add ``replay`` to the CLI's subparsers (the parser class is the CLI's own)."""
    parser = subparsers.add_parser(
        "replay",
        help="the live view over a recorded trace, with a time cursor",
        description="Replay a trace written by 'gputop record' in the live view: play, pause, "
        "step sample by sample and change speed; the charts show the history up to the cursor.",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("trace", metavar="TRACE", help="trace file written by 'gputop record'")
    parser.add_argument(
        "--speed",
        type=number(MIN_SPEED, MAX_SPEED, "a playback speed"),
        default=1.0,
        metavar="X",
        help="playback speed, 0.25 to 256 (default 1: the recorded pace; rounded to 0.25, 0.5, 1, 2, 4, ... 256)",
    )
    parser.add_argument("--paused", action="store_true", help="start paused on the first sample")
    return parser


def run(args: argparse.Namespace, env: Environment, *, show: Callable[[ReplayFeed], int]) -> int:
    """Load the recording (any problem with it is one line, before a screen is drawn), then
    ``show`` the feed (the CLI's: the terminal check, then the app)."""
    try:
        feed = open_feed(args.trace, speed=args.speed, playing=not args.paused)
    except TraceError as exc:
        return env.error(str(exc))
    try:
        return show(feed)
    finally:
        feed.close()


def open_feed(path: str, *, speed: float = 1.0, playing: bool = True) -> ReplayFeed:
    """The recording at ``path`` as a ReplayFeed, once its first sample is decoded (the rest is
    indexed by a thread meanwhile); TraceError where it cannot be read or has no complete sample.
    ``close()`` the feed when done. The indexing thread holds after the first samples until
    ``feed.index.release()`` (the view's, after its first frame) or ``wait()``."""
    stream = TraceStream(path)
    try:
        header = stream.header
        events = WorkloadEvents(header) if header.workload is not None else None
        index = SampleIndex(stream, events)
        index.start(hold=True)  # released once the first frame is drawn (tui.replay)
        while not index.done and len(index) == 0:  # the first sample: at once, or never
            time.sleep(0.005)
        if len(index) == 0:
            raise TraceError(index.error or f"{path} has no complete sample")
    except BaseException:
        stream.close()
        raise
    host = header.header.get("host")
    return ReplayFeed(
        index,
        host=host if isinstance(host, str) else "",
        complete=stream.complete,
        speed=speed,
        playing=playing,
        workload=None if events is None else WorkloadTimeline(header, events),
    )
