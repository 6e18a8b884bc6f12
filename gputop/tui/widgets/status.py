"""The one-line header: what gputop is doing (pace, paused) and what it costs (its own CPU %);
in a replay, where the cursor is in the recording (offset and wall-clock time) and the speed."""

from __future__ import annotations

import time

from textual.reactive import reactive

from gputop import format as fmt
from gputop.tui.widgets.panel import Panel
from gputop.view.feed import ReplayPosition
from gputop.view.lines import Item, Line, fit_parts, gpu_parts, header_start, help_part, item, live_header_parts


def wall_clock(ts_ns: int) -> str:
    """Local date and time to the millisecond: 2026-11-27 11:22:02.532."""
    seconds, ns = divmod(ts_ns, 1_000_000_000)
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(seconds)) + f".{ns // 1_000_000:03d}"


def offset_text(seconds: float) -> str:
    """A position in a recording: 12.3 s, 2:05.3 (min:s), 1:02:05 (h:min:s)."""
    if seconds < 59.95:  # (59.96 would print as "60.0 s")
        return f"{fmt.num(seconds, 1)} s"
    tenths = int(round(seconds * 10))
    minutes, tenths_left = divmod(tenths, 600)
    if minutes < 60:
        return f"{minutes}:{tenths_left / 10:04.1f}"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{tenths_left // 10:02d}"


def speed_text(speed: float) -> str:
    return f"{speed:g}x"


class StatusBar(Panel):
    interval_s: reactive[float] = reactive(1.0)
    paused: reactive[bool] = reactive(False)
    own_cpu_pct: reactive[float | None] = reactive(None)
    own_driver: reactive[tuple[float | None] | None] = reactive(None)  # (ms/s,) where counted
    selected_gpu: reactive[int | None] = reactive(None)
    sort_label: reactive[str] = reactive("")
    host: reactive[str] = reactive("")
    replay: reactive[ReplayPosition | None] = reactive(None)
    failed_ticks: reactive[int] = reactive(0)  # in a row, live: the values shown are that old
    stalled_s: reactive[float | None] = reactive(None)  # live: no tick back for this long (gputop.tui.stall)

    def watch_paused(self, paused: bool) -> None:
        self.set_class(paused, "-paused")

    def render_key(self) -> tuple:
        return (
            self.interval_s,
            self.paused,
            self.own_cpu_pct,
            self.own_driver,
            self.selected_gpu,
            self.sort_label,
            self.host,
            self.replay,
            self.failed_ticks,
            self.stalled_s,
        )

    def build(self, width: int) -> list[Line]:
        # each part's forms, longest first (gputop.view.lines.fit_parts)
        forms: list[tuple[list[Item], bool]]  # (forms, a stop where none fits)
        if self.replay is not None:
            head, rest = self._replay_parts(self.replay)
            forms = [([part], True) for part in head] + [
                ([part], False) for part in rest + gpu_parts(self, self.selected_gpu, self.sort_label) + [help_part(self)]
            ]
        else:
            forms = live_header_parts(
                self, self._state_forms(), self.interval_s, self.selected_gpu, self.sort_label, self.own_cpu_pct, self.own_driver
            )
        return [fit_parts(header_start(self, self.host), forms, width)]

    def _state_forms(self) -> list[Item]:
        """Live, paused, stalled (no tick back: a hung driver call) or failing ticks; the values
        shown are the last good sample's in all but the first (the reason is in the notification)."""

        def warn(text: str) -> Item:
            return item((f" {text} ", self.style_of("panel--warn")))

        n = self.failed_ticks
        if self.stalled_s is not None:
            age = f"{self.stalled_s:.0f} s"
            return [warn(f"NO SAMPLE FOR {age}"), warn(f"NO SAMPLE {age}"), warn("STALLED")]
        if self.paused:
            return (
                [warn(f"PAUSED, LAST {n} TICK{'S' if n > 1 else ''} FAILED"), warn(f"PAUSED, {n} FAILED"), warn("PAUSED")]
                if n
                else [warn("PAUSED")]
            )
        if n:
            return [warn(f"SAMPLING FAILED, {n} tick{'s' if n > 1 else ''}"), warn(f"FAILED {n}"), warn("FAILED")]
        return [item("live")]

    def _replay_parts(self, pos: ReplayPosition) -> tuple[list[Item], list[Item]]:
        """The replay's state and its warning (a recording cut off), then its other parts."""
        f, st = self.item, self.style_of
        if self.paused:
            state = item((" PAUSED ", st("panel--warn")))
        else:
            state = item(("▶ ", st("panel--value")), speed_text(pos.speed))
        head = [item(("replay", st("panel--value")), " ", *state)]
        if not pos.complete:
            head.append(item(("cut off", st("panel--warn"))))
        rest = [
            f("t", "+" + offset_text(pos.offset_s), f" of {offset_text(pos.duration_s)}"),
            f("at", wall_clock(pos.ts_ns)),
            f("sample", f"{pos.index + 1}/{pos.count}"),
        ]
        if self.paused:
            rest.append(f("speed", speed_text(pos.speed)))
        return head, rest
