"""The one-line header: what gputop is doing (pace, paused) and what it costs (its own CPU %)."""

from __future__ import annotations

from rich.text import Text
from textual.reactive import reactive

from gputop import format as fmt
from gputop.tui.widgets.panel import Panel


class StatusBar(Panel):
    interval_s: reactive[float] = reactive(1.0)
    paused: reactive[bool] = reactive(False)
    own_cpu_pct: reactive[float | None] = reactive(None)
    selected_gpu: reactive[int | None] = reactive(None)
    sort_label: reactive[str] = reactive("")
    host: reactive[str] = reactive("")

    def watch_paused(self, paused: bool) -> None:
        self.set_class(paused, "-paused")

    def render_key(self) -> tuple:
        return (self.interval_s, self.paused, self.own_cpu_pct, self.selected_gpu, self.sort_label, self.host)

    def build(self, width: int) -> Text:
        f = self.field
        text = Text.assemble(("gputop", self.style_of("panel--value")))
        if self.host:
            text.append(f" {self.host}", style=self.style_of("panel--label"))
        state = Text(" PAUSED ", style=self.style_of("panel--warn")) if self.paused else Text("live")
        parts = [state, f("every", f"{self.interval_s:g} s"),
                 f("GPU", "-" if self.selected_gpu is None else str(self.selected_gpu)),
                 f("sort", self.sort_label), f("own CPU", fmt.pct(self.own_cpu_pct, 1)),
                 Text("? help", style=self.style_of("panel--dim"))]
        for part in parts:
            if text.cell_len + 3 + part.cell_len > width:
                break
            text.append("   ")
            text.append_text(part)
        return text
