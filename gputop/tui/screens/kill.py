"""Confirm before sending SIGTERM: "Kill pid 1234 (python train.py)? y/n"; or why not to ask."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Static

from gputop.model import GpuProcess


def kill_refusal(proc: GpuProcess) -> str | None:
    """Why gputop will not signal ``proc`` at all, or None. A pid the driver lists but this pid
    namespace cannot see (no name, no command: the table says "not visible") is another
    namespace's number, a host pid in a container: here it names no process, or a different one.
    """
    if proc.command or proc.name:
        return None
    return (
        f"not killing pid {proc.pid}: it is not visible from this pid namespace "
        "(in a container, a host pid; here that number is not the same process)"
    )


def describe(proc: GpuProcess) -> str:
    what = proc.command or proc.name
    return f"pid {proc.pid} ({what[:60]})" if what else f"pid {proc.pid}"


class KillScreen(ModalScreen[bool]):
    """Dismisses with True (y) or False (n, escape)."""

    BINDINGS = [Binding("y", "answer(True)", "yes"), Binding("n,escape", "answer(False)", "no")]

    def __init__(self, proc: GpuProcess) -> None:
        super().__init__()
        self.proc = proc

    def compose(self) -> ComposeResult:
        with Vertical(id="confirm"):
            yield Static(f"Kill {describe(self.proc)}? y/n", id="question")
            yield Static("sends SIGTERM; the process may clean up before it exits", classes="hint")
            with Horizontal(classes="buttons"):
                yield Button("Kill (y)", variant="error", id="yes")
                yield Button("Cancel (n)", variant="primary", id="no")

    def on_mount(self) -> None:
        self.query_one("#no", Button).focus()

    def action_answer(self, yes: bool) -> None:
        self.dismiss(yes)

    def on_button_pressed(self, event: Button.Pressed) -> None:
        self.dismiss(event.button.id == "yes")
