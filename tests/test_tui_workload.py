"""The workload panel (gputop --run): a fake workload hands the app WorkloadState snapshots."""

from __future__ import annotations

import asyncio
import re
import signal
import time
from dataclasses import replace

import pytest

from gputop import format as fmt
from gputop.tui.widgets.processes import WORKLOAD_MARK, ProcessTable
from gputop.tui.widgets.workload import WorkloadLog, WorkloadPanel, clean_line, elapsed, sparkline, wrap_output
from gputop.view.history import workload_key
from gputop.workload import WorkloadState, WorkloadStep, placement
from tui_fixtures import (
    T0_NS,
    FakeSampler,
    FakeWorkload,
    h100,
    make_app,
    make_sample,
    screen_text,
    silent,
    started,
    until,
    with_gpu,
    workload_app,
)


def running(**overrides) -> WorkloadState:
    """A bundled workload well into its run, reporting every event."""
    values = dict(
        name="mlp",
        argv=("python", "-m", "gputop.workloads.mlp"),
        pid=4242,
        status="running",
        returncode=None,
        started_ns=time.time_ns() - 83 * 10**9,
        ended_ns=None,
        events=True,
        device="cuda:0",
        device_name="NVIDIA H100 80GB HBM3",
        precision="bf16",
        batch_size=8192,
        sample_unit="samples",
        flops_per_step=1.2e12,
        peak_flops=989e12,
        peak_flops_source="table",
        steps_planned=2000,
        step=120,
        samples_per_s=41234.5,
        tflops=183.24,
        mfu_pct=18.53,
        loss=2.3026,
        losses=(4.6, 4.1, 3.7, 3.2, 2.9, 2.6, 2.4, 2.3026),
        joules_per_step=45.2,
        recent_steps=(WorkloadStep(step=120, samples=8192, loss=2.3026, wall_s=0.2, ts_ns=T0_NS),),
        error=None,
        pids=frozenset({4242, 4250}),
        output_tail=("step 100/2000  loss 2.41", "step 120/2000  loss 2.30  41,234 samples/s"),
    )
    values.update(overrides)
    return WorkloadState(**values)


# -- what the panel shows ---------------------------------------------------------------------


@pytest.mark.tui
async def test_panel_shows_progress_and_achievements():
    wl = FakeWorkload(running())
    app = workload_app(wl)
    async with app.run_test(size=(160, 50)) as pilot:
        await started(pilot)
        text = screen_text(app)
        assert "workload mlp pid 4242" in text
        assert "device cuda:0 (NVIDIA H100 80GB HBM3)" in text
        assert "step 120 of 2,000" in text
        assert "samples/s 41,234" in text
        assert "TFLOP/s 183.2" in text and "MFU 18.5 %" in text
        assert "energy/step 45.2 J" in text
        assert "loss 2.303" in text
        assert "running" in text
        assert "step 120/2000  loss 2.30  41,234 samples/s" in text  # the output log
        assert "tokens/s" not in text  # not a language model


@pytest.mark.tui
async def test_a_language_model_shows_tokens_per_second_too():
    wl = FakeWorkload(running(name="transformer", sample_unit="sequences", samples_per_s=40.0, tokens_per_sample=1024))
    app = workload_app(wl)
    async with app.run_test(size=(160, 50)) as pilot:
        await started(pilot)
        text = screen_text(app)
        assert "sequences/s 40.0" in text and "tokens/s 40,960" in text


@pytest.mark.tui
@pytest.mark.parametrize(
    "age_s, wall_s, stale",
    [
        (None, 0.2, False),  # no step yet
        (1.5, 0.2, False),  # between steps
        (9.0, 0.2, False),  # under the 10 s floor
        (42.0, 0.2, True),  # a hang: 42 s without a step whose typical time is 0.2 s
        (42.0, 20.0, False),  # long steps: 42 s is only two of them
        (130.0, 20.0, True),
    ],
)
async def test_rates_of_a_workload_that_stopped_stepping_are_marked_stale(age_s, wall_s, stale):
    steps = tuple(WorkloadStep(step=k, samples=8192, loss=None, wall_s=wall_s, ts_ns=T0_NS) for k in range(5))
    wl = FakeWorkload(running(last_step_age_s=age_s, recent_steps=steps))
    app = workload_app(wl)
    async with app.run_test(size=(160, 50)) as pilot:
        await started(pilot)
        text = screen_text(app)
        assert ("no step for" in text) is stale
        if stale:
            assert f"no step for {elapsed(age_s)}: rates as of then" in text
        assert "samples/s 41,234" in text  # still shown: the last steps measured, marked


@pytest.mark.tui
async def test_an_ended_workload_is_never_called_stale():
    wl = FakeWorkload(running(status="ok", returncode=0, ended_ns=time.time_ns(), last_step_age_s=300.0))
    app = workload_app(wl)
    async with app.run_test(size=(160, 50)) as pilot:
        await started(pilot)
        assert "no step for" not in screen_text(app)


@pytest.mark.tui
async def test_each_sample_is_handed_to_poll():
    wl = FakeWorkload(running())
    app = workload_app(wl, paused=True)
    async with app.run_test(size=(160, 50)) as pilot:
        samples = [make_sample(1, t) for t in range(3)]
        for s in samples:
            app.ingest(s)
        await pilot.pause()
        assert wl.polled == samples
        assert app.history.series(workload_key("samples_per_s")) == [41234.5] * 3


@pytest.mark.tui
async def test_loss_sparkline_follows_the_losses():
    wl = FakeWorkload(running())
    app = workload_app(wl)
    async with app.run_test(size=(160, 50)) as pilot:
        await started(pilot)
        assert "█▆▅▄▃▂▁▁" in screen_text(app)  # falling loss, scaled between its min and max


@pytest.mark.tui
async def test_a_script_without_events_reads_na_never_zero():
    wl = FakeWorkload(silent())
    app = workload_app(wl)
    async with app.run_test(size=(160, 50)) as pilot:
        await started(pilot)
        text = screen_text(app)
        assert "workload train.py pid 4242" in text
        for field in ("step n/a", "samples/s n/a", "TFLOP/s n/a", "MFU n/a", "energy/step n/a", "loss n/a", "device n/a"):
            assert field in text
        assert "no progress events: resource use and output only" in text
        assert "epoch 1 done" in text
        assert "MFU 0" not in text and "TFLOP/s 0" not in text


@pytest.mark.tui
async def test_elapsed_moves_on_while_the_state_stays_the_same():
    """A silent script's state does not change between ticks; its elapsed time still must."""
    state = silent(started_ns=time.time_ns() - 5 * 10**9)
    wl = FakeWorkload(state)
    app = workload_app(wl, paused=True)
    async with app.run_test(size=(160, 50)) as pilot:
        app.ingest(make_sample(1, 0))
        await pilot.pause()
        before = re.search(r"elapsed (\d+\.\d) s", screen_text(app))
        time.sleep(0.3)
        app.ingest(make_sample(1, 1))  # poll() hands back the very same (equal) state
        await pilot.pause()
        after = re.search(r"elapsed (\d+\.\d) s", screen_text(app))
        assert before and after and float(after[1]) >= float(before[1]) + 0.2, (before, after)


@pytest.mark.tui
async def test_a_finished_workload_keeps_its_status_and_exit_code():
    wl = FakeWorkload(
        running(), running(status="ok", returncode=0, started_ns=T0_NS, ended_ns=T0_NS + 90 * 10**9, step=2000, pids=frozenset())
    )
    app = workload_app(wl, paused=True)
    async with app.run_test(size=(160, 50)) as pilot:
        app.ingest(make_sample(1, 0))
        app.ingest(make_sample(1, 1))
        for t in range(2, 5):  # later ticks: the end stays on screen
            app.ingest(make_sample(1, t))
        await pilot.pause()
        text = screen_text(app)
        assert "finished (exit 0)" in text and "elapsed 1 m 30 s" in text
        assert "step 2,000 of 2,000" in text
        panel = app.query_one(WorkloadPanel)
        assert panel.has_class("-ended") and not panel.has_class("-failed")


@pytest.mark.tui
async def test_a_crash_shows_the_error_line_in_red():
    crashed = running(
        status="failed",
        returncode=1,
        ended_ns=T0_NS + 5 * 10**9,
        error="RuntimeError: CUDA out of memory. Tried to allocate 2.00 GiB",
        output_tail=("Traceback (most recent call last):", "RuntimeError: CUDA out of memory. Tried to allocate 2.00 GiB"),
    )
    app = workload_app(FakeWorkload(crashed))
    async with app.run_test(size=(160, 50)) as pilot:
        await started(pilot)
        text = screen_text(app)
        assert "failed (exit 1)" in text
        assert "error: RuntimeError: CUDA out of memory. Tried to allocate 2.00 GiB" in text
        panel = app.query_one(WorkloadPanel)
        assert panel.has_class("-failed")
        error_line = next(line for line in panel.text_for(panel.content_size.width).split("\n") if line.plain.startswith("error:"))
        red = panel.style_of("workload--error")  # the full style, as the panel draws it
        assert red.color is not None and red.bold
        assert all(span.style == red for span in error_line.spans) and error_line.spans


@pytest.mark.tui
async def test_killed_by_a_signal_names_it():
    state = running(status="stopped", returncode=-15, ended_ns=T0_NS + 10**9)
    app = workload_app(FakeWorkload(state))
    async with app.run_test(size=(160, 50)) as pilot:
        await started(pilot)
        assert "stopped by gputop (SIGTERM)" in screen_text(app)


@pytest.mark.tui
async def test_workload_processes_are_marked_in_the_gpu_table():
    app = workload_app(FakeWorkload(running(pids=frozenset({4243}))))
    async with app.run_test(size=(160, 50)) as pilot:
        await started(pilot)
        table = app.query_one(ProcessTable)
        rows = {table.cells_at(i)[0]: i for i in range(table.row_count)}
        ours, other = rows["4243"], rows["4242"]
        assert table.cells_at(ours)[6].startswith(WORKLOAD_MARK)
        assert not table.cells_at(other)[6].startswith(WORKLOAD_MARK)
        mark = table.get_component_rich_style("processes--workload", partial=True)
        assert mark.bold and mark.color is not None

        def pid_style(row):  # the style the pid is drawn in, on the table's line for ``row``
            return next(s.style for s in table.render_line(row + 1) if s.text.strip() == table.cells_at(row)[0])

        table.focus()
        for row in (ours, other):  # each row looked at with the cursor on the other one
            await pilot.press("end" if row == 0 else "home")
            assert table.cursor_row != row
            style = pid_style(row)
            assert (bool(style.bold), style.color == mark.color) == ((True, True) if row == ours else (False, False))


@pytest.mark.tui
@pytest.mark.parametrize(
    "pids, processes, says",
    [
        ({4242, 4243}, "listed", "on GPU 55 GiB in 2 processes"),
        ({4242}, "listed", "on GPU 30 GiB in 1 process"),
        ({999}, "listed", "on GPU no context"),
        ({4242}, None, None),  # the driver lists no processes: nothing said either way
    ],
    ids=["two", "one", "none", "unlisted"],
)
async def test_what_the_workload_holds_on_the_gpu(pids, processes, says):
    sample = make_sample(1)
    if processes is None:
        sample = with_gpu(sample, 0, processes=None)
    app = workload_app(FakeWorkload(running(pids=frozenset(pids))), paused=True)
    async with app.run_test(size=(160, 50)) as pilot:
        app.ingest(sample)
        await pilot.pause()
        text = screen_text(app)
        if says is None:
            assert "on GPU" not in text
        else:
            assert says in text


@pytest.mark.tui
async def test_q_stops_the_workload_then_quits():
    wl = FakeWorkload(running())
    app = workload_app(wl)
    async with app.run_test(size=(120, 40)) as pilot:
        await started(pilot)
        await pilot.press("q")
        await until(pilot, lambda: not app.is_running)
    assert wl.stops == 1


@pytest.mark.tui
async def test_a_failing_stop_still_quits():
    class Stubborn(FakeWorkload):
        def stop(self, grace_s: float = 5.0) -> None:
            raise OSError("no such process group")

    app = workload_app(Stubborn(running()))
    async with app.run_test(size=(120, 40)) as pilot:
        await started(pilot)
        await pilot.press("q")
        await until(pilot, lambda: not app.is_running)


@pytest.mark.tui
async def test_a_poll_that_raises_is_a_notification_not_a_crash():
    class Broken(FakeWorkload):
        def poll(self, sample=None):
            super().poll(sample)
            raise ValueError("bad event line")

    wl = Broken(running())
    app = workload_app(wl, interval_s=0.1)
    async with app.run_test(size=(120, 40)) as pilot:
        await started(pilot, samples=3)
        messages = [n.message for n in app._notifications]
        assert sum("workload poll failed: ValueError: bad event line" in m for m in messages) == 1
        assert app.is_running


@pytest.mark.tui
@pytest.mark.parametrize("size", [(80, 24), (120, 40), (160, 50)])
@pytest.mark.parametrize("n_gpus", [1, 8])
async def test_fits_every_size(size, n_gpus):
    app = workload_app(FakeWorkload(running()), n_gpus=n_gpus, paused=True)
    async with app.run_test(size=size) as pilot:
        for t in range(3):
            app.ingest(make_sample(n_gpus, t))
        await pilot.pause()
        text = screen_text(app)
        assert "workload mlp" in text and "step 120 of 2,000" in text and "loss 2.303" in text
        assert "of 2 cores busy" in text and "132 SMs" in text.replace("/132 SMs", " 132 SMs")
        assert "GPU mem" in text and "python train.py --gpu 0" in text  # the process table too
        assert app.screen.max_scroll_y == 0  # nothing pushed off the screen
        log = app.query_one(WorkloadLog)
        if size[1] < 34:  # short: the log is hidden, its last line shows in the panel
            assert not log.display or not log.region.height
            assert "out step 120/2000" in text
        else:
            assert log.region.height >= 3


@pytest.mark.tui
async def test_numbers_read_one_way_thousands_separated():
    """The panel wrote 18347 (step), the workload's output 18,347: one format, the output's."""
    state = running(step=18347, steps_planned=20000, samples_per_s=19143.5)
    app = workload_app(FakeWorkload(state))
    async with app.run_test(size=(160, 50)) as pilot:
        await started(pilot)
        panel = app.query_one(WorkloadPanel)
        text = panel.text_for(panel.content_size.width).plain
        assert "step 18,347 of 20,000" in text and "samples/s 19,144" in text
        assert not re.findall(r"(?<![\d,.])\d{4,}", text.replace("pid 4242", "")), text  # no 18347


@pytest.mark.unit
def test_amounts_and_counts():
    assert [fmt.amount(v) for v in (None, 19143.5, 1942.0, 100.0, 99.94, 19.14, 0.0371)] == [
        "n/a",
        "19,144",
        "1,942",
        "100",
        "99.9",
        "19.1",
        "0.0371",
    ]
    assert [fmt.count(v) for v in (None, 0, 999, 18347, 1_000_000)] == ["n/a", "0", "999", "18,347", "1,000,000"]


LONG = "epoch 3 step 18347/20000  loss 0.1733  19,143 samples/s  0.0172 TFLOP/s  MFU 24.4%  lr 3e-4 (cosine)"


@pytest.mark.tui
@pytest.mark.parametrize("size", [(120, 40), (160, 50)])
async def test_the_output_pane_wraps_and_shows_more_lines_when_there_is_room(size):
    """It showed 4 lines, each cut at the pane's width (62 columns at 160)."""
    tail = tuple(f"line {i}" for i in range(30)) + (LONG,)
    app = workload_app(FakeWorkload(running(output_tail=tail)), paused=True)
    async with app.run_test(size=size) as pilot:
        app.ingest(make_sample(1, 0))
        await pilot.pause()
        log = app.query_one(WorkloadLog)
        rows = [line.plain for line in log.text_for(log.content_size.width).split("\n")]
        assert log.content_size.height >= 9  # was 4: the row shares the rows left
        assert len(rows) >= log.content_size.height - 2  # whole lines: a wrapped one may not fit
        assert not rows[0].startswith("  ")  # the top row begins a line (no cut-off head)
        assert " ".join(r.strip() for r in rows[-4:]).endswith(LONG.split("  lr")[1])  # nothing cut
        assert "".join(rows).replace(" ", "").endswith(LONG.replace(" ", ""))
        assert rows[-1].startswith("  ")  # a continuation row, indented
        assert app.screen.max_scroll_y == 0
        assert LONG.split()[-1] in screen_text(app)


@pytest.mark.unit
def test_wrapping_breaks_at_spaces_and_cuts_nothing():
    assert wrap_output("short", 20) == ["short"]
    assert wrap_output("step 130/400  loss 0.1733  2,338 samples/s", 20) == ["step 130/400  loss", "  0.1733  2,338", "  samples/s"]
    assert "".join(wrap_output("x" * 50, 20)).replace(" ", "") == "x" * 50


# -- helpers ----------------------------------------------------------------------------------


@pytest.mark.unit
def test_sparkline_scales_between_min_and_max():
    assert sparkline([1.0, 2.0, 3.0], 10) == "▁▅█"
    assert sparkline([5.0, 5.0], 10) == "▅▅"
    assert sparkline([1.0], 10) == ""  # one point is not a line
    assert sparkline([3.0, 1.0, 2.0, 9.0], 2) == "▁█"  # the newest that fit


@pytest.mark.unit
def test_elapsed_reads_like_a_clock():
    assert elapsed(12.34) == "12.3 s"
    assert elapsed(245) == "4 m 05 s"
    assert elapsed(2 * 3600 + 7 * 60 + 5) == "2 h 07 m"


@pytest.mark.unit
def test_output_lines_lose_escapes_and_carriage_returns():
    assert clean_line("\x1b[31mred\x1b[0m text") == "red text"
    assert clean_line("10%\r50%\r100%\n") == "100%"
    assert clean_line("a\tb\x07") == "a   b"


# -- snapshots --------------------------------------------------------------------------------

FINISHED = running(
    status="ok",
    returncode=0,
    started_ns=T0_NS,
    ended_ns=T0_NS + 754 * 10**9,
    step=2000,
    pids=frozenset({4242}),
    output_tail=tuple(f"step {s}/2000  loss {2.4 - s / 2000:.2f}" for s in range(1500, 2001, 100)) + ("done",),
    # most of its CPU time on cores 0-1, its GPU's CPUs being 4-7
    placement=placement.place([replace(h100(0), cpu_affinity=(4, 5, 6, 7))], (0,), "processes", {0: 30.0, 1: 10.0, 4: 2.0}),
)
CRASHED = running(
    status="failed",
    returncode=1,
    started_ns=T0_NS,
    ended_ns=T0_NS + 12 * 10**9,
    error="RuntimeError: CUDA out of memory. Tried to allocate 2.00 GiB",
    output_tail=(
        "Traceback (most recent call last):",
        '  File "train.py", line 3',
        "RuntimeError: CUDA out of memory. Tried to allocate 2.00 GiB",
    ),
)


@pytest.mark.tui
@pytest.mark.parametrize("state, size", [(CRASHED, (80, 24)), (FINISHED, (160, 50))], ids=["crashed-80x24", "finished-160x50"])
def test_snapshot_workload(snap_compare, state, size):
    app = workload_app(FakeWorkload(state), paused=True)

    async def run_before(pilot) -> None:
        for t in range(30):
            app.ingest(make_sample(1, t, cores=8))
        await pilot.pause()

    assert snap_compare(app, terminal_size=size, run_before=run_before)


# -- a real child (gputop.workload.Workload) --------------------------------------------------

TINY = """\
import sys, time
from gputop.workloads.events import EventWriter

events = EventWriter.from_env()
events.start(name="tiny", device="cpu", device_name="test CPU", precision="fp32", batch_size=4,
             flops_per_step=2e9, peak_flops=1e12, peak_flops_source="table", steps_planned=3,
             sample_unit="images")
for step in range(1, 4):
    time.sleep(0.05)
    events.step(step, 4, 1.0 / step, 0.05)
    print(f"tiny step {step}", flush=True)
if "--crash" in sys.argv:
    raise RuntimeError("boom at step 3")
events.end(steps=3)
print("tiny done", flush=True)
"""


@pytest.fixture
def tiny_script(tmp_path):
    path = tmp_path / "tiny.py"
    path.write_text(TINY)
    return path


@pytest.mark.e2e
async def test_a_real_workload_reports_into_the_panel(tiny_script):
    from gputop.workload import Workload

    wl = Workload(str(tiny_script))
    wl.start()
    try:
        app = workload_app(wl, interval_s=0.1)
        async with app.run_test(size=(160, 50)) as pilot:
            await until(
                pilot,
                lambda: app.workload_state is not None and not app.workload_state.running and "tiny done" in app.workload_state.output_tail,
                timeout_s=20,
            )
            await pilot.pause()
            text = screen_text(app)
            assert "workload tiny.py pid" in text
            assert "finished (exit 0)" in text
            assert "device cpu (test CPU)" in text and "step 3 of 3" in text
            assert "images/s" in text and "images/s n/a" not in text
            assert "TFLOP/s n/a" not in text and "MFU n/a" not in text
            assert "loss 0.333" in text
            assert "tiny step 3" in text and "tiny done" in text
            await pilot.press("q")
            await until(pilot, lambda: not app.is_running, timeout_s=10)
        assert wl.poll().status == "ok"  # quitting after the end leaves the result as it was
    finally:
        wl.stop()


@pytest.mark.e2e
async def test_a_real_workload_that_crashes_shows_its_error(tiny_script):
    from gputop.workload import Workload

    wl = Workload(str(tiny_script), ["--crash"])
    wl.start()
    try:
        app = workload_app(wl, interval_s=0.1)
        async with app.run_test(size=(160, 50)) as pilot:
            await until(pilot, lambda: app.workload_state is not None and not app.workload_state.running, timeout_s=20)
            await pilot.pause()
            text = screen_text(app)
            assert "failed (exit 1)" in text
            assert "error: RuntimeError: boom at step 3" in text
            assert app.query_one(WorkloadPanel).has_class("-failed")
    finally:
        wl.stop()


@pytest.mark.e2e
async def test_quitting_beside_a_script_that_ignores_sigterm_says_what_it_is_waiting_for(tmp_path):
    from gputop.workload import Workload

    script = tmp_path / "stubborn.py"
    script.write_text(
        "import signal, time\nsignal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
        "print('working', flush=True)\nwhile True:\n    time.sleep(0.05)\n"
    )
    wl = Workload(str(script))
    wl.start()
    try:
        app = workload_app(wl, interval_s=0.1)
        async with app.run_test(size=(120, 40)) as pilot:
            await until(pilot, lambda: app.workload_state is not None and "working" in app.workload_state.output_tail, timeout_s=20)
            quitting = asyncio.ensure_future(pilot.press("q"))  # returns once the app has quit
            # not pilot.pause (until): it waits for the app's own queue, which the quit action
            # holds for the whole grace; the screen is read as it is drawn meanwhile
            loop = asyncio.get_running_loop()
            deadline = loop.time() + 5
            while "stopping (SIGTERM sent, then SIGKILL in" not in screen_text(app):
                assert loop.time() < deadline, screen_text(app)
                await asyncio.sleep(0.02)
            await quitting
            assert not app.is_running
        state = wl.poll()
        assert state.status == "stopped" and state.returncode == -signal.SIGKILL
    finally:
        wl.stop()


@pytest.mark.e2e
async def test_quitting_says_what_it_waits_for_even_while_the_sampler_hangs(tmp_path):
    """A driver call that never returns holds the sampling; the quit still shows the workload's
    state as it stops (polled on a timer of its own, QUIT_POLL_S)."""
    import threading

    from gputop.workload import Workload

    script = tmp_path / "stubborn.py"
    script.write_text(
        "import signal, time\nsignal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
        "print('working', flush=True)\nwhile True:\n    time.sleep(0.05)\n"
    )
    release = threading.Event()
    hang = threading.Event()

    class Hangs(FakeSampler):
        def sample(self):
            if hang.is_set():
                release.wait(30)
            return super().sample()

    wl = Workload(str(script))
    wl.start()
    try:
        app = make_app(Hangs(lambda t: make_sample(1, t)), 0.1, workload=wl)
        async with app.run_test(size=(120, 40)) as pilot:
            await until(pilot, lambda: app.workload_state is not None and "working" in app.workload_state.output_tail, timeout_s=20)
            hang.set()
            await asyncio.sleep(0.3)  # the sampler is stuck now
            taken = app.samples_taken
            quitting = asyncio.ensure_future(pilot.press("q"))
            loop = asyncio.get_running_loop()
            deadline = loop.time() + 5
            while "stopping (SIGTERM sent, then SIGKILL in" not in screen_text(app):
                assert loop.time() < deadline, screen_text(app)
                await asyncio.sleep(0.02)
            assert app.samples_taken == taken  # shown without a sample
            await quitting
    finally:
        release.set()
        wl.stop()


@pytest.mark.e2e
async def test_quitting_stops_a_running_real_workload(tmp_path):
    from gputop.workload import Workload

    script = tmp_path / "forever.py"
    script.write_text("import time\nprint('working', flush=True)\nwhile True:\n    time.sleep(0.05)\n")
    wl = Workload(str(script))
    wl.start()
    try:
        app = workload_app(wl, interval_s=0.1)
        async with app.run_test(size=(120, 40)) as pilot:
            await until(pilot, lambda: app.workload_state is not None and "working" in app.workload_state.output_tail, timeout_s=20)
            await pilot.press("q")
            await until(pilot, lambda: not app.is_running, timeout_s=15)
        state = wl.poll()
        assert state.status == "stopped" and not state.running
    finally:
        wl.stop()


# -- w: the job's processes' Python stacks ------------------------------------------------------


@pytest.mark.tui
async def test_w_shows_every_ranks_python_stacks_and_escape_closes_them():
    from gputop.tui.screens.stacks import StacksScreen

    job = FakeWorkload(running())
    job.stacks = [
        {
            "pid": 501,
            "rank": 0,
            "threads": [{"thread": 1, "main": True, "stack": '  File "train.py", line 40, in <module>\n    loss.backward()\n'}],
        },
        {
            "pid": 502,
            "rank": 1,
            "threads": [{"thread": 1, "main": True, "stack": '  File "data.py", line 12, in __getitem__\n    time.sleep(3600)\n'}],
        },
        {  # torchrun's agent: the first process, no rank
            "pid": 500,
            "rank": None,
            "root": True,
            "threads": [{"thread": 1, "main": True, "stack": '  File "api.py", line 9, in _invoke_run\n    time.sleep(5)\n'}],
        },
    ]
    app = workload_app(job)
    async with app.run_test(size=(160, 50)) as pilot:
        await started(pilot)
        await pilot.press("w")
        await until(pilot, lambda: isinstance(app.screen, StacksScreen), 30)
        text = screen_text(app)
        assert "Python stacks of the job's 3 processes that answered" in text
        assert "first process (pid 500)" in text and "_invoke_run" in text
        assert "rank 0 (pid 501)" in text and "loss.backward()" in text
        assert "rank 1 (pid 502)" in text and "time.sleep(3600)" in text and "Thread 1 (main):" in text
        await pilot.press("escape")
        assert not isinstance(app.screen, StacksScreen)


@pytest.mark.tui
async def test_w_without_an_answer_says_why_and_without_a_job_does_nothing():
    from gputop.tui.screens.stacks import StacksScreen

    app = workload_app(FakeWorkload(running()))  # its stacks: none answered
    async with app.run_test(size=(160, 50)) as pilot:
        await started(pilot)
        await pilot.press("w")
        await until(pilot, lambda: any("no process of the job answered" in n.message for n in app._notifications), 30)
        assert not isinstance(app.screen, StacksScreen)
    plain = make_app(FakeSampler(lambda t: make_sample(1, t)))
    async with plain.run_test(size=(160, 50)) as pilot:
        await started(pilot)
        await pilot.press("w")
        await pilot.pause()
        assert not isinstance(plain.screen, StacksScreen) and not any("stacks" in n.message for n in plain._notifications)
