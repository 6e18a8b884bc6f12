"""Every rank's Python stacks, and the first process's (a single-process script, a launcher), asked
for with w (a job started with --run): where each process of the job is now, the question a
stalled rank raises (gputop.workload.channel answers it)."""

from __future__ import annotations

from typing import Any, Mapping, Sequence

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Static

from gputop.workload.channel import stacks_text


def stacks_lines(answers: Sequence[Mapping[str, Any]]) -> str:
    """The answers as text: each process (its rank, its pid) and its threads' stacks."""
    parts = []
    for a in answers:
        rank, pid = a.get("rank"), a.get("pid")
        who = f"rank {rank}" if isinstance(rank, int) else "first process" if a.get("root") is True else "process"
        parts.append(f"{who} (pid {pid})\n{stacks_text(a)}")
    return "\n".join(parts)


class StacksScreen(ModalScreen[None]):
    BINDINGS = [Binding("escape,w,q", "dismiss", "close")]

    def __init__(self, answers: Sequence[Mapping[str, Any]]) -> None:
        super().__init__()
        self.answers = answers

    def compose(self) -> ComposeResult:
        with Vertical(id="stacks"):
            yield Static(
                f"Python stacks of the job's {len(self.answers)} processes that answered, as they were when asked", classes="title"
            )
            with VerticalScroll():
                yield Static(Text(stacks_lines(self.answers)), id="stacks-text")
            yield Static("arrows or the wheel to scroll; escape or w to close", classes="hint")
