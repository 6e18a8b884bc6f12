"""ReplayApp: the live view over a recording, with a time cursor (``gputop replay trace.json``).

The same app and widgets as the live view, fed from ``Trace.samples()`` instead of a sampler.
The cursor is an index into the samples; the history (and so the charts) always holds the
samples up to the cursor, rebuilt when the cursor jumps back or far ahead. Playing follows the
recording's own timestamps at 0.25x to 16x, advancing on a frame timer (several samples a frame
at high speed and rate). Kill and the sampling interval keys mean nothing here and are disabled.
"""

from __future__ import annotations

import time
from bisect import bisect_right
from collections import OrderedDict
from typing import Callable, Sequence

from textual.binding import Binding

from gputop.history import History, Value, flatten
from gputop.model import Sample
from gputop.tui.app import GputopApp
from gputop.tui.screens.help import HelpScreen
from gputop.tui.widgets.charts import HistoryCharts
from gputop.tui.widgets.processes import ProcessTable
from gputop.tui.widgets.status import ReplayPosition, StatusBar

SPEEDS = (0.25, 0.5, 1.0, 2.0, 4.0, 8.0, 16.0)
FRAME_S = 1 / 30
# The history is rebuilt up to the cursor on every step back: it holds what the widest charts
# draw (two points a column), not the live view's hour, and the flattened points of recently
# shown samples are kept, so a step back re-records rather than re-flattens.
HISTORY_POINTS = 1200
CACHED_POINTS = 4 * HISTORY_POINTS
NO_PROCESSES = "a recording holds no process list"
DISABLED = {"kill", "toggle_pause", "slower", "faster"}  # the live view's kill, p, + and -

REPLAY_KEYS = (
    ("q", "quit"),
    ("space / p", "play / pause (at the end: play from the start)"),
    ("← / →", "one sample back / forward (pauses)"),
    ("[ / ]", "slower / faster: 0.25x to 16x the recorded pace (also < / >)"),
    ("home / end", "first / last sample"),
    ("d", "next GPU: the charts follow it (or click a GPU)"),
    ("s", "sort processes by the next column"),
    ("t", "next colour theme"),
    ("f", "show core frequencies instead of core load"),
    ("?", "this help"),
)


def nearest_speed(speed: float) -> int:
    return min(range(len(SPEEDS)), key=lambda i: abs(SPEEDS[i] - speed))


class ReplayApp(GputopApp):
    """``ReplayApp(samples, host=..., complete=...)``; starts at the first sample, playing
    unless ``playing=False``."""

    CHART_NOW = "cursor"
    BINDINGS = [
        Binding("space", "play", "play/pause", priority=True, show=False),
        Binding("p", "play", "play/pause", key_display="space/p"),  # in the footer where p was
        Binding("left", "step(-1)", "back", key_display="←", priority=True),
        Binding("right", "step(1)", "fwd", key_display="→", priority=True),
        Binding("left_square_bracket,less_than_sign", "speed(-1)", "slower", key_display="[",
                priority=True),
        Binding("right_square_bracket,greater_than_sign", "speed(1)", "faster", key_display="]",
                priority=True),
        Binding("home", "seek(0)", "start", priority=True),
        Binding("end", "seek(-1)", "end", priority=True),
    ]

    def __init__(self, samples: Sequence[Sample], *, host: str = "", complete: bool = True,
                 speed: float = 1.0, playing: bool = True, history_points: int = HISTORY_POINTS,
                 clock: Callable[[], float] = time.monotonic, **kwargs) -> None:
        if not samples:
            raise ValueError("a replay needs at least one sample")
        super().__init__(None, 1.0, host=host, paused=not playing, history=History(history_points),
                         **kwargs)
        self.samples = list(samples)
        self.complete = complete
        self.speed = SPEEDS[nearest_speed(speed)]
        self.cursor = -1
        self._ts = [s.ts_ns for s in self.samples]
        self._clock = clock
        self._anchor = (0.0, 0)  # (clock reading, recording ts_ns) when play last started
        self._timer = None
        self._points: OrderedDict[int, dict[str, Value]] = OrderedDict()
        for sample in self.samples:  # "energy since start" counts from the recording's start
            self._note_energy(sample)

    @property
    def last(self) -> int:
        return len(self.samples) - 1

    # -- the live view's hooks --------------------------------------------------------------

    def _begin(self) -> None:
        self.query_one(ProcessTable).empty_note = NO_PROCESSES
        self._timer = self.set_interval(FRAME_S, self._advance, pause=True)
        self.seek(0)
        if not self.complete:
            self.notify(f"the recording was cut off (no closing ']'): replaying its "
                        f"{len(self.samples)} complete samples", severity="warning", timeout=6)
        if not self.paused:
            self._play()

    def _start_sampling(self) -> None:  # nothing samples in a replay
        pass

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        return action not in DISABLED

    def help_screen(self) -> HelpScreen:
        return HelpScreen(REPLAY_KEYS, "gputop replay keys")

    # -- the cursor -------------------------------------------------------------------------

    def seek(self, index: int) -> None:
        """Put the cursor on sample ``index`` (negative counts from the end) and show it."""
        if index < 0:
            index += len(self.samples)
        index = max(0, min(self.last, index))
        if index == self.cursor:
            return
        capacity = self.history.capacity
        if self.cursor < index <= self.cursor + capacity:
            self._record(range(self.cursor + 1, index + 1))
        else:  # back, or far ahead: the history is the samples up to the cursor
            self.history = History(capacity)
            self._record(range(max(0, index - capacity + 1), index + 1))
            self.query_one(HistoryCharts).use_history(self.history)
        self.cursor = index
        self.samples_taken = index + 1
        self.sample = self.samples[index]
        self._show_position()

    def _record(self, indices: range) -> None:
        cache = self._points
        for i in indices:
            points = cache.get(i)
            if points is None:
                points = cache[i] = flatten(self.samples[i])
                if len(cache) > CACHED_POINTS:
                    cache.popitem(last=False)
            else:
                cache.move_to_end(i)
            self.history.record(self._ts[i], points)

    def _show_position(self) -> None:
        i, ts = self.cursor, self._ts
        self.query_one(StatusBar).replay = ReplayPosition(
            index=i, count=len(ts), offset_s=(ts[i] - ts[0]) / 1e9, duration_s=(ts[-1] - ts[0]) / 1e9,
            ts_ns=ts[i], speed=self.speed, complete=self.complete)

    def _play(self) -> None:
        if self.cursor >= self.last:
            self.seek(0)  # play at the end: from the start again
        self.paused = False
        self._anchor = (self._clock(), self._ts[self.cursor])
        self._timer.resume()

    def _pause(self) -> None:
        self.paused = True
        if self._timer is not None:
            self._timer.pause()

    def _advance(self) -> None:
        """A frame: move the cursor to the last sample at or before the playback time."""
        if self.paused or not self.is_running:  # not running: shutting down, widgets gone
            return
        started, ts0 = self._anchor
        target = ts0 + (self._clock() - started) * self.speed * 1e9
        index = bisect_right(self._ts, target) - 1
        if index > self.cursor:
            self.seek(index)
        if self.cursor >= self.last:
            self._pause()
            self.notify("end of the recording (space: play again from the start)", timeout=3)

    # -- keys -------------------------------------------------------------------------------

    def action_play(self) -> None:
        if self.paused:
            self._play()
        else:
            self._pause()

    def action_step(self, delta: int) -> None:
        self._pause()
        self.seek(max(0, min(self.last, self.cursor + delta)))

    def action_seek(self, index: int) -> None:
        self.seek(index)
        if not self.paused:
            self._anchor = (self._clock(), self._ts[self.cursor])
            if self.cursor >= self.last:
                self._pause()

    def action_speed(self, step: int) -> None:
        i = max(0, min(len(SPEEDS) - 1, nearest_speed(self.speed) + step))
        self.speed = SPEEDS[i]
        if not self.paused:
            self._anchor = (self._clock(), self._ts[self.cursor])
        self._show_position()
