"""GputopApp: one app over a feed of samples, live or recorded; it hands each Sample down to the
widgets.

Built with its feed injected (``GputopApp(LiveFeed(sampler, interval_s, workload=...))`` or
``GputopApp(ReplayFeed(samples, ...))``): ``cli.py`` builds the real sources, tests pass fakes.
Live, sampling runs in a thread on drift-free deadlines (``gputop.sampler.run``); a sampler
that raises costs a notification and that tick, never the app. A replay's cursor is moved by
``gputop.tui.playback.ReplayDriver``. App state flows down to the widgets with ``data_bind``;
widgets only render what they are given and post ``GpuSelected`` up.
"""

from __future__ import annotations

import asyncio
import math
import os
import signal
import time
from typing import Callable

from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Container
from textual.css.query import NoMatches
from textual.driver import Driver
from textual.reactive import var
from textual.timer import Timer

from gputop import sampler as sampling
from gputop.argtypes import next_interval
from gputop.model import Sample, WorkloadState
from gputop.tui import playback
from gputop.tui.compat import ErrorsNoted
from gputop.tui.screens.help import HelpScreen
from gputop.tui.screens.kill import KillScreen, describe, kill_refusal
from gputop.tui.screens.stacks import StacksScreen
from gputop.tui.selfcpu import SelfCpu
from gputop.tui.stall import StallWatch
from gputop.tui.terminal import QUIT_KEY, SUSPEND, repaint_on_resume, settle_heap, terminal_driver
from gputop.tui.theme_memo import ThemeMemoApp
from gputop.tui.widgets.charts import HistoryCharts
from gputop.tui.widgets.cpu import CpuPanel
from gputop.tui.widgets.footer import KeyFooter
from gputop.tui.widgets.gpu import GpuSelected
from gputop.tui.widgets.gpulist import GpuList
from gputop.tui.widgets.processes import ProcessTable
from gputop.tui.widgets.ranks import RanksPanel
from gputop.tui.widgets.status import StatusBar
from gputop.tui.widgets.workload import WorkloadPanel, WorkloadView
from gputop.view.feed import LiveFeed, ReplayFeed
from gputop.view.history import History, workload_points
from gputop.view.lines import DETAIL_ROWS, FULL_PANELS_TWO_GPUS_ROWS, GRID_ROWS, GRID_ROWS_SHORT, SHORT_ROWS, WIDE_COLUMNS

__all__ = ["GputopApp", "SelfCpu"]

STACKS_TIMEOUT_S = 5.0  # w: the job's processes answer with their stacks within this
STOP_GRACE_S = 3.0  # a workload gets this long after SIGTERM before SIGKILL
QUIT_POLL_S = 0.25  # meanwhile its state is shown this often
FRAME_S = 0.5  # the screen is drawn at most twice a second, however fast it samples
FRAME_SLACK = 0.1  # a frame due this share of FRAME_S from now is drawn now, not on a timer
SETTLE_HEAP_S = 1.0  # the CLI's views: start-up's objects frozen out of collections this long after the first frame
SETTLE_HEAP_LATEST_S = 10.0  # and at the latest this long after mount (every sample failing, or hung)


class GputopApp(ErrorsNoted, playback.ReplayKeys, ThemeMemoApp[None]):
    CSS_PATH = "gputop.tcss"
    TITLE = "gputop"
    HORIZONTAL_BREAKPOINTS = [(0, "-narrow"), (WIDE_COLUMNS, "-wide")]
    VERTICAL_BREAKPOINTS = [(0, "-short"), (SHORT_ROWS, "-tall")]
    BINDINGS = [
        Binding("q", "quit", "quit"),
        QUIT_KEY,
        Binding("p", "toggle_pause", "pause"),
        Binding("plus,equals_sign", "slower", "slower", key_display="+"),
        Binding("minus", "faster", "faster", key_display="-"),
        Binding("d", "next_gpu", "device"),
        Binding("s", "cycle_sort", "sort"),
        Binding("k", "kill", "kill"),
        Binding("w", "stacks", "stacks", show=False),  # a --run job's processes' Python stacks (in ? help)
        Binding("t", "next_theme", "theme"),
        Binding("f", "toggle_freq", "core MHz"),
        Binding("question_mark", "help", "help", key_display="?"),
        SUSPEND,
        *playback.BINDINGS,  # enabled in a replay only (check_action)
    ]

    # App state as `var`s: watched but not repainting (an App repaint is a full-screen render).
    sample: var[Sample | None] = var(None, always_update=True)
    selected_gpu: var[int | None] = var(None)
    paused: var[bool] = var(False)
    interval_s: var[float] = var(1.0)
    sample_errors: var[int] = var(0)  # failed ticks in a row (the header says so while there are any)
    sample_stalled_s: var[float | None] = var(None)  # no tick back for this long (a hung driver call)
    show_freq: var[bool] = var(False)

    def __init__(
        self,
        feed: LiveFeed | ReplayFeed,
        *,
        self_cpu: SelfCpu | None = None,
        kill: Callable[[int, int], None] = os.kill,
        frame_s: float = FRAME_S,
        settle_heap_s: float | None = None,
    ) -> None:
        super().__init__()
        self.feed = feed
        # Every sample goes into the history (the charts show them all), but the screen is drawn at
        # most once per ``frame_s``: a redraw per sample at 0.1 s cost ~8 % of a core (#14: 0.5 s).
        self.frame_s = frame_s
        # The CLI's views: settle_heap (start-up's objects frozen, the collector cli held back on) this
        # long after the first frame, or SETTLE_HEAP_LATEST_S after mount. Not in tests (it outlives them).
        self.settle_heap_s = settle_heap_s
        self._last_frame = -math.inf
        self._frame_timer: Timer | None = None
        self._pending: tuple[Sample, WorkloadState | None] | None = None
        self.workload = feed.workload
        self.workload_state: WorkloadState | None = None
        self._last_error: str | None = None
        self._last_poll_error: str | None = None
        self.self_cpu = self_cpu or SelfCpu()
        self.kill = kill
        self.samples_taken = 0
        self._replay = playback.ReplayDriver(self, feed) if isinstance(feed, ReplayFeed) else None
        self._stall = StallWatch(lambda: self.interval_s, self._stalled)
        self.set_reactive(GputopApp.interval_s, feed.interval_s)
        self.set_reactive(GputopApp.paused, feed.paused)  # live and paused: no sampling until p

    @property
    def history(self) -> History:
        return self.feed.history

    def get_driver_class(self) -> type[Driver]:
        return terminal_driver(super().get_driver_class())  # see gputop.tui.terminal

    # -- layout -------------------------------------------------------------------------------

    def compose(self) -> ComposeResult:
        yield StatusBar(id="status").data_bind(
            GputopApp.paused,
            GputopApp.interval_s,
            GputopApp.selected_gpu,
            failed_ticks=GputopApp.sample_errors,
            stalled_s=GputopApp.sample_stalled_s,
        )
        with Container(id="top"):
            yield CpuPanel(id="cpu").data_bind(GputopApp.show_freq)
            yield GpuList(id="gpus").data_bind(selected=GputopApp.selected_gpu)
        if self.workload is not None:
            yield WorkloadView(id="workload")
            yield RanksPanel(id="ranks")  # shown once the job has ranks
        yield HistoryCharts(self.history, now_label=self.feed.now_label, id="charts").data_bind(gpu_index=GputopApp.selected_gpu)
        yield ProcessTable(id="procs")
        yield KeyFooter()

    def on_mount(self) -> None:
        status = self.query_one(StatusBar)
        status.host = self.feed.host
        status.sort_label = self.query_one(ProcessTable).sort_label
        self.screen.set_class(self.workload is not None, "-with-workload")
        self._fit_layout()
        repaint_on_resume(self)
        self.set_timer(SETTLE_HEAP_LATEST_S, lambda: self._settle_heap_once(0.0))  # (none yet: a no-op after one)
        if self._replay is not None:
            self.query_one(ProcessTable).empty_note = playback.NO_PROCESSES
            self._replay.begin()
        elif not self.paused:
            self._start_sampling()

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        """Each feed's own keys: the replay's in a replay, the live view's (kill, pause and the
        interval) live."""
        own = action not in (playback.LIVE_ONLY if self._replay is not None else playback.REPLAY_ONLY)
        if action == "stacks" and self.workload is None:
            return False
        return own and not playback.typing(self.screen, action)

    def on_resize(self) -> None:
        self._fit_layout()

    def _fit_layout(self) -> None:
        """One GPU: its full panel. Two on a tall terminal: both. Else (or beside a workload on a
        short terminal) a line each, and the selected one's full panel too where there is room."""
        n = len(self.sample.gpus) if self.sample else 0
        height = self.size.height
        gpus = self.query_one(GpuList)
        self.screen.set_class(self.sample is not None and n == 0, "-no-gpu")  # gputop.tcss
        # a workload's panel needs the rows on a short terminal: then each GPU is one line
        short_with_workload = self.workload is not None and height < SHORT_ROWS
        gpus.compact = n > 2 or (n == 2 and height < FULL_PANELS_TWO_GPUS_ROWS) or (n > 0 and short_with_workload)
        gpus.detail = height >= DETAIL_ROWS
        # many cores on a short terminal: one glyph per core rather than rows of "97%" cells
        self.query_one(CpuPanel).max_grid_rows = GRID_ROWS_SHORT if height < DETAIL_ROWS else GRID_ROWS
        if self.workload is not None:  # the output log is hidden on short terminals (gputop.tcss)
            self.query_one("#workload-panel", WorkloadPanel).inline_output = height < SHORT_ROWS

    # -- sampling -----------------------------------------------------------------------------

    def _start_sampling(self) -> None:
        feed = self.feed
        if not isinstance(feed, LiveFeed) or feed.guarded is None:
            return
        feed.set_interval(self.interval_s)  # re-anchor: one tick now, then the pace
        self._sample_loop(feed)

    @work(exclusive=True, group="sampling")
    async def _sample_loop(self, feed: LiveFeed) -> None:
        assert feed.guarded is not None
        self._stall.start()  # (the first sample can hang too: NVML's init)
        try:  # a frame's samples come as one batch (each into the history, the last one drawn)
            await sampling.run(
                feed.guarded, feed.ticker, self._on_tick, first=feed.take_first(), batch_s=self.frame_s, after_batch=self._after_batch
            )
        finally:  # paused, or the end
            self._stall.stop()

    def _stalled(self, age_s: float | None) -> None:
        self.sample_stalled_s = age_s

    def _on_tick(self, result: Sample | Exception) -> None:
        try:
            if isinstance(result, Exception):
                self.sampling_failed(result)
            else:
                self._take(result)
        except NoMatches:
            if self.is_running:
                raise
            # a tick that lands while the app shuts down (its widgets already gone): dropped

    def _after_batch(self) -> None:
        self._stall.heard()
        try:
            self._frame()
        except NoMatches:
            if self.is_running:  # (else a batch that lands while the app shuts down)
                raise

    def sampling_failed(self, exc: Exception) -> None:
        """A tick whose sampler raised: say so once per distinct error, keep the last sample on
        screen, keep the workload's state current, and try again at the next tick."""
        self.sample_errors += 1
        message = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
        if message != self._last_error:
            self._last_error = message
            self.notify(f"sampling failed: {message} (retrying every {self.interval_s:g} s)", severity="error", timeout=8)
        self._poll_workload(None)

    def ingest(self, sample: Sample) -> None:
        """Take one sample and draw it when the frame is due (tests call this; the tick loop
        takes a batch of samples, then draws once)."""
        self._take(sample)
        self._frame()

    def _take(self, sample: Sample) -> None:
        """One sample into the history and the workload's state (the latest is drawn next)."""
        self.samples_taken += 1
        if self.sample_errors:
            self.notify(f"sampling works again after {self.sample_errors} failed tick{'s' if self.sample_errors > 1 else ''}", timeout=4)
            self.sample_errors, self._last_error = 0, None
        state = self._poll_workload(sample)
        if isinstance(self.feed, LiveFeed):
            self.feed.push(sample, extra=workload_points(state))
        self._pending = (sample, state)

    def _frame(self) -> None:
        """Draw the latest sample now if the frame is due, else when it is."""
        if self._pending is None:
            return
        wait = self._last_frame + self.frame_s - time.monotonic()
        if wait <= FRAME_SLACK * self.frame_s:  # (a batch comes a frame after the last one)
            self._draw()
        elif self._frame_timer is None:  # the latest sample is drawn when the frame is due
            self._frame_timer = self.set_timer(wait, self._draw)

    def _draw(self) -> None:
        """Hand the latest sample (and workload state) to the widgets."""
        if self._frame_timer is not None:
            self._frame_timer.stop()
            self._frame_timer = None
        if self._pending is None:
            return
        (sample, state), self._pending = self._pending, None
        self._settle_heap_once()
        self._last_frame = time.monotonic()
        try:
            if state is not None:
                self._show_workload(state, sample)
            status = self.query_one(StatusBar)
            status.own_cpu_pct = self.self_cpu.read()
            if self.self_cpu.counts_driver:
                status.own_driver = (self.self_cpu.driver_ms_per_s,)
        except NoMatches:
            if self.is_running:
                raise
            return  # a frame due while the app shuts down (its widgets already gone)
        self.sample = sample

    def _poll_workload(self, sample: Sample | None) -> WorkloadState | None:
        if self.workload is None:
            return None
        try:
            state = self.workload.poll(sample)
        except Exception as exc:  # the launcher's bug must not take the monitor down
            message = f"workload poll failed: {type(exc).__name__}: {exc}"
            if message != self._last_poll_error:
                self._last_poll_error = message
                self.notify(message, severity="error", timeout=8)
            return self.workload_state
        self._last_poll_error = None
        self.workload_state = state
        if sample is None:  # a failed tick: no frame coming, show the state now
            self._show_workload(state, None)
        return state

    def _show_workload(self, state: WorkloadState, sample: Sample | None) -> None:
        self.query_one(WorkloadView).show(state, sample)
        ranks = self.query_one(RanksPanel)
        ranks.state = state
        if sample is not None:
            ranks.gpus = sample.gpus
        self.query_one(ProcessTable).workload_pids = state.pids
        self.query_one(CpuPanel).job_cores = state.job.cores if state.job is not None else frozenset()

    def watch_sample(self, sample: Sample | None) -> None:
        if sample is None:
            return
        indices = [g.info.index for g in sample.gpus]
        if self.selected_gpu not in indices:
            self.selected_gpu = indices[0] if indices else None
        self._fit_layout()
        self.query_one(CpuPanel).sample = sample.cpu
        gpus = self.query_one(GpuList)
        gpus.energy_j = self.feed.energy.of(sample)
        gpus.selected = self.selected_gpu  # before the sample: the data_bind may come after it
        gpus.sample = sample
        self.query_one(ProcessTable).sample = sample
        self.query_one(HistoryCharts).tick += 1

    # -- a replay's driver calls these (tui.playback.ReplayView) ----------------------------------

    def _settle_heap_once(self, delay_s: float | None = None) -> None:
        """settle_heap ``delay_s`` from now (default: ``settle_heap_s``, after the first frame), once."""
        if self.settle_heap_s is None:
            return
        delay, self.settle_heap_s = self.settle_heap_s if delay_s is None else delay_s, None
        if delay > 0:  # (a Timer of 0 s divides by zero)
            self.set_timer(delay, settle_heap)
        else:
            settle_heap()

    def show_sample(self, sample: Sample) -> None:
        self._settle_heap_once()  # (a replay's frames come here, not through _draw)
        self.samples_taken = self.feed.cursor + 1 if isinstance(self.feed, ReplayFeed) else self.samples_taken
        state = self._poll_workload(sample)  # a recorded workload: as it stood at the cursor
        if state is not None:
            self._show_workload(state, sample)
        self.sample = sample

    def show_position(self) -> None:
        if isinstance(self.feed, ReplayFeed):
            self.query_one(StatusBar).replay = self.feed.position()

    def use_history(self, history: History) -> None:
        self.query_one(HistoryCharts).use_history(history)

    def on_gpu_selected(self, message: GpuSelected) -> None:
        self.selected_gpu = message.index

    # -- actions ------------------------------------------------------------------------------

    async def action_quit(self) -> None:
        """Stop the workload (SIGTERM, then SIGKILL after its grace; off the event loop), then exit."""
        if self.workload is not None and self._replay is None:  # a recording's is long gone
            state = self.workload_state
            if state is None or state.running:
                self.notify(f"stopping the workload: SIGTERM, then SIGKILL after {STOP_GRACE_S:g} s", timeout=STOP_GRACE_S + 3)
            # its state shown while it stops, whatever the sampling does (a hung driver call)
            showing = self.set_interval(QUIT_POLL_S, lambda: self._poll_workload(None))
            try:
                await asyncio.to_thread(self.workload.stop, STOP_GRACE_S)
            except Exception as exc:  # quitting must still quit; the launcher stops it again
                self.notify(f"stopping the workload failed: {exc}", severity="error")
            finally:
                showing.stop()
        self.exit()

    def action_toggle_pause(self) -> None:
        self.paused = not self.paused
        if self.paused:
            self.workers.cancel_group(self, "sampling")
        else:
            self._start_sampling()

    def _step_interval(self, step: int) -> None:
        self.interval_s = next_interval(self.interval_s, step)
        if isinstance(self.feed, LiveFeed):
            self.feed.set_interval(self.interval_s)  # (a tick at once, then the new pace)
            self._stall.tick_now()

    def action_slower(self) -> None:
        self._step_interval(+1)

    def action_faster(self) -> None:
        self._step_interval(-1)

    def action_next_gpu(self) -> None:
        indices = [g.info.index for g in self.sample.gpus] if self.sample else []
        if not indices:
            self.notify("no GPU to select", severity="warning")
            return
        pos = indices.index(self.selected_gpu) if self.selected_gpu in indices else -1
        self.selected_gpu = indices[(pos + 1) % len(indices)]

    def action_cycle_sort(self) -> None:
        table = self.query_one(ProcessTable)
        table.cycle_sort()
        self.query_one(StatusBar).sort_label = table.sort_label

    def on_process_table_header_selected(self) -> None:
        self.query_one(StatusBar).sort_label = self.query_one(ProcessTable).sort_label

    def action_next_theme(self) -> None:
        names = sorted(self.available_themes)
        self.theme = names[(names.index(self.theme) + 1) % len(names)] if self.theme in names else names[0]
        self.notify(f"theme: {self.theme}", timeout=1.5)

    def action_toggle_freq(self) -> None:
        self.show_freq = not self.show_freq

    def action_help(self) -> None:
        self.push_screen(self.help_screen())

    def help_screen(self) -> HelpScreen:
        if self._replay is not None:
            return HelpScreen(playback.KEYS, "gputop replay keys")
        return HelpScreen()

    def action_stacks(self) -> None:
        """Ask every process of the --run job for its Python stacks (in a thread: it waits up to
        STACKS_TIMEOUT_S for their answers), then show them."""
        self.notify(f"asking the job's processes for their Python stacks (up to {STACKS_TIMEOUT_S:g} s)")
        self._capture_stacks()

    @work(thread=True, exclusive=True, group="stacks")
    def _capture_stacks(self) -> None:
        workload = self.workload
        answers = [] if workload is None else workload.capture_stacks(STACKS_TIMEOUT_S)
        self.call_from_thread(self._show_stacks, answers)

    def _show_stacks(self, answers: list[dict[str, object]]) -> None:
        if not answers:
            self.notify(
                "no process of the job answered: stacks come from its Python processes once they have "
                "imported torch (the script or its launcher, and the ranks), while it runs",
                severity="warning",
            )
            return
        self.push_screen(StacksScreen(answers))

    def action_kill(self) -> None:
        proc = self.query_one(ProcessTable).selected_process
        if proc is None:
            self.notify("no process selected", severity="warning")
            return
        refusal = kill_refusal(proc)
        if refusal is not None:
            self.notify(refusal, severity="warning")
            return

        def answered(yes: bool | None) -> None:
            if not yes:
                return
            try:
                self.kill(proc.pid, signal.SIGTERM)
            except ProcessLookupError:
                self.notify(f"{describe(proc)} has already exited", severity="warning")
            except OSError as err:
                self.notify(f"cannot kill {describe(proc)}: {err.strerror or err}", severity="error")
            else:
                self.notify(f"sent SIGTERM to {describe(proc)}")

        self.push_screen(KillScreen(proc), answered)
