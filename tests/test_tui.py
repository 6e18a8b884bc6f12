"""The live TUI, driven by a fake sampler: keys, mouse, what is shown, and snapshot SVGs."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import signal
import statistics
import subprocess
import sys
import threading
from dataclasses import replace

import pytest

from gputop.model import Sample
from gputop.tui import stall
from gputop.tui.app import GputopApp, SelfCpu
from gputop.tui.screens.help import HelpScreen
from gputop.tui.screens.kill import KillScreen
from gputop.tui.widgets.cpu import CpuPanel
from gputop.tui.widgets.gpu import GpuPanel, GpuRow, NoGpuPanel
from gputop.tui.widgets.processes import ProcessTable
from gputop.tui.widgets.status import StatusBar
from gputop.view.feed import ReplayPosition
from tui_fixtures import FakeSampler, cpu_sample, lost, make_app, make_sample, screen_text, started, until, with_gpu


@pytest.mark.tui
@pytest.mark.parametrize("n_gpus", [1, 8])  # a full panel; compact rows and the detail panel
async def test_repainting_only_the_changed_lines_leaves_what_a_full_repaint_shows(n_gpus):
    """Panels and charts repaint only the lines whose text changed: after a run of samples,
    including one that adds a warning line (a new height) and one that takes it away, the
    screen must be exactly what repainting every widget from scratch gives."""
    app = make_app(None, paused=True)
    async with app.run_test(size=(160, 50)) as pilot:
        samples = [make_sample(n_gpus, t) for t in range(8)]
        samples[4] = with_gpu(samples[4], 0, gpu_util_pct=100.0, sm_active_pct=8.0)  # the trap
        for sample in samples:
            app.ingest(sample)
            await pilot.pause()
        partial = screen_text(app, styles=True)
        for widget in app.screen.walk_children():
            widget.refresh()
        await pilot.pause()
        assert screen_text(app, styles=True) == partial
        assert "of 132 SMs active" in screen_text(app)


# -- keys -------------------------------------------------------------------------------------


@pytest.mark.tui
async def test_q_quits():
    app = make_app(FakeSampler(lambda t: make_sample(1, t)))
    async with app.run_test(size=(120, 40)) as pilot:
        await started(pilot)
        await pilot.press("q")
        await pilot.pause()
        assert not app.is_running


@pytest.mark.tui
async def test_p_pauses_sampling_and_resumes():
    sampler = FakeSampler(lambda t: make_sample(1, t))
    app = make_app(sampler, interval_s=0.1)
    async with app.run_test(size=(120, 40)) as pilot:
        await started(pilot, samples=2)
        await pilot.press("p")
        assert app.paused
        await pilot.pause(0.05)
        calls = sampler.calls
        await asyncio.sleep(0.35)
        await pilot.pause()
        assert sampler.calls == calls  # no new samples while paused
        assert "PAUSED" in screen_text(app)
        await pilot.press("p")
        await until(pilot, lambda: sampler.calls >= calls + 2)
        assert not app.paused


@pytest.mark.tui
async def test_plus_minus_step_the_interval_within_bounds():
    """+ and - walk one ladder over the whole range --interval takes (0.01 s to an hour)."""
    app = make_app(FakeSampler(lambda t: make_sample(1, t)), paused=True)
    async with app.run_test(size=(120, 40)) as pilot:
        app.ingest(make_sample(1))
        await pilot.press("plus")
        assert app.interval_s == 2.0 and app.feed.ticker.interval_s == 2.0
        await pilot.press("minus", "minus")
        assert app.interval_s == 0.5
        await pilot.press(*["minus"] * 3)
        assert app.interval_s == 0.05
        await pilot.press(*["minus"] * 3)
        assert app.interval_s == 0.01  # the bottom of --interval's range, and it stays there
        await pilot.press(*["plus"] * 20)
        assert app.interval_s == 3600.0 and app.feed.ticker.interval_s == 3600.0
        assert "every 3600 s" in screen_text(app)


@pytest.mark.tui
@pytest.mark.parametrize(
    "start, up, down",
    [
        (0.01, 0.02, 0.01),
        (3600.0, 3600.0, 1800.0),
        (0.3, 0.5, 0.2),
        (1.0, 2.0, 0.5),
        (7.0, 10.0, 5.0),
    ],
)
async def test_the_interval_ladder_goes_on_from_any_interval_given(start, up, down):
    """From a --interval on the ladder or between rungs: the next rung on that side."""
    for key, expected in (("plus", up), ("minus", down)):
        app = make_app(FakeSampler(lambda t: make_sample(1, t)), start, paused=True)
        async with app.run_test(size=(120, 40)) as pilot:
            await pilot.press(key)
            assert app.interval_s == expected


@pytest.mark.tui
async def test_d_cycles_the_selected_gpu_and_the_charts_follow():
    app = make_app(FakeSampler(lambda t: make_sample(3, t)))
    async with app.run_test(size=(160, 50)) as pilot:
        await started(pilot)
        await until(pilot, lambda: app.query("#charts"))
        assert app.selected_gpu == 0
        await pilot.press("d")
        assert app.selected_gpu == 1
        assert app.query_one("#charts").gpu_index == 1
        rows = list(app.query(GpuRow))
        assert [r.has_class("-selected") for r in rows] == [False, True, False]
        await pilot.press("d", "d")
        assert app.selected_gpu == 0


@pytest.mark.tui
async def test_clicking_a_gpu_selects_it():
    app = make_app(FakeSampler(lambda t: make_sample(3, t)))
    async with app.run_test(size=(160, 50)) as pilot:
        await started(pilot)
        row = list(app.query(GpuRow))[2]
        await pilot.click(row)
        await pilot.pause()
        assert app.selected_gpu == 2


@pytest.mark.tui
@pytest.mark.parametrize("keys", [["ctrl+c"], ["question_mark", "ctrl+c"], ["question_mark", "escape", "q"]])
async def test_ctrl_c_quits_as_the_docs_say_even_over_help(keys):
    # Textual's own binding for Ctrl+C only says "press ctrl+q to quit"; README and --help say it quits
    app = make_app(FakeSampler(lambda t: make_sample(1, t)))
    async with app.run_test(size=(120, 40)) as pilot:
        await started(pilot)
        await pilot.press(*keys)
        await pilot.pause()
        assert not app.is_running


@pytest.mark.tui
async def test_question_mark_opens_help_and_escape_closes_it():
    app = make_app(FakeSampler(lambda t: make_sample(1, t)))
    async with app.run_test(size=(120, 40)) as pilot:
        await started(pilot)
        await pilot.press("question_mark")
        assert isinstance(app.screen, HelpScreen)
        text = screen_text(app)
        for words in ("quit", "ctrl+c", "pause", "kill", "theme", "core frequencies", "0.01 s to 3600 s"):
            assert words in text
        await pilot.press("escape")
        assert not isinstance(app.screen, HelpScreen)


@pytest.mark.tui
async def test_k_asks_before_killing_and_n_cancels():
    killed = []
    app = make_app(FakeSampler(lambda t: make_sample(1, t)), kill=lambda pid, sig: killed.append((pid, sig)))
    async with app.run_test(size=(120, 40)) as pilot:
        await started(pilot)
        await pilot.press("k")
        assert isinstance(app.screen, KillScreen)
        assert "Kill pid 4242 (python train.py --gpu 0)? y/n" in screen_text(app)
        await pilot.press("n")
        assert not isinstance(app.screen, KillScreen)
        assert killed == []


@pytest.mark.tui
async def test_k_then_y_sends_sigterm_to_the_selected_row():
    killed = []
    app = make_app(FakeSampler(lambda t: make_sample(1, t)), kill=lambda pid, sig: killed.append((pid, sig)))
    async with app.run_test(size=(120, 40)) as pilot:
        await started(pilot)
        app.query_one(ProcessTable).focus()
        await pilot.press("down", "k", "y")
        assert killed == [(4243, signal.SIGTERM)]


@pytest.mark.tui
async def test_kill_errors_become_a_notification():
    def refuse(pid, sig):
        raise PermissionError(errno.EPERM, "Operation not permitted")

    app = make_app(FakeSampler(lambda t: make_sample(1, t)), kill=refuse)
    async with app.run_test(size=(120, 40)) as pilot:
        await started(pilot)
        await pilot.press("k", "y")
        await pilot.pause()
        messages = [n.message for n in app._notifications]
        assert any("Operation not permitted" in m and "4242" in m for m in messages)


@pytest.mark.tui
async def test_s_cycles_the_sort_column():
    app = make_app(FakeSampler(lambda t: make_sample(2, t)))
    async with app.run_test(size=(160, 50)) as pilot:
        await started(pilot)
        table = app.query_one(ProcessTable)
        assert table.sort_key == "mem"
        await pilot.press("s")
        assert table.sort_key == "sm"
        assert table.cells_at(0)[4] == "80 %"
        await pilot.press("s", "s")  # cpu, then pid: ascending
        assert table.sort_key == "pid"
        assert [table.cells_at(i)[0] for i in range(table.row_count)] == ["4242", "4243", "4342", "4343"]
        assert "sort pid" in screen_text(app)


@pytest.mark.tui
async def test_t_cycles_the_theme_and_f_shows_core_frequencies():
    app = make_app(FakeSampler(lambda t: make_sample(1, t)))
    async with app.run_test(size=(120, 40)) as pilot:
        await started(pilot)
        before = app.theme
        await pilot.press("t")
        assert app.theme != before
        await pilot.press("f")
        assert app.query_one(CpuPanel).show_freq
        assert "2.0G" in screen_text(app)


# -- what is shown ----------------------------------------------------------------------------


@pytest.mark.tui
async def test_no_gpu_shows_why_and_the_cpu_in_full():
    sample = make_sample(0, gpu_unavailable="NVIDIA driver not loaded")
    app = make_app(FakeSampler(sample))
    async with app.run_test(size=(120, 40)) as pilot:
        await started(pilot)
        text = screen_text(app)
        assert "No GPU shown: NVIDIA driver not loaded" in text
        assert "of 2 cores busy" in text and "RAM" in text
        assert app.query_one(NoGpuPanel)
        await pilot.press("d")  # nothing to select: a notice, not a crash
        assert app.selected_gpu is None


@pytest.mark.tui
@pytest.mark.parametrize("cpu_power_w", [None, 45.0])
async def test_without_a_gpu_the_power_chart_is_there_only_with_the_cpu_s_power(cpu_power_w):
    """#26 (also seen): with no GPU and no RAPL, half the screen was an empty "power, W n/a"
    chart; the activity chart takes the width instead."""
    from gputop.tui.widgets.charts import Chart

    sample = make_sample(0, gpu_unavailable="NVIDIA driver not loaded")
    sample = replace(sample, cpu=cpu_sample(power_w=cpu_power_w))
    app = make_app(FakeSampler(lambda t: replace(sample, ts_ns=sample.ts_ns + t * 1_000_000_000)))
    async with app.run_test(size=(120, 40)) as pilot:
        await started(pilot, samples=3)
        await pilot.pause()
        power = app.query_one("#chart-power", Chart)
        activity = app.query_one("#chart-activity", Chart)
        if cpu_power_w is None:
            assert not power.display and activity.size.width > 100  # the whole width, less its margins
        else:
            assert power.display and activity.size.width < 80 and "CPU pkg" in screen_text(app)


@pytest.mark.tui
async def test_none_is_shown_as_na_never_zero():
    sample = make_sample(1)
    sample = with_gpu(sample, 0, fan_pct=None, power_w=None, temp_c=None, sm_active_pct=None)
    sample = replace(sample, cpu=cpu_sample(power_w=None))
    app = make_app(FakeSampler(sample))
    async with app.run_test(size=(160, 50)) as pilot:
        await started(pilot)
        text = screen_text(app)
        assert "fan n/a" in text and "temp n/a" in text and "power n/a of 700 W" in text
        assert "SM activity n/a" in text and "package power n/a" in text
        assert "NVLink ↑n/a ↓n/a" in text
        assert "0 W of" not in text and "fan 0" not in text


@pytest.mark.tui
async def test_util_and_sm_activity_disagreement_is_spelled_out():
    sample = with_gpu(make_sample(1), 0, gpu_util_pct=100.0, sm_active_pct=23.5)
    app = make_app(FakeSampler(sample))
    async with app.run_test(size=(160, 50)) as pilot:
        await started(pilot)
        text = screen_text(app)
        assert "31 of 132 SMs active" in text
        assert "util 100 % but only 31 of 132 SMs busy: kernels are small or stalled" in text
        assert app.query_one(GpuPanel).has_class("-trap")


@pytest.mark.tui
async def test_agreement_has_no_warning():
    sample = with_gpu(make_sample(1), 0, gpu_util_pct=100.0, sm_active_pct=89.4)
    app = make_app(FakeSampler(sample))
    async with app.run_test(size=(160, 50)) as pilot:
        await started(pilot)
        text = screen_text(app)
        assert "118 of 132 SMs active" in text and "kernels are small" not in text


@pytest.mark.tui
async def test_a_lost_gpu_is_shown_and_the_others_continue():
    def make(t: int) -> Sample:
        sample = make_sample(3, t)
        return replace(sample, gpus=(sample.gpus[0], lost(sample.gpus[1]), sample.gpus[2]))

    app = make_app(FakeSampler(make))
    async with app.run_test(size=(160, 50)) as pilot:
        await started(pilot)
        text = screen_text(app)
        assert "lost (fell off the bus?)" in text
        rows = list(app.query(GpuRow))
        assert rows[1].has_class("-lost") and not rows[2].has_class("-lost")
        assert "SMs" in rows[2].plain_for(rows[2].content_size.width)


@pytest.mark.tui
async def test_energy_counts_from_when_gputop_started():
    app = make_app(FakeSampler(lambda t: make_sample(1, t)), paused=True)
    async with app.run_test(size=(160, 50)) as pilot:
        for t in range(5):  # energy_j grows 500 J a tick in the fixture
            app.ingest(make_sample(1, t))
        await pilot.pause()
        assert "energy 2 kJ since start" in screen_text(app)


@pytest.mark.tui
async def test_paused_at_start_takes_no_sample():
    sampler = FakeSampler(lambda t: make_sample(1, t))
    app = make_app(sampler, interval_s=0.1, paused=True)
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.pause(0.3)
        assert sampler.calls == 0
        assert "waiting for the first sample" in screen_text(app)


@pytest.mark.unit
def test_own_cpu_is_process_time_over_wall_time():
    cpu, wall = iter([3.0, 3.5, 3.6]), iter([7.0, 8.0, 8.0])
    meter = SelfCpu(cpu_clock=lambda: next(cpu), wall_clock=lambda: next(wall), window_s=0)
    assert meter.read() is None  # the first reading only starts the interval
    assert meter.read() == pytest.approx(50.0)
    assert meter.read() == pytest.approx(50.0)  # no wall time passed: the last figure, not infinite


@pytest.mark.unit
def test_own_cpu_is_measured_over_whole_windows():
    clock = {"cpu": 0.0, "wall": 0.0}
    meter = SelfCpu(cpu_clock=lambda: clock["cpu"], wall_clock=lambda: clock["wall"], window_s=3.0)
    assert meter.read() is None
    clock.update(cpu=0.01, wall=1.0)
    assert meter.read() is None  # a window has not passed: still nothing to say
    clock.update(cpu=0.06, wall=3.0)
    assert meter.read() == pytest.approx(2.0)  # 0.06 s over 3 s
    clock.update(cpu=0.5, wall=4.0)  # a busy second, inside the next window
    assert meter.read() == pytest.approx(2.0)
    clock.update(cpu=0.51, wall=6.0)
    assert meter.read() == pytest.approx(15.0)  # 0.45 s over the 3 s since


@pytest.mark.unit
def test_own_cpu_does_not_count_the_time_before_the_first_reading():
    """Built at start-up, first read after a second of imports and layout: that second is not
    the cost of sampling, so it is not a reading."""
    readings = {"cpu": 0.0, "wall": 0.0}
    meter = SelfCpu(cpu_clock=lambda: readings["cpu"], wall_clock=lambda: readings["wall"], window_s=0)
    readings.update(cpu=0.9, wall=1.0)  # a busy start-up
    assert meter.read() is None
    readings.update(cpu=0.92, wall=2.0)
    assert meter.read() == pytest.approx(2.0)


@pytest.mark.tui
async def test_status_bar_own_cpu_is_na_until_a_real_interval_passed():
    cpu, wall = iter([5.0, 5.25]), iter([1.0, 2.0])
    meter = SelfCpu(cpu_clock=lambda: next(cpu), wall_clock=lambda: next(wall), window_s=1.0)
    app = make_app(FakeSampler(lambda t: make_sample(1, t)), paused=True, self_cpu=meter)
    async with app.run_test(size=(120, 40)) as pilot:
        app.ingest(make_sample(1, 0))
        await pilot.pause()
        assert "own CPU n/a" in screen_text(app)
        app.ingest(make_sample(1, 1))
        await pilot.pause()
        assert "own CPU 25.0 %" in screen_text(app)


# -- the process table says why it is empty ------------------------------------------------


@pytest.mark.tui
@pytest.mark.parametrize(
    "make, reason",
    [
        (lambda: with_gpu(make_sample(1), 0, processes=()), "no GPU processes"),
        (lambda: with_gpu(make_sample(1), 0, processes=None), "no GPU processes shown: the driver does not list them here"),
        (lambda: replace(make_sample(1), gpus=(lost(make_sample(1).gpus[0]),)), "no GPU processes: every GPU is lost"),
    ],
    ids=["no-processes", "not-listed", "lost"],
)
async def test_an_empty_process_table_says_why(make, reason):
    app = make_app(FakeSampler(make()))
    async with app.run_test(size=(120, 40)) as pilot:
        await started(pilot)
        table = app.query_one(ProcessTable)
        assert table.row_count == 0 and table.message == reason
        assert reason in screen_text(app)


@pytest.mark.tui
async def test_the_empty_note_goes_when_processes_appear():
    samples = [with_gpu(make_sample(1), 0, processes=()), make_sample(1)]
    app = make_app(FakeSampler(samples), paused=True)
    async with app.run_test(size=(120, 40)) as pilot:
        app.ingest(samples[0])
        await pilot.pause()
        assert "no GPU processes" in screen_text(app)
        app.ingest(samples[1])
        await pilot.pause()
        assert app.query_one(ProcessTable).message is None
        text = screen_text(app)
        assert "no GPU processes" not in text and "python train.py --gpu 0" in text


# -- a sampler that raises ----------------------------------------------------------------------


class Flaky(FakeSampler):
    """Ticks ``bad`` raise; the others sample as usual."""

    def __init__(self, bad: set[int]) -> None:
        super().__init__(lambda t: make_sample(1, t))
        self.bad = bad

    def sample(self) -> Sample:
        t = self.calls
        sample = super().sample()
        if t in self.bad:
            raise RuntimeError("NVML went away")
        return sample


@pytest.mark.tui
async def test_a_sampler_error_is_a_notification_and_sampling_goes_on():
    sampler = Flaky(bad={1, 2, 3})
    app = make_app(sampler, interval_s=0.1)
    async with app.run_test(size=(120, 40)) as pilot:
        await until(pilot, lambda: sampler.calls >= 6 and app.samples_taken >= 2)
        assert app.is_running
        messages = [n.message for n in app._notifications]
        failed = [m for m in messages if m.startswith("sampling failed")]
        assert failed == ["sampling failed: RuntimeError: NVML went away (retrying every 0.1 s)"]  # once
        assert any("sampling works again after 3 failed ticks" in m for m in messages)
        assert "of 132 SMs" in screen_text(app)


@pytest.mark.tui
async def test_while_ticks_fail_the_header_says_so_instead_of_live():
    """After the notification's 8 s the panels still show the last good sample: the header
    must not say "live" meanwhile."""
    sampler = Flaky(bad=set())
    app = make_app(sampler, interval_s=0.1)
    header = lambda: screen_text(app).splitlines()[0]  # noqa: E731
    async with app.run_test(size=(120, 40)) as pilot:
        await until(pilot, lambda: app.samples_taken >= 1 and " live " in header())
        sampler.bad = set(range(sampler.calls, sampler.calls + 10_000))  # every tick from now on fails
        await until(pilot, lambda: "SAMPLING FAILED, " in header() and " live " not in header())
        await until(pilot, lambda: app.sample_errors >= 2)
        await until(pilot, lambda: f"FAILED, {app.sample_errors} ticks" in header())  # it counts
        sampler.bad = set()
        await until(pilot, lambda: "SAMPLING FAILED" not in header() and " live " in header())


def header_fit(app: GputopApp, width: int) -> str:
    """The header as it is built for ``width`` columns."""
    return "".join(text for text, _ in app.query_one(StatusBar).build(width)[0])


@pytest.mark.tui
async def test_the_failure_badge_fits_a_narrow_header_and_does_not_push_the_rest_out():
    """At 40 columns the long badge left no room, and the header dropped it and all after it."""
    sampler = Flaky(bad=set(range(1, 1000)))  # (one good sample: a GPU to show)
    app = make_app(sampler, interval_s=0.1)
    async with app.run_test(size=(120, 40)) as pilot:
        await until(pilot, lambda: app.sample_errors >= 2)
        app.workers.cancel_group(app, "sampling")  # (the count stays put)
        await pilot.pause(0.1)
        n = app.sample_errors
        name = "gputop testhost"
        short = len(name) + 3 + len(f" FAILED {n} ") + 3 + len("GPU 0")  # "every 0.1 s" skipped
        wide, narrow = header_fit(app, 120), header_fit(app, short)
        assert f"SAMPLING FAILED, {n} ticks" in wide and "every 0.1 s" in wide and "? help" in wide
        assert narrow == f"{name}    FAILED {n}    GPU 0"
        assert header_fit(app, len(name) + 3 + len(" FAILED ")) == f"{name}    FAILED "
        # no form of the badge fits: nothing after it either (not a GPU without its warning)
        assert header_fit(app, len(name) + 3 + len(" FAILED ") - 1) == name
        assert all(len(header_fit(app, w)) <= w for w in range(15, 121))  # (narrower: the panel crops the name)


@pytest.mark.tui
async def test_a_replays_cut_off_warning_is_never_left_out_while_later_parts_show():
    app = make_app(FakeSampler(lambda t: make_sample(1, t)), paused=True)
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.pause()
        status = app.query_one(StatusBar)
        status.replay = ReplayPosition(index=4, count=10, offset_s=4.0, duration_s=9.0, ts_ns=0, speed=1.0, complete=False)
        widths = range(15, 160)
        with_cut = [w for w in widths if "cut off" in header_fit(app, w)]
        assert with_cut and with_cut == list(range(with_cut[0], 160))  # shown from some width on
        for w in widths:
            text = header_fit(app, w)
            assert len(text) <= w
            if "cut off" not in text:
                assert "? help" not in text and "GPU" not in text, (w, text)


@pytest.mark.tui
async def test_paused_while_ticks_fail_the_header_says_both():
    sampler = Flaky(bad=set(range(1000)))
    app = make_app(sampler, interval_s=0.1)
    async with app.run_test(size=(120, 40)) as pilot:
        await until(pilot, lambda: app.sample_errors >= 2)
        await pilot.press("p")
        await until(pilot, lambda: "PAUSED" in screen_text(app).splitlines()[0])
        assert f"PAUSED, LAST {app.sample_errors} TICKS FAILED" in screen_text(app).splitlines()[0]


class Hangs(FakeSampler):
    """Samples as usual; while ``hang`` is set each sample blocks (a driver call that does not
    return) until ``release`` is."""

    def __init__(self) -> None:
        super().__init__(lambda t: make_sample(1, t))
        self.hang, self.release = threading.Event(), threading.Event()

    def sample(self) -> Sample:
        if self.hang.is_set():
            self.release.wait(30)
        return super().sample()


@contextlib.asynccontextmanager
async def hanging_app(monkeypatch, interval_s: float):
    """The live view over a ``Hangs`` sampler, the stall grace cut to 0.3 s; the sampler is
    released at the end whatever the test did."""
    monkeypatch.setattr(stall, "STALL_GRACE_S", 0.3)
    monkeypatch.setattr(stall, "STALL_EVERY_S", 0.1)
    sampler = Hangs()
    app = make_app(sampler, interval_s=interval_s)
    try:
        async with app.run_test(size=(120, 40)) as pilot:
            yield app, pilot, sampler, lambda: screen_text(app).splitlines()[0]
    finally:
        sampler.release.set()


@pytest.mark.tui
async def test_a_sample_that_hangs_turns_live_into_no_sample_for(monkeypatch):
    """A hung sample fails no tick: the header said "live" over the last sample for as long as
    the call hung (12 s seen). Now it says how long no sample has come back, and "live" again
    once one does; pausing stops the watch."""
    async with hanging_app(monkeypatch, 0.1) as (app, pilot, sampler, header):
        await until(pilot, lambda: app.samples_taken >= 2 and " live " in header())
        assert app.sample_stalled_s is None
        sampler.hang.set()
        await until(pilot, lambda: "NO SAMPLE FOR " in header() and " live " not in header())
        first = app.sample_stalled_s
        assert first is not None and first >= 0.4  # the interval and the grace
        await until(pilot, lambda: (app.sample_stalled_s or 0) >= first + 0.3)  # it counts up
        await until(pilot, lambda: f"NO SAMPLE FOR {app.sample_stalled_s:.0f} s" in header())
        taken = app.samples_taken
        sampler.hang.clear()
        sampler.release.set()
        await until(pilot, lambda: app.samples_taken > taken and " live " in header() and "NO SAMPLE" not in header())
        assert app.sample_stalled_s is None
        sampler.release.clear()
        sampler.hang.set()
        await until(pilot, lambda: app.sample_stalled_s is not None)
        await pilot.press("p")
        await until(pilot, lambda: " PAUSED " in header() and "NO SAMPLE" not in header())
        assert app.sample_stalled_s is None


@pytest.mark.tui
@pytest.mark.parametrize("keys", [("minus",), ("p", "p")])
async def test_a_hang_behind_a_tick_due_at_once_shows_after_the_grace_not_the_interval(monkeypatch, keys):
    """At 30 s a tick, - (or a pause and resume) asks for a tick at once: hung, the header said
    "live" for the whole interval and the grace."""
    async with hanging_app(monkeypatch, 30.0) as (app, pilot, sampler, header):
        await until(pilot, lambda: app.samples_taken >= 1 and " live " in header())
        await pilot.pause(0.5)  # (the first tick's 0.3 s have passed: only the key's tick is due)
        assert app.sample_stalled_s is None
        sampler.hang.set()
        for key in keys:
            await pilot.press(key)
        await until(pilot, lambda: "NO SAMPLE FOR " in header(), timeout_s=5)  # (not 30 s)


@pytest.mark.tui
async def test_a_sampler_failing_from_the_start_does_not_crash():
    sampler = Flaky(bad=set(range(1000)))
    app = make_app(sampler, interval_s=0.1)
    async with app.run_test(size=(120, 40)) as pilot:
        await until(pilot, lambda: sampler.calls >= 3)
        assert app.is_running and app.samples_taken == 0
        assert "waiting for the first sample" in screen_text(app)
        assert any("NVML went away" in n.message for n in app._notifications)
        await pilot.press("q")
        await pilot.pause()
        assert not app.is_running


@pytest.mark.e2e
def test_the_tui_does_not_import_plotext():
    """The charts draw braille into Strips themselves; plotext stays out of the monitor's startup."""
    code = "import sys, gputop.tui.app; print([m for m in sys.modules if 'plotext' in m])"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


@pytest.mark.tui
@pytest.mark.parametrize("size", [(80, 24), (160, 50), (250, 70)])
@pytest.mark.parametrize("n_gpus", [0, 1, 2, 8])
async def test_renders_at_every_size(n_gpus, size):
    app = make_app(FakeSampler(lambda t: make_sample(n_gpus, t, cores=16)), paused=True)
    async with app.run_test(size=size) as pilot:
        for t in range(3):
            app.ingest(make_sample(n_gpus, t, cores=16))
        await pilot.pause()
        text = screen_text(app)
        assert "of 16 cores busy" in text
        if n_gpus:
            assert "of 132 SMs" in text.replace("/132 SMs", " of 132 SMs")
            assert len(app.query(GpuRow) if n_gpus > 2 or size[1] < 56 and n_gpus == 2 else app.query(GpuPanel)) >= n_gpus
        else:
            assert "No GPU shown" in text


# -- snapshots --------------------------------------------------------------------------------


def snapshot_app(n_gpus: int) -> GputopApp:
    return make_app(FakeSampler(lambda t: make_sample(n_gpus, t, cores=8)), paused=True)


def feed(n_gpus: int, ticks: int = 90):
    async def run_before(pilot) -> None:
        app = pilot.app
        for t in range(ticks):
            app.ingest(make_sample(n_gpus, t, cores=8))
        await until(pilot, lambda: app.query("#charts") or app.screen.has_class("-short"))
        app.query_one(CpuPanel)  # mounted
        await pilot.pause()

    return run_before


@pytest.mark.tui
@pytest.mark.parametrize("size", [(80, 24), (160, 50)], ids=["80x24", "160x50"])
@pytest.mark.parametrize("n_gpus", [0, 1, 8], ids=["0gpu", "1gpu", "8gpu"])
def test_snapshot(snap_compare, n_gpus, size):
    assert snap_compare(snapshot_app(n_gpus), terminal_size=size, run_before=feed(n_gpus))


@pytest.mark.tui
async def test_a_tick_that_lands_during_shutdown_is_dropped():
    """The sampling thread can finish a tick after the widgets are gone: no crash on exit."""
    app = make_app(FakeSampler(lambda t: make_sample(1, t)), paused=True)
    async with app.run_test(size=(120, 40)) as pilot:
        app.ingest(make_sample(1, 0))
        await pilot.pause()
    assert not app.is_running
    app._on_tick(make_sample(1, 1))
    app._on_tick(RuntimeError("late"))


def _named(sample, name):
    return with_gpu(sample, 0, info=replace(sample.gpus[0].info, name=name))


@pytest.mark.tui
async def test_a_device_name_with_brackets_is_text_not_markup():
    """Textual reads border titles as markup: "[simulated]" would vanish unescaped."""
    app = make_app(FakeSampler(lambda t: _named(make_sample(1, t), "NVIDIA H100 80GB HBM3 [simulated]")))
    async with app.run_test(size=(160, 50)) as pilot:
        await started(pilot)
        assert "GPU0 H100 80GB HBM3 [simulated]" in screen_text(app)


@pytest.mark.tui
async def test_compact_rows_show_a_long_name_whole_when_wide():
    name = "H100 80GB HBM3 (simulated)"

    def sample(t):
        s = make_sample(3, t)
        return replace(s, gpus=tuple(replace(g, info=replace(g.info, name="NVIDIA " + name)) for g in s.gpus))

    app = make_app(FakeSampler(sample))
    async with app.run_test(size=(250, 70)) as pilot:
        await started(pilot)
        assert f"1 {name} " in screen_text(app)
    async with make_app(FakeSampler(sample)).run_test(size=(120, 40)) as pilot:
        await started(pilot)
        assert "1 H100 80GB HBM3 … " in screen_text(pilot.app)  # narrow: cut, and it says so


@pytest.mark.tui
async def test_frames_draw_the_latest_sample_at_most_once_per_frame_s():
    """Fast sampling fills the history with every sample but redraws at most once per frame."""
    app = make_app(FakeSampler(lambda t: make_sample(1, t)), paused=True, frame_s=0.3)
    async with app.run_test(size=(120, 40)) as pilot:
        samples = [make_sample(1, t, cores=2) for t in range(4)]
        app.ingest(samples[0])
        assert app.sample is samples[0]  # the first frame is due at once
        for s in samples[1:]:
            app.ingest(s)
        assert app.sample is samples[0]  # inside the frame: not drawn yet...
        assert len(app.history) == 4  # ...but every sample is in the history
        await until(pilot, lambda: app.sample is samples[-1], timeout_s=2)  # the latest, once due


@pytest.mark.tui
async def test_fast_sampling_comes_in_batches_each_drawn_once_with_nothing_lost():
    """Live at 20 ms with 0.3 s frames: the sampling thread hands a frame's samples over as one
    batch; every sample reaches the history, in order, and the screen shows the latest."""
    sampler = FakeSampler(lambda t: make_sample(1, t))
    app = make_app(sampler, 0.02, frame_s=0.3)
    drawn = []
    async with app.run_test(size=(120, 40)) as pilot:
        orig = app._draw

        def draw():
            orig()
            drawn.append(app.samples_taken)

        app._draw = draw
        await until(pilot, lambda: len(drawn) >= 4, timeout_s=10)
        sampling = list(drawn)  # (the pause then hands over what was taken since the last batch)
        app.action_toggle_pause()
        await pilot.pause(0.1)
        taken = app.samples_taken
        # the paused screen comes to show the last sample (drawn when the frame is due)
        await until(pilot, lambda: app.sample.ts_ns == make_sample(1, taken - 1).ts_ns, timeout_s=2)
    assert taken >= 2 * len(drawn)  # several samples a frame
    # each frame after a batch of them (~15 a frame here). A median: a sampling thread starved for
    # a frame hands over the one sample it took since, as it should; every pair checked failed once in CI
    assert statistics.median(b - a for a, b in zip(sampling, sampling[1:])) >= 5, sampling
    assert len(app.history) == taken  # none lost on the way, a batch pending at the pause included
    assert sampler.calls - taken <= 1  # but the one still being taken when it came


@pytest.mark.tui
async def test_a_process_from_another_pid_namespace_says_so():
    from gputop.model import GpuProcess

    hidden = GpuProcess(pid=4000000, gpu_index=0, kind="compute", gpu_mem_bytes=40 * 1024**3)
    sample = with_gpu(make_sample(1, 0), 0, processes=(hidden,))
    app = make_app(FakeSampler(sample))
    async with app.run_test(size=(200, 40)) as pilot:
        await started(pilot)
        assert "4000000" in screen_text(app)
        assert "(not visible from this pid namespace" in screen_text(app)


@pytest.mark.tui
async def test_k_on_a_process_this_namespace_cannot_see_refuses_and_says_why():
    """In a container the driver lists host pids: asking "Kill pid 4000000?" and then sending
    SIGTERM would signal a different process (or none) under that number here."""
    from gputop.model import GpuProcess

    hidden = GpuProcess(pid=4000000, gpu_index=0, kind="compute", gpu_mem_bytes=40 * 1024**3)
    sample = with_gpu(make_sample(1, 0), 0, processes=(hidden,))
    killed = []
    app = make_app(FakeSampler(sample), kill=lambda pid, sig: killed.append((pid, sig)))
    async with app.run_test(size=(200, 40)) as pilot:
        await started(pilot)
        await pilot.press("k")
        await pilot.pause()
        assert not isinstance(app.screen, KillScreen)  # not asked
        await pilot.press("y")
        assert killed == []
        messages = [n.message for n in app._notifications]
        assert messages == [
            "not killing pid 4000000: it is not visible from this pid namespace "
            "(in a container, a host pid; here that number is not the same process)"
        ]


@pytest.mark.tui
@pytest.mark.parametrize("size", [(120, 40), (80, 24), (40, 10)], ids=["120x40", "80x24", "40x10"])
async def test_without_a_gpu_the_reason_is_said_once_and_the_rows_are_used(size):
    """It was said three or four times (GPU panel, process table, charts), nine rows stayed empty
    at 80x24, and at 40x10 the reason was below the screen's edge."""
    make = lambda t: make_sample(0, t, gpu_unavailable="NVIDIA driver not loaded")  # noqa: E731
    app = make_app(FakeSampler(make), paused=True)
    async with app.run_test(size=size) as pilot:
        for t in range(20):
            app.ingest(make(t))
        await pilot.pause()
        text = screen_text(app)
        assert text.count("NVIDIA driver not loaded") == 1 and text.lower().count("no gpu") == 1, text
        assert not app.screen.show_vertical_scrollbar and not app.query_one(ProcessTable).region.height
        assert app.query_one("#top").region.bottom <= size[1] - 1  # CPU and reason above the footer
        rows = text.splitlines()
        assert len(rows) == size[1] and not [r for r in rows[1:-1] if not r.strip()], text  # no empty row
        if size[1] >= 24:  # the CPU's charts take the GPU's rows, on a short terminal too
            assert "CPU cores" in text and app.query_one("#chart-activity").region.height >= 12
            assert not app.query_one("#chart-bandwidth").region.height  # a GPU-only chart


@pytest.mark.tui
@pytest.mark.parametrize("width", [40, 80, 100, 120, 160])
async def test_the_footer_fits_the_width_and_keeps_help(width):
    """At 80 columns the footer read "... k kill  t th" (cut) beside "^p palette"."""
    app = make_app(FakeSampler(lambda t: make_sample(1, t)), paused=True)
    async with app.run_test(size=(width, 30)) as pilot:
        app.ingest(make_sample(1, 0))

        def drawn() -> bool:  # the footer fits itself after a refresh: wait for that frame
            footer = screen_text(app).splitlines()[-1]
            keys = [k for k in app.query("FooterKey") if k.display]
            return bool(keys) and all(f"{k.key_display} {k.description}" in footer for k in keys)

        await until(pilot, drawn)
        footer = screen_text(app).splitlines()[-1]
        keys = [k for k in app.query("FooterKey") if k.display]
        assert keys and all(k.region.right <= width for k in keys)
        shown = [(k.key_display, k.description) for k in keys]
        assert ("?", "help") in shown and ("q", "quit") in shown
        for key, description in shown:  # each one whole
            assert f"{key} {description}" in footer, footer
        if width >= 120:
            assert len(shown) == 11 and "^p palette" in footer  # everything, in Textual's spacing
        if width >= 80:
            assert len(shown) >= 9


@pytest.mark.tui
async def test_the_cli_views_freeze_start_up_objects_out_of_the_collector_after_the_first_frame():
    """settle_heap: once, a while after the first frame (the CLI passes settle_heap_s); an app
    built without it (every test's) never freezes."""
    import gc

    assert gc.get_freeze_count() == 0
    app = make_app(FakeSampler(lambda t: make_sample(1, t)), settle_heap_s=0.05)
    plain = make_app(FakeSampler(lambda t: make_sample(1, t)))
    try:
        async with plain.run_test(size=(120, 40)) as pilot:
            await started(pilot)
            await pilot.pause(0.2)
            assert gc.get_freeze_count() == 0
        async with app.run_test(size=(120, 40)) as pilot:
            await started(pilot)
            await until(pilot, lambda: gc.get_freeze_count() > 0)
        gc.unfreeze()
        from gputop.view.feed import ReplayFeed

        replay = GputopApp(ReplayFeed([make_sample(1, t) for t in range(5)]), settle_heap_s=0.05)
        async with replay.run_test(size=(120, 40)) as pilot:  # its frames: show_sample, not _draw
            await until(pilot, lambda: gc.get_freeze_count() > 0)
    finally:
        gc.unfreeze()


@pytest.mark.tui
async def test_with_no_frame_at_all_the_heap_still_settles_and_the_collector_runs_again(monkeypatch):
    """Every sample failing (or the first one hung in the driver) draws no frame: the collector
    the CLI held at start-up stayed off for the whole session (the review found RSS 44 -> 143
    MiB after 60 theme changes). SETTLE_HEAP_LATEST_S after mount it settles anyway."""
    import gc

    from gputop.tui import app as app_module

    monkeypatch.setattr(app_module, "SETTLE_HEAP_LATEST_S", 0.2)

    class Failing:
        def sample(self):
            raise OSError("nvmlInit: the driver did not answer")

    app = make_app(Failing(), settle_heap_s=0.05)
    gc.disable()
    try:
        async with app.run_test(size=(120, 40)) as pilot:
            await until(pilot, lambda: gc.get_freeze_count() > 0)
            assert gc.isenabled() and app.samples_taken == 0
    finally:
        gc.enable()
        gc.unfreeze()
