"""`gputop replay` of long recordings and of ``record --run`` ones: the index decodes the same
samples as ``trace.load`` (any order of access), opens before the whole file is read, jumps by
time and share with keys (#12.16), and shows the recorded workload's panel at the cursor (#12.9)."""

from __future__ import annotations

import contextlib
import os
import pathlib
import random
import subprocess
import sys

import pytest

import longtrace
from gputop.commands import replay
from gputop.trace import load
from gputop.trace.index import SampleIndex
from gputop.trace.stream import TraceStream
from gputop.tui.app import GputopApp
from gputop.tui.widgets.workload import WorkloadView
from gputop.view.feed import SPEEDS
from gputop.view.timeline import WorkloadTimeline
from tui_fixtures import screen_text

pytestmark = pytest.mark.xdist_group("replay_stream")  # its module fixture runs once, on one worker

TESTS = pathlib.Path(__file__).resolve().parent
DATA = TESTS / "data" / "h100_fake.json"
TINY_MLP = ["--device", "cpu", "--hidden", "32", "--layers", "1", "--batch-size", "4", "--steps", "5"]


@pytest.fixture(scope="module")
def long_trace(tmp_path_factory) -> pathlib.Path:
    """The fixture's 6 samples (0.5 s) repeated past 2 minutes of recording."""
    path = tmp_path_factory.mktemp("long") / "long.json"
    longtrace.build(str(DATA), str(path), 6_000_000)
    return path


@pytest.fixture(scope="module")
def run_trace(tmp_path_factory) -> pathlib.Path:
    """A real ``record --run mlp`` (a real PyTorch child on the CPU, the NVML fake)."""
    return record_tiny_mlp(tmp_path_factory.mktemp("run") / "run.json", "0.05")


def record_tiny_mlp(out: pathlib.Path, interval: str) -> pathlib.Path:
    env = dict(os.environ, GPUTOP_FAKE_NVML="H100_SXM")
    env["PYTHONPATH"] = os.pathsep.join([str(TESTS / "sitecustom"), str(TESTS), env.get("PYTHONPATH", "")])
    done = subprocess.run(
        [sys.executable, "-m", "gputop", "record", "--out", str(out), "--interval", interval, "--run", "mlp", "--", *TINY_MLP],
        capture_output=True,
        text=True,
        timeout=180,
        env=env,
    )
    assert done.returncode == 0, done.stderr
    return out


@pytest.mark.unit
def test_the_index_decodes_the_samples_load_does_in_any_order(long_trace):
    expected = load(long_trace).samples()
    with TraceStream(long_trace) as stream:
        index = SampleIndex(stream)
        index.build()
        assert index.done and index.error is None and len(index) == len(expected) > 1500
        assert len(index._starts) >= 5  # several blocks: decoded from checkpoints, not from the start
        order = list(range(len(expected)))
        random.Random(7).shuffle(order)
        for i in order[:400] + [0, len(expected) - 1]:
            assert index[i] == expected[i], i
        assert list(index) == expected
        assert list(index.ts) == [s.ts_ns for s in expected]


@pytest.mark.unit
def test_replay_opens_before_the_file_is_indexed_and_grows(long_trace):
    feed = replay.open_feed(str(long_trace), playing=False)
    try:
        assert len(feed.samples) >= 1 and feed.sample == load(long_trace).samples()[0]
        assert feed.index is not None and feed.index.wait(60)
        assert feed.last == len(load(long_trace).samples()) - 1 and not feed.indexing
    finally:
        feed.close()


@pytest.mark.unit
def test_speeds_go_up_to_256x():
    assert SPEEDS[-1] == 256.0 and 16.0 in SPEEDS and 0.25 in SPEEDS  # #12.16: 16x was the top


@contextlib.asynccontextmanager
async def replaying(path: pathlib.Path):
    """(app, pilot, feed, offset()) over the whole indexed recording at ``path``, paused."""
    feed = replay.open_feed(str(path), playing=False)
    assert feed.index is not None and feed.index.wait(60)
    app = GputopApp(feed)
    try:
        async with app.run_test(size=(160, 50)) as pilot:
            yield app, pilot, feed, lambda: feed.position().offset_s
    finally:
        feed.close()


@pytest.mark.tui
async def test_keys_jump_by_time_and_by_share(long_trace):
    """#12.16: a replay could only step a sample or go to the ends."""
    async with replaying(long_trace) as (app, pilot, feed, offset):
        duration = feed.position().duration_s
        assert duration > 120
        await pilot.press("shift+right")
        assert 9.9 <= offset() <= 10.0
        await pilot.press("pagedown")
        assert 69.9 <= offset() <= 70.0
        await pilot.press("pageup", "shift+left")
        assert 0 <= offset() <= 0.1 and feed.cursor >= 0
        await pilot.press("5")
        assert abs(offset() - duration / 2) <= 0.2
        await pilot.press("ctrl+right")
        assert abs(offset() - duration * 0.6) <= 0.2
        await pilot.press("ctrl+left", "ctrl+left")
        assert abs(offset() - duration * 0.4) <= 0.2
        await pilot.press("0")
        assert feed.cursor == 0
        await pilot.press("9", "pagedown", "pagedown", "pagedown")
        assert feed.cursor == feed.last  # clamped at the end
        assert f"sample {feed.last + 1}/" in screen_text(app)


@pytest.mark.tui
async def test_g_goes_to_a_typed_time(long_trace):
    """g opens a box: 1:10 (m:ss), 0:01:30 (h:mm:ss), 45s, 12 (seconds) or 50% move the cursor
    there; the replay's keys type into the box meanwhile; a bad time is said, escape stays."""
    from gputop.tui.playback import parse_offset
    from gputop.tui.screens.goto import GotoScreen

    async with replaying(long_trace) as (app, pilot, feed, offset):
        duration = feed.position().duration_s
        for typed, want in (
            ("1:10", 70.0),
            ("0:01:30", 90.0),
            ("45s", 45.0),
            ("12", 12.0),
            ("50%", duration / 2),
            ("99:00", duration),
            ("1e300", duration),
        ):
            await pilot.press("g")
            assert isinstance(app.screen, GotoScreen)
            await pilot.press(*typed, "enter")
            assert not isinstance(app.screen, GotoScreen)
            assert want - 0.2 <= offset() <= want, typed  # the last sample at or before it
        before = feed.cursor
        await pilot.press("g", "left", "space", "home", "x", "enter")  # typed, not replay keys
        assert feed.cursor == before and not isinstance(app.screen, GotoScreen)
        assert any("cannot read 'x' as a time" in n.message for n in app._notifications)
        await pilot.press("g", "5", "escape")
        assert feed.cursor == before and not isinstance(app.screen, GotoScreen)
    assert parse_offset("1:02:03", 0) == 3723 and parse_offset("2.5s", 0) == 2.5
    assert parse_offset("25%", 200) == 50
    assert [parse_offset(t, 10) for t in ("", "-5", "1::2", "1:2:3:4", "150%", "5m", "a:b")] == [None] * 7
    # float() reads these, and index_of's int(offset * 1e9) raised on them inside the box's callback
    assert [parse_offset(t, 10) for t in ("inf", "1e400", "1:nan", "nan", "infs", "1:inf", "nan%")] == [None] * 7


@pytest.mark.e2e
async def test_a_run_recording_replays_with_its_workload_panel(run_trace):
    """#12.9: the replay of a ``record --run`` showed no workload panel."""
    recorded = load(run_trace)
    steps = recorded.workload_steps()
    feed = replay.open_feed(str(run_trace), playing=False)
    assert feed.index is not None and feed.index.wait(60) and feed.workload is not None
    app = GputopApp(feed)
    try:
        async with app.run_test(size=(160, 50)) as pilot:
            await pilot.pause()
            assert app.query(WorkloadView)  # the panel is there
            first = app.workload_state
            assert first is not None and first.name == "mlp" and first.pid == recorded.workload["pid"]
            assert first.status == "running" and (first.step is None or first.step < 5)
            await pilot.press("end")
            await pilot.pause()
            last = app.workload_state
            assert last is not None and last.status == "ok" and last.step == 5
            assert last.device == "cpu" and last.batch_size == 4 and last.steps_planned == 5
            assert last.samples_per_s is not None and last.samples_per_s > 0
            assert list(last.losses) == [s.loss for s in steps if s.loss is not None]
            assert "mlp" in screen_text(app) and "finished" in screen_text(app)
            # at the end of step 3 (the tiny steps are ms apart: maybe no sample between them)
            timeline = feed.workload
            assert isinstance(timeline, WorkloadTimeline)
            state = timeline.at(steps[2].ts_ns)
            assert state.status == "running" and state.step == 3 and state.ended_ns == steps[2].ts_ns
            assert state.loss == steps[2].loss and state.recent_steps == tuple(steps[:3])
            before = timeline.at(steps[0].ts_ns - 1)
            assert before.step is None and before.loss is None and before.losses == ()
    finally:
        feed.close()


@pytest.fixture(scope="module")
def ended_run_trace(tmp_path_factory) -> pathlib.Path:
    """#26.4's recording: a slower interval than the run's last step, so the exit mark comes
    after the last sample; output on stdout before the steps."""
    return record_tiny_mlp(tmp_path_factory.mktemp("ended") / "mlp.json", "0.25")


@pytest.mark.e2e
def test_a_replay_shows_the_workload_s_output_and_how_it_ended_at_the_last_sample(ended_run_trace):
    """#26.4: the output panel said "no output yet" everywhere, a finished run read "running" at
    the last sample (its exit mark just after it), elapsed began at the first event, and "no
    progress events" was said before any could have come."""
    recorded = load(ended_run_trace)
    samples = recorded.samples()
    output = [
        e["args"]["line"]
        for e in recorded.events
        if e.get("ph") == "i" and e.get("name") in ("stdout", "stderr") and not e["args"].get("progress")
    ]
    assert output, "the recording holds the workload's output"
    feed = replay.open_feed(str(ended_run_trace), playing=False)
    try:
        assert feed.index is not None and feed.index.wait(60) and feed.workload is not None
        first = feed.workload.poll(samples[0])
        assert first.events  # mlp reports progress, even before its first event is reached
        assert first.started_ns == recorded.header["start_ns"]  # elapsed from the recording's start
        last = feed.workload.poll(samples[-1])
        exit_ns = max(e["ts"] for e in recorded.events if e.get("name") == "exit") * 1000
        assert exit_ns > samples[-1].ts_ns  # the case: the exit mark lies after the last sample
        assert last.status == "ok" and last.step == 5
        assert list(last.output_tail)[-len(output) :] == output
    finally:
        feed.close()


@pytest.mark.unit
def test_a_time_stamp_that_is_no_time_is_left_out_and_counted_not_the_rest(tmp_path):
    """#26.16: one line with ts 1e400 (a number, but no time) and the index stopped there
    silently (39 of 201 samples); report read on. Both read the rest and count it."""
    from gputop.commands import report
    from gputop.trace.index import SampleIndex
    from helpers import make_samples, write

    path = write(tmp_path / "t.json", make_samples(40))
    lines = path.read_text().split("\n")
    at = next(i for i, line in enumerate(lines) if '"ts":' in line and '"ph":"C"' in line and i > len(lines) // 3)
    lines[at] = lines[at].replace('"ts":', '"ts":1e400,"was":', 1)
    path.write_text("\n".join(lines))
    with TraceStream(path) as stream:
        index = SampleIndex(stream)
        index.build()
        assert index.error is None and len(index) == 40 and index.unreadable == 1
    summary, _ = report.read(str(path))
    assert summary["samples"] == 40 and summary["unreadable_events"] == 1
