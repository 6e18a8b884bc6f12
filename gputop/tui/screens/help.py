"""The key help, opened with ?."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Static

from gputop.argtypes import MAX_INTERVAL_S, MIN_INTERVAL_S

KEYS = (
    ("q / ctrl+c", "quit (and stop a workload started with --run)"),
    ("p", "pause / resume sampling"),
    ("+ / -", f"sample less / more often ({MIN_INTERVAL_S:g} s to {MAX_INTERVAL_S:g} s)"),
    ("d", "next GPU: the charts follow it (or click a GPU)"),
    ("s", "sort processes by the next column (or click a header)"),
    ("k", "kill the selected process (SIGTERM, after you confirm)"),
    ("w", "the --run job's Python stacks: each rank's and the script's own (where each is now)"),
    ("t", "next colour theme"),
    ("f", "show core frequencies instead of core load"),
    ("?", "this help"),
    ("ctrl+z", "suspend to the shell (fg resumes; no samples meanwhile)"),
)

ABOUT = (
    "SMs active: streaming multiprocessors with work on them (GPM, Hopper and newer). "
    "NVML util is only the share of time any kernel ran: 100 % can mean one busy SM. "
    "n/a: the driver or hardware does not report it (never shown as 0)."
)


class HelpScreen(ModalScreen[None]):
    BINDINGS = [Binding("escape,question_mark,q", "dismiss", "close")]

    def __init__(self, keys: tuple[tuple[str, str], ...] = KEYS, title: str = "gputop keys") -> None:
        super().__init__()
        self.keys, self.heading = keys, title

    def compose(self) -> ComposeResult:
        width = max(len(k) for k, _ in self.keys)
        lines = "\n".join(f"[b]{k:>{width}}[/b]  {what}" for k, what in self.keys)
        with Vertical(id="help"):
            yield Static(self.heading, classes="title")
            yield Static(lines, id="help-keys")
            yield Static(ABOUT, classes="about")
            yield Static("escape or ? to close", classes="hint")

    def on_click(self) -> None:
        self.dismiss()
