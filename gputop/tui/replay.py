"""The replay's controls: keys, help, and the frame timer that moves a ReplayFeed's cursor.

The app is the same as the live view's; only its feed differs (gputop.feed.ReplayFeed). Kill and
the sampling-interval keys mean nothing in a recording and are disabled; the replay keys are
disabled in the live view (``GputopApp.check_action``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from textual.binding import Binding
from textual.timer import Timer

from gputop.feed import ReplayFeed

if TYPE_CHECKING:
    from gputop.tui.app import GputopApp

FRAME_S = 1 / 30
NO_PROCESSES = "a recording holds no process list"
LIVE_ONLY = frozenset({"kill", "toggle_pause", "slower", "faster"})  # k, p, + and -
REPLAY_ONLY = frozenset({"play", "step", "seek", "speed"})

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

KEYS = (
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


class ReplayDriver:
    """Plays a ReplayFeed into the app: one frame timer, the cursor shown after every move."""

    def __init__(self, view: GputopApp, feed: ReplayFeed) -> None:
        self.view, self.feed = view, feed
        self._timer: Timer | None = None

    def begin(self) -> None:
        self._timer = self.view.set_interval(FRAME_S, self.advance, pause=True)
        self.seek(0)
        feed = self.feed
        if not feed.complete:
            self.view.notify(f"the recording was cut off (no closing ']'): replaying its "
                             f"{len(feed.samples)} complete samples", severity="warning", timeout=6)
        if not feed.paused:
            self.play()

    def seek(self, index: int) -> None:
        if self.feed.seek(index):
            self.view.use_history(self.feed.history)
        self._show()

    def _show(self) -> None:
        self.view.show_sample(self.feed.sample)
        self.view.show_position()

    def play(self) -> None:
        before = self.feed.cursor
        if self.feed.play():
            self.view.use_history(self.feed.history)
        if self.feed.cursor != before:  # at the end: from the start again
            self._show()
        self.view.paused = False
        if self._timer is not None:
            self._timer.resume()

    def pause(self) -> None:
        self.feed.pause()
        self.view.paused = True
        if self._timer is not None:
            self._timer.pause()

    def advance(self) -> None:
        """A frame: move the cursor to the last sample at or before the playback time."""
        feed = self.feed
        if feed.paused or not self.view.is_running:  # not running: shutting down, widgets gone
            return
        index = feed.target()
        if index > feed.cursor:
            self.seek(index)
        if feed.cursor >= feed.last:
            self.pause()
            self.view.notify("end of the recording (space: play again from the start)", timeout=3)

    def play_pause(self) -> None:
        if self.feed.paused:
            self.play()
        else:
            self.pause()

    def step(self, delta: int) -> None:
        self.pause()
        self.seek(max(0, min(self.feed.last, self.feed.cursor + delta)))

    def jump(self, index: int) -> None:
        self.seek(index)
        if not self.feed.paused:
            self.feed.reanchor()
            if self.feed.cursor >= self.feed.last:
                self.pause()

    def speed(self, step: int) -> None:
        self.feed.change_speed(step)
        self.view.show_position()
