"""The replay's controls: keys, help, and the frame timer that moves a ReplayFeed's cursor.

The app is the same as the live view's; only its feed differs (gputop.view.feed.ReplayFeed). Kill and
the sampling-interval keys mean nothing in a recording and are disabled; the replay keys are
disabled in the live view (``GputopApp.check_action``).
"""

from __future__ import annotations

import math
from typing import Callable, Protocol

from textual.binding import Binding
from textual.notifications import SeverityLevel
from textual.timer import Timer

from gputop.model import Sample
from gputop.tui.screens.goto import HINT, GotoScreen
from gputop.tui.widgets.status import offset_text
from gputop.view.feed import ReplayFeed
from gputop.view.history import History

FRAME_S = 1 / 30
INDEX_NOTE_S = 2.0
NO_PROCESSES = "a recording holds no process list"
LIVE_ONLY = frozenset({"kill", "toggle_pause", "slower", "faster", "stacks"})  # k, p, +, - and w
REPLAY_ONLY = frozenset({"play", "step", "seek", "speed", "jump", "goto"})

BINDINGS = [
    Binding("space", "play", "play/pause", priority=True, show=False),
    Binding("p", "play", "play/pause", key_display="space/p"),  # in the footer where p was
    Binding("left", "step(-1)", "back", key_display="←", priority=True),
    Binding("right", "step(1)", "fwd", key_display="→", priority=True),
    Binding("left_square_bracket,less_than_sign", "speed(-1)", "slower", key_display="[", priority=True),
    Binding("right_square_bracket,greater_than_sign", "speed(1)", "faster", key_display="]", priority=True),
    Binding("home", "seek(0)", "start", priority=True),
    Binding("end", "seek(-1)", "end", priority=True),
    Binding("shift+left", "jump('-10s')", "-10 s", show=False, priority=True),
    Binding("shift+right", "jump('+10s')", "+10 s", show=False, priority=True),
    Binding("pageup", "jump('-60s')", "-1 min", show=False, priority=True),
    Binding("pagedown", "jump('+60s')", "+1 min", show=False, priority=True),
    Binding("ctrl+left", "jump('-10%')", "-10 %", show=False, priority=True),
    Binding("ctrl+right", "jump('+10%')", "+10 %", show=False, priority=True),
    *(Binding(str(k), f"jump('{k * 10}%')", f"{k * 10} %", show=False) for k in range(10)),
    Binding("g", "goto", "go to", show=False),
]

KEYS = (
    ("q / ctrl+c", "quit"),
    ("space / p", "play / pause (at the end: play from the start)"),
    ("← / →", "one sample back / forward (pauses)"),
    ("shift+← / →", "10 s back / forward"),
    ("pgup / pgdn", "1 min back / forward"),
    ("ctrl+← / →", "a tenth of the recording back / forward"),
    ("0 ... 9", "to 0 %, 10 % ... 90 % of the recording"),
    ("g", "go to a time typed: 1:23:45, 90s or 50 %"),
    ("[ / ]", "slower / faster: 0.25x to 256x the recorded pace (also < / >)"),
    ("home / end", "first / last sample (the last indexed so far, while indexing)"),
    ("d", "next GPU: the charts follow it (or click a GPU)"),
    ("s", "sort processes by the next column"),
    ("t", "next colour theme"),
    ("f", "show core frequencies instead of core load"),
    ("?", "this help"),
    ("ctrl+z", "suspend to the shell (fg resumes)"),
)


def typing(screen: object, action: str) -> bool:
    """While a time is typed, the replay's keys (space, arrows, ...) are the text box's."""
    return isinstance(screen, GotoScreen) and action in REPLAY_ONLY


def parse_offset(text: str, duration_s: float) -> float | None:
    """Seconds from the start for what was typed in the go-to box (``HINT``), or None where it
    is none of those forms (inf and nan among them: float() reads them, and index_of cannot take
    them). A share is of ``duration_s``."""
    text = text.strip().lower().replace(" ", "")
    try:
        if text.endswith("%"):
            share = float(text[:-1])
            return duration_s * share / 100 if 0 <= share <= 100 else None
        if ":" in text:
            parts = text.split(":")
            if len(parts) > 3 or not all(parts) or not all(0 <= float(p) < math.inf for p in parts):
                return None
            value = 0.0
            for part in parts:
                value = value * 60 + float(part)
        else:
            value = float(text[:-1] if text.endswith("s") else text)
    except ValueError:
        return None
    return value if 0 <= value < math.inf else None


class ReplayKeys:
    """The replay keys' actions, for the app: each goes to its ReplayDriver (None live, where
    ``check_action`` disables them)."""

    _replay: ReplayDriver | None

    def action_play(self) -> None:
        if self._replay is not None:
            self._replay.play_pause()

    def action_step(self, delta: int) -> None:
        if self._replay is not None:
            self._replay.step(delta)

    def action_seek(self, index: int) -> None:
        if self._replay is not None:
            self._replay.jump(index)

    def action_speed(self, step: int) -> None:
        if self._replay is not None:
            self._replay.speed(step)

    def action_jump(self, how: str) -> None:
        if self._replay is not None:
            self._replay.jump_by(how)

    def action_goto(self) -> None:
        if self._replay is not None:
            self._replay.ask_time()


class ReplayView(Protocol):
    """What a ReplayDriver needs of the app it plays into (``GputopApp``): its own three calls
    (a sample shown, the cursor's position shown, a history handed to the charts), its
    ``paused`` state, and the few Textual calls the driver makes (timers, notes, the go-to box)."""

    paused: bool

    @property
    def is_running(self) -> bool: ...

    def show_sample(self, sample: Sample) -> None: ...

    def show_position(self) -> None: ...

    def use_history(self, history: History) -> None: ...

    def set_interval(self, interval: float, callback: Callable[[], object], *, pause: bool = ...) -> Timer: ...

    def call_after_refresh(self, callback: Callable[[], object]) -> bool: ...

    def notify(self, message: str, *, severity: SeverityLevel = ..., timeout: float | None = ...) -> None: ...

    def push_screen(self, screen: GotoScreen, callback: Callable[[str | None], None]) -> object: ...


class ReplayDriver:
    """Plays a ReplayFeed into the app: one frame timer, the cursor shown after every move."""

    def __init__(self, view: ReplayView, feed: ReplayFeed) -> None:
        self.view, self.feed = view, feed
        self._timer: Timer | None = None
        self._index_timer: Timer | None = None

    def begin(self) -> None:
        self._timer = self.view.set_interval(FRAME_S, self.advance, pause=True)
        self.seek(0)
        feed = self.feed
        if feed.indexing:  # a progress line every 2 s until the whole file is indexed
            self._index_timer = self.view.set_interval(INDEX_NOTE_S, self._indexing)
            assert feed.index is not None
            self.view.call_after_refresh(feed.index.release)  # the first frame first
        elif feed.index is not None:
            self._indexing()
        elif not feed.complete:
            self.view.notify(
                f"the recording was cut off (no closing ']'): replaying its {len(feed.samples)} complete samples",
                severity="warning",
                timeout=6,
            )
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
        if feed.cursor >= feed.last and not feed.indexing:  # (while indexing: the rest comes)
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

    def jump_by(self, how: str) -> None:
        """``how``: ``'+10s'``/``'-60s'`` from the cursor, ``'+10%'``/``'-10%'`` of the recording
        from the cursor, ``'40%'`` to that share of it (of what is indexed, while indexing)."""
        position = self.feed.position()
        number = float(how[:-1])
        if how.endswith("%"):
            share = position.duration_s * number / 100
            offset = position.offset_s + share if how[0] in "+-" else share
        else:
            offset = position.offset_s + number
        self.jump(self.feed.index_of(offset))

    def ask_time(self) -> None:
        """The go-to box; on enter, the cursor to the last sample at or before that time."""
        position = self.feed.position()

        def answered(text: str | None) -> None:
            if text is None or not text.strip():
                return
            offset = parse_offset(text, self.feed.position().duration_s)
            if offset is None:
                self.view.notify(f"cannot read {text.strip()!r} as a time: {HINT}", severity="warning", timeout=5)
                return
            self.jump(self.feed.index_of(offset))

        self.view.push_screen(GotoScreen(offset_text(position.duration_s)), answered)

    def _indexing(self) -> None:
        """While the index is built: say how far it got; once built, what it holds."""
        index = self.feed.index
        if index is None:
            return
        if not index.done:
            size = index.stream.size
            share = index.read / size * 100 if size else 100.0
            self.view.notify(f"indexing the recording: {share:.0f} % of {size / 1e6:,.0f} MB ({len(index):,} samples so far)", timeout=2)
            self.view.show_position()
            return
        if self._index_timer is not None:
            self._index_timer.stop()
            self._index_timer = None
        self.view.show_position()
        if index.error:
            self.view.notify(f"the recording is readable only up to sample {len(index):,}: {index.error}", severity="error", timeout=10)
        elif not self.feed.complete:
            self.view.notify(
                f"the recording was cut off (no closing ']'): replaying its {len(index):,} complete samples", severity="warning", timeout=6
            )
        if index.unreadable:
            self.view.notify(
                f"{index.unreadable:,} time stamps are no time: their events left out (the rest of the recording is replayed)",
                severity="warning",
                timeout=6,
            )
