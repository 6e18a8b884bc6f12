"""The live view's first frame, drawn before Textual is imported.

Importing Textual and starting the app take ~0.2 s of the ~0.4 s to the first frame
(benchmarks/README.md). The first sample is back well before that, so ``draw`` puts the top of
the view on the terminal at once: the header and the CPU and GPU panels, built by the same
builders as the widgets (``gputop.view.lines``) and in the colours gputop.tcss gives them in Textual's
default theme. The app then starts on the same alternate screen (its driver leaves out its own
switch to it: xterm and VTE clear the screen at every ``?1049h``, on it already or not) and its
first paint, the same sample, writes every cell again: the top reads the same, and the charts,
the process table and the footer come in below it.

It is drawn only where it is what the app will draw, cell for cell (tests/test_firstframe.py
compares the two): the plain live view (no ``--run``), a terminal 120 columns or more, one full
GPU panel (or two where the app shows two; or the "no GPU" panel), no GPU lost, the default
theme and no colour filter, gputop the terminal's foreground job. Elsewhere nothing is drawn and
the app's first paint is the first frame, as before.
"""

from __future__ import annotations

import io
import os
import shutil
import signal
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TextIO

from rich.segment import Segment
from rich.style import Style

from gputop import console
from gputop.model import GpuSample, Sample
from gputop.signals import StopSignals
from gputop.view import lines
from gputop.view.feed import EnergySinceStart

if TYPE_CHECKING:
    from rich.color import ColorSystem

TOP_SHARE = 0.6  # gputop.tcss: #top's max-height
SORT_LABEL = "GPU mem"  # the process table's sort at start (gputop.tui.widgets.processes)
THEME = "textual-dark"  # Textual's default, which gputop starts in

# textual-dark as gputop.tcss resolves it on each widget (every component's full style, as
# Panel.style_of gives it); tests/test_firstframe.py checks each against the running app
SCREEN = "#e0e0e0 on #121212"
_PANEL = {
    "panel--label": "#a0a0a0 on #121212", "panel--value": "bold #e0e0e0 on #121212",
    "panel--dim": "#949494 on #121212", "panel--warn": "bold #ffc473 on #121212",
    "panel--lost": "bold #d17e92 on #121212", "load--na": "#949494 on #121212",
    "sm--on": "#4ebf71 on #121212", "sm--off": "#6c6c6c on #121212",
}
HEADER = {"": "#e0e0e0 on #242f38", "panel--label": "#a7abaf on #242f38", "panel--value": "bold #e0e0e0 on #242f38",
          "panel--dim": "#9ca1a5 on #242f38", "panel--warn": "bold #191004 on #fea62b"}
CPU = {"": SCREEN, **_PANEL, "load--idle": "#a7abaf on #242f38", "load--light": "#e2e6e3 on #24452e",
       "load--busy": "#e9e5e1 on #593e19", "load--hot": "#e6e1e2 on #441e27", "cpu--job": "underline #e0e0e0 on #121212"}
GPU = {"": SCREEN, **_PANEL, "load--idle": "#a0a0a0 on #121212", "load--light": "#4ebf71 on #121212",
       "load--busy": "#fea62b on #121212", "load--hot": "#b93c5b on #121212"}
# each box's border: (its edge, its title, its subtitle), by what the panel is
BORDERS = {
    "cpu": ("#074f86 on #121212", "#57a5e2 on #121212", "#a0a0a0 on #121212"),
    "gpu": ("#074f86 on #121212", "#57a5e2 on #121212", "#a0a0a0 on #121212"),
    "gpu-selected": ("#fea62b on #121212", "bold #57a5e2 on #121212", "#a0a0a0 on #121212"),
    "gpu-trap": ("#fea62b on #121212", "#57a5e2 on #121212", "#a0a0a0 on #121212"),
    "gpu-selected-trap": ("#fea62b on #121212", "bold #57a5e2 on #121212", "#a0a0a0 on #121212"),
    "no-gpu": ("#45505a on #121212", "", ""),
}
# the corners, edges and sides of "border: round", and of "heavy" (a selected GPU's warning)
ROUND = ("╭", "─", "╮", "│", "╰", "╯")
HEAVY = ("┏", "━", "┓", "┃", "┗", "┛")


class TableStyles:
    """``lines.Styles`` from a table of style strings (parsed once)."""

    def __init__(self, table: Mapping[str, str]) -> None:
        self._styles = {name: Style.parse(text) for name, text in table.items()}
        self.base = self._styles[""]

    def style_of(self, name: str) -> Style:
        return self._styles[name]


@dataclass(frozen=True)
class Box:
    width: int
    lines: list[lines.Line]
    title: str
    subtitle: str
    border: tuple[str, str, str]
    styles: TableStyles
    edges: tuple[str, ...] = ROUND

    @property
    def height(self) -> int:
        return len(self.lines) + 2


def _gpu_box(gpu: GpuSample, width: int, energy_j: float | None, selected: bool) -> Box:
    """A GPU's full panel; its border by its classes (gputop.tcss: -selected, -trap)."""
    styles = TableStyles(GPU)
    trap = lines.trap_warning(gpu) is not None
    border = "gpu" + ("-selected" if selected else "") + ("-trap" if trap else "")
    return Box(width, lines.gpu_lines(gpu, width - 4, styles, energy_j), lines.gpu_title(gpu),
               lines.panel_subtitle(gpu), BORDERS[border], styles, HEAVY if selected and trap else ROUND)


def _fits(box: Box) -> bool:
    """Whether every line fits the box as it is (the app's Rich would wrap one that does not)
    and so do its title and subtitle (Textual would cut one that does not)."""
    inner = box.width - 2
    return (all(lines.cells(line) <= inner - 2 for line in box.lines)
            and all(lines.cells(((f" {label} ", None),)) <= inner - 2 for label in (box.title, box.subtitle) if label))


def boxes(sample: Sample, width: int, height: int) -> list[Box] | None:
    """The top row's panels as the app lays them out at ``width`` x ``height``, or None where
    this module does not draw that layout (see the module's docstring)."""
    n = len(sample.gpus)
    if width < lines.WIDE_COLUMNS or n > 2 or (n == 2 and height < lines.FULL_PANELS_TWO_GPUS_ROWS):
        return None  # (stacked; compact rows)
    if any(g.lost for g in sample.gpus) or (n == 0 and height < lines.SHORT_ROWS):
        return None  # (a lost GPU's class; on a short screen the "no GPU" panel has no border)
    cpu_width = 2 * width // 5  # gputop.tcss: CpuPanel 2fr beside GpuList 3fr
    cpu_styles = TableStyles(CPU)
    grid_rows = lines.GRID_ROWS_SHORT if height < lines.DETAIL_ROWS else lines.GRID_ROWS  # (as the app)
    out = [Box(cpu_width, lines.cpu_lines(sample.cpu, cpu_width - 4, cpu_styles, max_grid_rows=grid_rows),
               "CPU", lines.cpu_subtitle(False), BORDERS["cpu"], cpu_styles)]
    energy = EnergySinceStart()
    energy.note(sample)
    since = energy.of(sample)
    for i, gpu in enumerate(sample.gpus):  # the first is the selected one
        out.append(_gpu_box(gpu, width - cpu_width, since.get(gpu.info.index), i == 0))
    if not sample.gpus:
        styles = TableStyles(GPU)
        reason = sample.gpu_unavailable or lines.NO_GPU_FOUND
        out.append(Box(width - cpu_width, lines.no_gpu_lines(reason, width - cpu_width - 4, styles),
                       "", "", BORDERS["no-gpu"], styles))
    gpu_rows = sum(b.height for b in out[1:])
    if max(out[0].height, gpu_rows) > int(TOP_SHARE * (height - 2)):  # the list would scroll
        return None
    return out if all(_fits(box) for box in out) else None


def header(sample: Sample, width: int, host: str, interval_s: float) -> list[Segment]:
    """The header line as the app draws it at its first frame (live, gputop's own CPU not yet
    measured)."""
    st = TableStyles(HEADER)
    selected = sample.gpus[0].info.index if sample.gpus else None
    forms = lines.live_header_parts(st, [lines.item("live")], interval_s, selected, SORT_LABEL, None)
    line = lines.fit_parts(lines.header_start(st, host), forms, width - 2)
    pad = Segment(" ", Style(bgcolor=st.base.bgcolor))  # (its padding: the background only, as Textual's)
    return [pad, *_padded(line, width - 2, st.base), pad]


def _padded(line: lines.Line, width: int, base: Style) -> list[Segment]:
    out = [Segment(text, style or base) for text, style in line if text]
    used = lines.cells(line)
    if used < width:
        out.append(Segment(" " * (width - used), base))
    return out


def _box_rows(box: Box) -> list[list[Segment]]:
    edge, title, subtitle = (Style.parse(s) for s in box.border)
    tl, h, tr, v, bl, br = box.edges
    inner = box.width - 2
    top_label = f" {box.title} " if box.title else ""
    bottom_label = f" {box.subtitle} " if box.subtitle else ""
    rows = [[Segment(tl + h, edge), Segment(top_label, title),
             Segment(h * (inner - 1 - len(top_label)), edge), Segment(tr, edge)]]
    pad = Segment(" ", Style(bgcolor=box.styles.base.bgcolor))
    for line in box.lines:
        rows.append([Segment(v, edge), pad, *_padded(line, inner - 2, box.styles.base), pad, Segment(v, edge)])
    rows.append([Segment(bl + h * (inner - 1 - len(bottom_label)), edge), Segment(bottom_label, subtitle),
                 Segment(h + br, edge)])
    return rows


def frame(sample: Sample, width: int, height: int, host: str, interval_s: float) -> list[list[Segment]] | None:
    """The rows of the first frame from the top (the header, then the panels beside each other;
    blank below the shorter column), each ``width`` cells; None where it is not drawn."""
    top = boxes(sample, width, height)
    if top is None:
        return None
    blank = Style.parse(SCREEN).background_style
    columns: list[tuple[int, list[list[Segment]]]] = [(top[0].width, _box_rows(top[0]))]
    gpu_rows = [row for box in top[1:] for row in _box_rows(box)]
    columns.append((top[1].width, gpu_rows))
    rows = [header(sample, width, host, interval_s)]
    for y in range(max(len(c[1]) for c in columns)):
        row: list[Segment] = []
        for col_width, col in columns:
            row += col[y] if y < len(col) else [Segment(" " * col_width, blank)]
        rows.append(row)
    return rows


def color_system(environ: Mapping[str, str]) -> ColorSystem | None:
    """The colours Textual's console would draw in here (its ``TEXTUAL_COLOR_SYSTEM``, else
    Rich's detection from COLORTERM and TERM), or None where the first frame is not drawn: no
    colour, a colour filter (``NO_COLOR``, ``TEXTUAL_FILTERS``), another theme, or another
    driver (``TEXTUAL_DRIVER``: one that may not use the alternate screen)."""
    if ("NO_COLOR" in environ or environ.get("TEXTUAL_FILTERS") or environ.get("TEXTUAL_DRIVER")
            or environ.get("TEXTUAL_THEME", THEME) != THEME):
        return None
    from rich.console import COLOR_SYSTEMS, Console

    console = Console(color_system=environ.get("TEXTUAL_COLOR_SYSTEM", "auto"),  # type: ignore[arg-type]
                      file=io.StringIO(), force_terminal=True, legacy_windows=False, _environ=dict(environ))
    name = console.color_system
    return None if name is None else COLOR_SYSTEMS[name]


def escape_codes(rows: list[list[Segment]], height: int, system: ColorSystem) -> str:
    """What puts ``rows`` on the alternate screen, the rest of it blank, the cursor hidden."""
    blank = Style.parse(SCREEN).background_style
    width = sum(len(s.text) for s in rows[0])
    out = ["\x1b[?1049h\x1b[?25l\x1b[?2026h"]  # the alternate screen (Textual's too), no cursor; in one go
    for y in range(height):
        out.append(f"\x1b[{y + 1};1H")
        segments = rows[y] if y < len(rows) else [Segment(" " * width, blank)]
        out += [(s.style.render(s.text, color_system=system) if s.style else s.text) for s in segments]
    out.append(f"\x1b[{height};1H\x1b[?2026l")  # (keys typed meanwhile echo where the footer goes)
    return "".join(out)


def could_draw(stream: TextIO, environ: Mapping[str, str] | None = None) -> tuple[ColorSystem, int, int] | None:
    """(colours, width, height) where a first frame may be drawn on ``stream``, before its
    sample is waited for; None where it will not be (see ``color_system``; a terminal too
    narrow; gputop not its foreground job: ``gputop &`` would draw on the shell's screen and be
    stopped, by Textual's first terminal call, with that screen left on)."""
    system = color_system(os.environ if environ is None else environ)
    if system is None:
        return None
    if not _foreground(stream):
        return None
    width, height = shutil.get_terminal_size()  # (as Textual's driver measures it)
    return None if width < lines.WIDE_COLUMNS else (system, width, height)


def _foreground(stream: TextIO) -> bool:
    try:
        return console.is_foreground(stream.fileno())
    except (OSError, ValueError, AttributeError):  # (no descriptor; closed)
        return False


class Held:
    """A first frame on ``stream``, from before its sample is waited for until the app's driver
    takes the terminal: meanwhile a stop signal (SIGINT, SIGTERM, SIGHUP) is raised as Interrupted,
    so that the caller's ``finally`` can ``give_back`` the normal screen, and Ctrl+Z is ignored
    (stopped there, the shell would come back on the alternate screen, the cursor hidden).
    Textual's driver puts its own SIGTSTP handler in place; the one before is restored at
    ``release``."""

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream
        self.drawn = False
        self._signals = StopSignals(raise_first=True)
        self._tstp: Any = None

    def hold(self) -> Held:
        self._signals.__enter__()
        if threading.current_thread() is threading.main_thread():
            self._tstp = signal.signal(signal.SIGTSTP, signal.SIG_IGN)
        return self

    def draw(self, sample: Sample, host: str, interval_s: float, terminal: tuple[ColorSystem, int, int]) -> bool:
        self.drawn = _foreground(self.stream) and draw(sample, host, interval_s, self.stream, terminal)
        return self.drawn

    def give_back(self) -> None:
        """The normal screen back (where the app's driver never took the terminal), once."""
        if self.drawn:
            self.drawn = False
            undraw(self.stream)

    def release(self) -> None:
        if self._tstp is not None:
            signal.signal(signal.SIGTSTP, self._tstp)
            self._tstp = None
        self._signals.__exit__(None, None, None)


def draw(sample: Sample, host: str, interval_s: float, stream: TextIO, terminal: tuple[ColorSystem, int, int]) -> bool:
    """Draw the first frame on ``stream`` (the terminal Textual will draw on), in the colours
    and at the size of ``terminal`` (``could_draw``); True if drawn, and then the alternate
    screen is on: ``undraw`` if the app does not take the terminal. Interrupted while it is
    written (Ctrl+C: KeyboardInterrupt), it undraws what went out before the exception goes on."""
    system, width, height = terminal
    rows = frame(sample, width, height, host, interval_s)
    if rows is None:
        return False
    codes = escape_codes(rows, height, system)
    try:
        codes.encode(getattr(stream, "encoding", None) or "utf-8")  # (strict: stderr's backslashreplace
    except (UnicodeError, LookupError):  # would draw "\u256d"; a stream that cannot carry box drawing: none)
        return False
    try:
        stream.write(codes)
        stream.flush()
    except (OSError, ValueError):  # (a hung-up terminal)
        undraw(stream)
        return False
    except BaseException:
        undraw(stream)
        raise
    return True


def undraw(stream: TextIO) -> None:
    """Back to the normal screen, the cursor shown: where the app never took the terminal after
    ``draw``."""
    try:
        stream.write("\x1b[?2026l\x1b[?1049l\x1b[?25h")
        stream.flush()
    except (OSError, ValueError):
        pass
