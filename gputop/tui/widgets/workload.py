"""A launched workload: what it reports or gputop detects (step, throughput, TFLOP/s, MFU, loss,
J/step; steps/s, step time p50/p95 and data wait), its processes (CPU, threads, cores), the
verdict, how its process stands, and the tail of its output.

Everything shown comes from one ``WorkloadState`` snapshot handed down by the app. A script that
writes no events still has a name, a status and output; its achievements read n/a, never 0.
"""

from __future__ import annotations

import math
import re
import textwrap
from typing import NamedTuple

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Container
from textual.markup import escape
from textual.reactive import reactive

from gputop import format as fmt
from gputop.model import JobUsage, Sample, WorkloadState
from gputop.signals import signal_name
from gputop.tui.widgets.panel import Panel, flow

LEVELS = "▁▂▃▄▅▆▇█"
NO_EVENTS = "no progress events: resource use and output only"
SOURCE = {"auto": "detected", "events": "reported"}
_ANSI = re.compile(r"\x1b\[[0-?]*[ -/]*[@-~]|\x1b[@-_]")


class GpuUse(NamedTuple):
    """The workload's processes as the GPU process table lists them."""

    processes: int  # (pid, GPU) rows
    gpu_mem_bytes: int | None  # None if any row's memory is unknown


def gpu_use(sample: Sample | None, pids: frozenset[int]) -> GpuUse | None:
    """What the workload holds on the GPUs; None where no device lists its processes."""
    if sample is None:
        return None
    listed = [g for g in sample.gpus if not g.lost and g.processes is not None]
    if not listed:
        return None
    rows = [p for g in listed for p in (g.processes or ()) if p.pid in pids]
    mem = [p.gpu_mem_bytes for p in rows]
    known = [m for m in mem if m is not None]
    return GpuUse(len(rows), None if len(known) < len(mem) else sum(known))


def sparkline(values: tuple[float, ...] | list[float], width: int) -> str:
    """The newest ``width`` values as block glyphs, scaled between their own min and max."""
    points = [v for v in values if v is not None][-width:] if width > 0 else []
    if len(points) < 2:
        return ""
    lo, hi = min(points), max(points)
    span = hi - lo
    if span <= 0:
        return LEVELS[len(LEVELS) // 2] * len(points)
    top = len(LEVELS) - 1
    return "".join(LEVELS[round((v - lo) / span * top)] for v in points)


def elapsed(seconds: float) -> str:
    """Wall time as people read it: 12.3 s, 4 m 05 s, 2 h 07 m."""
    if seconds < 60:
        return f"{fmt.num(seconds, 1)} s"
    minutes, secs = divmod(int(seconds), 60)
    if minutes < 60:
        return f"{minutes} m {secs:02d} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} m"


def status_text(state: WorkloadState) -> str:
    """ "running", "finished (exit 0)", "failed (exit 1)", "stopped by gputop (SIGTERM)"."""
    rc = state.returncode
    how = "" if rc is None else f" (exit {rc})" if rc >= 0 else f" ({signal_name(-rc)})"
    if state.status == "running":
        return "running"
    if state.status == "stopping":  # gputop quits; the script may be ignoring SIGTERM
        if state.kill_in_s is None or state.kill_in_s <= 0:
            return "stopping: SIGKILL sent"
        return f"stopping (SIGTERM sent, then SIGKILL in {math.ceil(state.kill_in_s)} s)"
    return fmt.ended(state.status) + how


def loss_text(loss: float | None) -> str:
    if loss is None:
        return fmt.NA
    return fmt.num(loss, 3 if abs(loss) >= 0.01 else 5)


STALE_MIN_S = 10.0  # a pause shorter than this is never called stale
STALE_STEPS = 5  # ... nor one shorter than this many typical steps


def stale_for(state: WorkloadState) -> float | None:
    """Seconds since the last step while the workload runs, where that is long enough that its
    rates (over the last steps reported) no longer describe what it is doing now; else None."""
    age = state.last_step_age_s
    if not state.running or age is None:
        return None
    walls = sorted(s.wall_s for s in state.recent_steps if s.wall_s and s.wall_s > 0)
    typical = walls[len(walls) // 2] if walls else 0.0
    return age if age >= max(STALE_MIN_S, STALE_STEPS * typical) else None


def step_times(state: WorkloadState) -> tuple[float | None, float | None, float | None]:
    """(steps/s, p50, p95 step time) over the recent steps after the first."""
    steps = [s for s in state.recent_steps if s.step != 1] or list(state.recent_steps)
    walls = sorted(s.wall_s for s in steps)
    if not walls or sum(walls) <= 0:
        return None, None, None

    def rank(q: float) -> float:
        return walls[min(len(walls) - 1, round(q * (len(walls) - 1)))]

    return len(walls) / sum(walls), rank(0.5), rank(0.95)


def job_text(job: JobUsage) -> str:
    """ "1.9 cores on 0-3: main 98 % (12 threads), 2 workers 85 %", "n/a" before a second look."""

    def cpu(pct: float | None) -> str:
        return fmt.NA if pct is None else f"{pct:.0f} %"

    main = [p for p in job.processes if p.role == "main"]
    workers = [p for p in job.processes if p.role == "worker"]
    others = [p for p in job.processes if p.role == "other"]
    total = fmt.NA if job.cpu_pct is None else f"{job.cpu_pct / 100:.1f} cores"
    parts = [f"{total}" + (f" on {fmt.core_ranges(job.cores)}" if job.cores else "")]
    if main:
        parts.append(f"main {cpu(main[0].cpu_pct)} ({main[0].threads} threads)")
    for group, name in ((workers, "worker"), (others, "other")):
        if group:
            known = [p.cpu_pct for p in group if p.cpu_pct is not None]
            parts.append(f"{len(group)} {name}{'s' if len(group) > 1 else ''} {cpu(sum(known) if known else None)}")
    return ", ".join(parts[:1]) + (": " + ", ".join(parts[1:]) if len(parts) > 1 else "")


def clean_line(line: str) -> str:
    """One output line as a terminal would leave it: the text after the last carriage return,
    no escape sequences, tabs as spaces (a child's colours or progress bars must not reach ours)."""
    line = line.rstrip("\r\n").rsplit("\r", 1)[-1]
    line = _ANSI.sub("", line).expandtabs(4)
    return "".join(ch for ch in line if ch.isprintable())


class WorkloadPanel(Panel):
    """Name, device, progress and achievements; the status (and, on a crash, the error) stay on
    screen after the workload ends. ``inline_output``: show the last output line here (when the
    log beside it is hidden on a short terminal)."""

    COMPONENT_CLASSES = {"workload--error", "workload--ok", "workload--spark"}

    # always_update: a state equal to the last (no new event) still moves the elapsed time on
    state: reactive[WorkloadState | None] = reactive(None, always_update=True)
    gpu_use: reactive[GpuUse | None] = reactive(None)
    inline_output: reactive[bool] = reactive(False)

    def watch_state(self, state: WorkloadState | None) -> None:
        self.relayout_if_resized()
        if state is None:
            return
        pid = "" if state.pid is None else f" pid {state.pid}"
        self.border_title = f"workload {escape(state.name)}{pid}"  # a file name is text, not markup
        self.set_class(state.running, "-running")
        self.set_class(state.status == "failed", "-failed")
        self.set_class(state.status in ("ok", "stopped"), "-ended")

    def watch_inline_output(self) -> None:
        self.relayout_if_resized()

    def render_key(self) -> tuple:
        # elapsed_s is read from the clock while it runs: its text is part of what is drawn
        ticking = elapsed(self.state.elapsed_s) if self.state is not None and self.state.running else None
        return (self.state, self.gpu_use, self.inline_output, ticking)

    def build(self, width: int) -> Text:
        state = self.state
        if state is None:
            return Text("waiting for the workload", style=self.style_of("panel--dim"))
        width = max(width, 20)
        blocks = [self._headline(state), self._rates(state), [self._loss(state, width)]]
        if state.steps_source == "auto":  # detected: the figures a reporting workload does not give
            blocks.append(self._detected(state))
        return flow(blocks + self._notes(state, width), width)

    def _headline(self, state: WorkloadState) -> list[Text]:
        """How it runs, for how long, on what; what it holds on its GPU."""
        f, st = self.field, self.style_of
        status_style = (
            st("workload--error") if state.status == "failed" else (st("workload--ok") if not state.running else st("panel--value"))
        )
        device = fmt.text(state.device)
        if state.device_name:
            device += f" ({state.device_name})"
        first = [Text(status_text(state), style=status_style), f("elapsed", elapsed(state.elapsed_s)), f("device", device)]
        use = self.gpu_use
        if use is not None and state.running:
            if use.processes:
                n = use.processes
                first.append(f("on GPU", fmt.bytes_(use.gpu_mem_bytes), f" in {n} process{'es' if n > 1 else ''}"))
            else:
                first.append(f("on GPU", "no context"))
        return first

    def _rates(self, state: WorkloadState) -> list[Text]:
        """The step and the rates (the whole run's once it ended; stale ones said so)."""
        f, st = self.field, self.style_of
        step = fmt.count(state.step)  # one number format: 18,347 of 20,000, 19,144 samples/s
        if state.step is not None and state.steps_planned is not None:
            step += f" of {fmt.count(state.steps_planned)}"
        rates = [
            f("step", step),
            f(f"{state.sample_unit}/s", fmt.amount(state.samples_per_s)),
            *([f("tokens/s", fmt.amount(state.tokens_per_s))] if state.tokens_per_sample else []),
            f("TFLOP/s", fmt.tflops(state.tflops)),
            f("MFU", fmt.small_pct(state.mfu_pct)),
            f("energy/step", fmt.joules(state.joules_per_step)),
        ]
        if not state.running and state.step is not None:  # ended: the whole run's, not a window's
            rates.insert(1, Text("whole run:", style=st("panel--label")))
        stale = stale_for(state)
        if stale is not None:  # a hang, a long evaluation, a stalled loader: the rates are history
            rates.insert(1, Text(f"no step for {elapsed(stale)}: rates as of then", style=st("panel--warn")))
        return rates

    def _loss(self, state: WorkloadState, width: int) -> Text:
        """The loss, and its recent values as a sparkline where there is room."""
        loss = self.field("loss", loss_text(state.loss))
        spark = sparkline(state.losses, max(0, min(40, width - loss.cell_len - 2)))
        if spark:
            loss.append("  ")
            loss.append(spark, style=self.style_of("workload--spark"))
        return loss

    def _detected(self, state: WorkloadState) -> list[Text]:
        """What gputop's hooks measure of detected steps: steps/s, step times, data wait."""
        f = self.field
        per_s, p50, p95 = step_times(state)
        share, source = state.data_wait_share, state.steps_source or ""
        return [
            f("steps", SOURCE.get(source, source)),
            f("steps/s", fmt.amount(per_s)),
            f("step p50", fmt.step_time(p50), f" p95 {fmt.step_time(p95)}"),
            f("data wait", fmt.text(None if share is None else f"{100 * share:.0f} %")),
        ]

    def _notes(self, state: WorkloadState, width: int) -> list[list[Text]]:
        """The job's processes, the verdict, a placement warning, no events, the error, and
        the last output line where the log is hidden: each a block of its own, where there is one."""
        st = self.style_of
        blocks: list[list[Text]] = []
        if state.job is not None and state.job.processes:
            blocks.append([self.field("job", job_text(state.job))])
        if state.verdict is not None:
            v = state.verdict
            words = f"{v.kind.replace('_', '-')}: {v.evidence}" + (f". {v.suggestion}." if v.suggestion else "")
            blocks.append([Text(words, style=st("panel--warn") if v.kind != "unknown" else st("panel--dim"))])
        if state.placement is not None and state.placement.warning:  # the job is far from its GPU
            blocks.append([Text("⚠ " + state.placement.warning, style=st("panel--warn"))])
        if not state.events:
            blocks.append([Text(NO_EVENTS, style=st("panel--dim"))])
        if state.error and state.status == "failed":
            blocks.append([Text("error: " + clean_line(state.error), style=st("workload--error"))])
        last = clean_line(state.output_tail[-1]) if state.output_tail else ""
        if self.inline_output and last and last != clean_line(state.error or ""):
            blocks.append([Text.assemble(("out ", st("panel--label")), (last[: width - 4], st("panel--dim")))])
        return blocks


CONTINUED = "  "  # a wrapped output line's continuation rows are indented by this


def wrap_output(line: str, width: int) -> list[str]:
    """One output line as rows ``width`` wide: wrapped at spaces where it can, continuation rows
    indented (so a wrapped line does not read as two), nothing cut off."""
    width = max(width, len(CONTINUED) + 1)
    if len(line) <= width:
        return [line]
    return textwrap.wrap(line, width, subsequent_indent=CONTINUED, drop_whitespace=True, replace_whitespace=False) or [line[:width]]


class WorkloadLog(Panel):
    """The newest lines of the workload's stdout and stderr, wrapped to the width, as many as
    fit in its height (taller on tall terminals: gputop.tcss)."""

    tail: reactive[tuple[str, ...]] = reactive(())

    def on_mount(self) -> None:
        self.border_title = "output"

    def watch_tail(self) -> None:
        self.refresh()

    def render_key(self) -> tuple:
        return (self.tail, self.content_size.height)

    def build(self, width: int) -> Text:
        if not self.tail:
            return Text("no output yet", style=self.style_of("panel--dim"))
        height = max(1, self.content_size.height)
        rows: list[str] = []
        for line in reversed(self.tail):  # the newest first, whole lines while they fit
            wrapped = wrap_output(clean_line(line), width)
            if rows and len(rows) + len(wrapped) > height:
                break
            rows[:0] = wrapped
        text = Text("\n".join(rows[-height:]))  # (only the newest line can be taller than the pane)
        text.no_wrap = True  # wrapped here already, with the continuation indent
        return text


class WorkloadView(Container):
    """The panel and its output log, side by side (stacked when narrow)."""

    def compose(self) -> ComposeResult:
        yield WorkloadPanel(id="workload-panel")
        yield WorkloadLog(id="workload-log")

    def on_resize(self) -> None:
        self.call_after_refresh(self.keep_panel_whole)

    def keep_panel_whole(self) -> None:
        """On a tall, wide terminal the row's height is a share of the rows left (gputop.tcss):
        make that share at least what the panel needs."""
        if not self.is_mounted:
            return
        panel = self.query_one(WorkloadPanel)
        width = panel.content_size.width
        if not width:
            return
        need: int | None = None  # else the row is as tall as the panel and log (height auto)
        if self.screen.has_class("-tall") and self.screen.has_class("-wide"):
            need = panel.get_content_height(panel.size, panel.size, width) + panel.styles.gutter.height
        now = self.styles.min_height
        if (None if now is None else int(now.value)) != need:
            self.styles.min_height = need

    def show(self, state: WorkloadState, sample: Sample | None = None) -> None:
        panel = self.query_one(WorkloadPanel)
        panel.state = state
        if sample is not None:
            panel.gpu_use = gpu_use(sample, state.pids)
        self.query_one(WorkloadLog).tail = state.output_tail
        self.call_after_refresh(self.keep_panel_whole)  # an error line makes the panel taller
