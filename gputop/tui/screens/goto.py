"""Ask where to go in a recording: a time from its start (1:23:45, 23:45, 90s) or a share (50%)."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Input, Static

HINT = "h:mm:ss or m:ss from the start, seconds (90 or 90s), or a share (50%)"


class GotoScreen(ModalScreen["str | None"]):
    """Dismisses with the text typed (enter), or None (escape)."""

    BINDINGS = [Binding("escape", "cancel", "cancel")]

    def __init__(self, of: str) -> None:
        super().__init__()
        self.of = of  # the recording's length, as the status bar writes it

    def compose(self) -> ComposeResult:
        with Vertical(id="goto"):
            yield Static(f"Go to (the recording is {self.of} long)", classes="title")
            yield Input(placeholder="1:23:45, 90s or 50%", id="when")
            yield Static(f"{HINT}; enter: go, escape: stay", classes="hint")

    def on_mount(self) -> None:
        self.query_one(Input).focus()

    def on_input_submitted(self, event: Input.Submitted) -> None:
        self.dismiss(event.value)

    def action_cancel(self) -> None:
        self.dismiss(None)
