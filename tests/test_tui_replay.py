"""`gputop replay`: the live view over tests/data/h100_fake.json, driven by keys (Pilot)."""

from __future__ import annotations

import pathlib
import time

import pytest

from gputop.trace import load
from gputop.tui.app import GputopApp
from gputop.tui.screens.help import HelpScreen
from gputop.tui.screens.kill import KillScreen
from gputop.tui.widgets.charts import Chart
from gputop.tui.widgets.processes import ProcessTable
from gputop.tui.widgets.status import wall_clock
from gputop.view.feed import ReplayFeed
from tui_fixtures import screen_text, until

DATA = pathlib.Path(__file__).parent / "data" / "h100_fake.json"


class Clock:
    """A hand-moved monotonic clock: playback time passes only when the test says so."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture(scope="module")
def trace():
    return load(DATA)


def ReplayApp(samples, **kwargs) -> GputopApp:
    """The replay: the one app over a ReplayFeed (app options apart from the feed's)."""
    app_options = {k: kwargs.pop(k) for k in ("self_cpu", "kill", "frame_s") if k in kwargs}
    return GputopApp(ReplayFeed(samples, **kwargs), **app_options)


def replay_app(trace, **kwargs) -> GputopApp:
    kwargs.setdefault("playing", False)
    return ReplayApp(trace.samples(), host="vm", complete=trace.complete, **kwargs)


def footer_keys(app) -> str:
    return screen_text(app).splitlines()[-1]


@pytest.mark.tui
async def test_opens_paused_on_the_first_sample(trace):
    app = replay_app(trace)
    async with app.run_test(size=(160, 50)) as pilot:
        await pilot.pause()
        first = trace.samples()[0]
        assert app.feed.cursor == 0 and app.paused
        text = screen_text(app)
        assert "replay" in text and "PAUSED" in text
        assert "t +0.0 s of 0.5 s" in text and "sample 1/6" in text
        assert f"at {wall_clock(first.ts_ns)}" in text
        assert "gputop vm" in text
        assert "522 W of 700 W" in text or "523 W of 700 W" in text  # the first sample's power


@pytest.mark.tui
async def test_right_and_left_step_and_the_history_ends_at_the_cursor(trace):
    app = replay_app(trace)
    stamps = [s.ts_ns for s in trace.samples()]
    async with app.run_test(size=(160, 50)) as pilot:
        await pilot.press("right", "right", "right")
        assert app.feed.cursor == 3
        assert app.history.timestamps() == stamps[:4]
        assert "sample 4/6" in screen_text(app) and "t +0.3 s" in screen_text(app)
        await pilot.press("left")
        assert app.feed.cursor == 2
        assert app.history.timestamps() == stamps[:3]  # rebuilt: nothing after the cursor
        charts = list(app.query(Chart))
        assert all(c.history is app.history for c in charts)
        await pilot.press("left", "left", "left")  # stops at the first sample
        assert app.feed.cursor == 0 and app.history.timestamps() == stamps[:1]


@pytest.mark.tui
async def test_home_and_end_jump(trace):
    app = replay_app(trace)
    async with app.run_test(size=(160, 50)) as pilot:
        await pilot.press("end")
        assert app.feed.cursor == 5 and len(app.history) == 6
        assert "sample 6/6" in screen_text(app) and "t +0.5 s of 0.5 s" in screen_text(app)
        await pilot.press("home")
        assert app.feed.cursor == 0 and len(app.history) == 1


@pytest.mark.tui
async def test_keys_work_while_the_process_table_has_focus(trace):
    app = replay_app(trace)
    async with app.run_test(size=(160, 50)) as pilot:
        app.query_one(ProcessTable).focus()
        await pilot.press("right", "end", "home", "right")
        assert app.feed.cursor == 1


@pytest.mark.tui
async def test_brackets_change_the_speed_within_bounds(trace):
    app = replay_app(trace)
    async with app.run_test(size=(160, 50)) as pilot:
        await pilot.press("right_square_bracket")
        assert app.feed.speed == 2.0 and "speed 2x" in screen_text(app)
        await pilot.press(*["right_square_bracket"] * 6)
        assert app.feed.speed == 128.0
        await pilot.press(*["right_square_bracket"] * 3)  # 256x is the top (#12.16: it was 16x)
        assert app.feed.speed == 256.0 and "speed 256x" in screen_text(app)
        await pilot.press(*["left_square_bracket"] * 13)
        assert app.feed.speed == 0.25 and "speed 0.25x" in screen_text(app)
        await pilot.press("greater_than_sign")
        assert app.feed.speed == 0.5


@pytest.mark.tui
async def test_space_plays_at_the_recorded_pace_and_stops_at_the_end(trace):
    clock = Clock()
    app = replay_app(trace, clock=clock)
    stamps = [s.ts_ns for s in trace.samples()]
    async with app.run_test(size=(160, 50)) as pilot:
        await pilot.press("space")
        assert not app.paused
        await pilot.pause(0.1)
        assert app.feed.cursor == 0  # no playback time has passed
        clock.now += (stamps[2] - stamps[0]) / 1e9 + 0.001
        await until(pilot, lambda: app.feed.cursor == 2)
        assert "▶ 1x" in screen_text(app)
        await pilot.press("right_square_bracket")  # 2x: 0.1 s of clock is 0.2 s of recording
        clock.now += 0.1005
        await until(pilot, lambda: app.feed.cursor == 4)
        clock.now += 10.0
        await until(pilot, lambda: app.paused)
        assert app.feed.cursor == 5
        assert any("end of the recording" in n.message for n in app._notifications)
        await pilot.press("space")  # at the end: from the start again
        assert app.feed.cursor == 0 and not app.paused
        await pilot.press("space")
        assert app.paused


@pytest.mark.tui
async def test_stepping_pauses_playback(trace):
    app = replay_app(trace, clock=Clock(), playing=True)
    async with app.run_test(size=(160, 50)) as pilot:
        await pilot.pause()
        assert not app.paused
        await pilot.press("right")
        assert app.paused and app.feed.cursor == 1


@pytest.mark.tui
async def test_kill_and_the_interval_keys_are_disabled(trace):
    app = replay_app(trace)
    async with app.run_test(size=(160, 50)) as pilot:
        await pilot.press("k")
        assert not isinstance(app.screen, KillScreen)
        await pilot.press("plus")
        assert app.interval_s == 1.0
        keys = footer_keys(app)
        assert "kill" not in keys and "play/pause" in keys
        await pilot.press("p")  # p plays too (the live view's pause key)
        assert not app.paused


@pytest.mark.tui
async def test_help_lists_the_replay_keys(trace):
    app = replay_app(trace)
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.press("question_mark")
        assert isinstance(app.screen, HelpScreen)
        text = screen_text(app)
        assert "gputop replay keys" in text and "0.25x to 256x" in text and "home / end" in text
        assert "10 s back / forward" in text and "1 min back / forward" in text  # #12.16
        assert "kill" not in text


@pytest.mark.tui
async def test_charts_end_at_the_cursor_and_processes_say_why_empty(trace):
    app = replay_app(trace)
    async with app.run_test(size=(160, 50)) as pilot:
        await pilot.press("end")
        text = screen_text(app)
        assert "cursor" in text and "now" not in text.replace("known", "")
        assert app.query_one(ProcessTable).message == "a recording holds no process list"
        assert "a recording holds no process list" in text


@pytest.mark.tui
async def test_energy_counts_from_the_start_of_the_recording(trace):
    samples = trace.samples()
    app = replay_app(trace)
    async with app.run_test(size=(160, 50)) as pilot:
        await pilot.press("end")
        used = samples[-1].gpus[0].energy_j - samples[0].gpus[0].energy_j
        assert used > 0
        assert f"energy {round(used)} J since start" in screen_text(app)


@pytest.mark.tui
async def test_a_cut_off_recording_replays_what_it_has(tmp_path):
    text = DATA.read_text()
    cut = text[: text.rindex("\n,", 0, len(text) - 200) + 40]  # mid-event, no closing ]
    path = tmp_path / "cut.json"
    path.write_text(cut)
    trace = load(path)
    assert not trace.complete
    samples = trace.samples()
    assert 0 < len(samples) <= 6
    app = ReplayApp(samples, host="vm", complete=False, playing=False)
    async with app.run_test(size=(160, 50)) as pilot:
        await pilot.press("end")
        assert app.feed.cursor == len(samples) - 1
        assert "cut off" in screen_text(app)
        assert any("cut off" in n.message for n in app._notifications)


@pytest.mark.unit
def test_an_empty_recording_is_refused():
    with pytest.raises(ValueError):
        ReplayApp([])


@pytest.mark.tui
def test_snapshot_replay(snap_compare, trace, monkeypatch):
    monkeypatch.setenv("TZ", "UTC")
    time.tzset()
    try:

        async def run_before(pilot) -> None:
            await pilot.press("right", "right", "right")
            await pilot.pause()

        assert snap_compare(replay_app(trace), terminal_size=(80, 24), run_before=run_before)
    finally:
        monkeypatch.undo()
        time.tzset()


@pytest.mark.tui
async def test_a_recording_without_gpus_says_so():
    from tui_fixtures import make_sample

    samples = [make_sample(0, t, gpu_unavailable="NVIDIA driver not loaded") for t in range(4)]
    app = ReplayApp(samples, host="laptop", playing=False)
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.press("end")
        text = screen_text(app)
        assert "No GPU shown: NVIDIA driver not loaded" in text
        assert app.query_one(ProcessTable).message == "no GPU: NVIDIA driver not loaded"
        assert "sample 4/4" in text and "t +3.0 s of 3.0 s" in text


@pytest.mark.tui
async def test_the_history_holds_the_samples_just_before_the_cursor(trace):
    samples = trace.samples()
    stamps = [s.ts_ns for s in samples]
    app = replay_app(trace, history_points=3)
    async with app.run_test(size=(160, 50)) as pilot:
        await pilot.press("end")
        assert app.history.timestamps() == stamps[3:6]
        await pilot.press("left")  # rebuilt from cached points: the same values as pushed ones
        assert app.history.timestamps() == stamps[2:5]
        assert app.history.series("gpu0.power_w") == [s.gpus[0].power_w for s in samples[2:5]]
        assert app.history.series("cpu.cpu_util_pct") == [s.cpu.cpu_util_pct for s in samples[2:5]]
        await pilot.press("home", "right")
        assert app.history.timestamps() == stamps[0:2]


@pytest.mark.unit
def test_offsets_read_like_a_clock():
    from gputop.tui.widgets.status import offset_text

    assert offset_text(0.0) == "0.0 s"
    assert offset_text(59.94) == "59.9 s"
    assert offset_text(125.34) == "2:05.3"
    assert offset_text(3725.0) == "1:02:05"


@pytest.mark.tui
async def test_ctrl_c_quits_the_replay(trace):
    # as README and --help say (Textual's own Ctrl+C only shows "press ctrl+q to quit")
    app = replay_app(trace)
    async with app.run_test(size=(160, 50)) as pilot:
        await pilot.pause()
        await pilot.press("ctrl+c")
        await pilot.pause()
        assert not app.is_running
