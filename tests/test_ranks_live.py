"""A distributed job's ranks in the live view: the stalled-rank rule (gputop.workload.ranks.stall)
on per-rank step streams, each rank's row, the ranks table's text (its GPU tied by UUID) and the
table in the app under Pilot; the same view over real 2-rank torchrun jobs on gloo lives in
tests/test_ranks_view.py."""

from __future__ import annotations

import pytest

from gputop.model import RankStraggler, WorkloadStep
from gputop.tui.widgets.ranks import RanksPanel
from gputop.view import lines
from gputop.workload import ranks
from tui_fixtures import FakeWorkload, gpu_sample, h100, screen_text, silent, started, until, workload_app
from tui_fixtures import rank_row as row

S = 1_000_000_000  # ns


def stream(rank: int, walls: list[float], start_ns: int = 1_000 * S, wait: float = 0.0) -> list[WorkloadStep]:
    """A rank's steps as its hooks report them: one after the other from ``start_ns``."""
    out, t = [], start_ns
    for i, wall in enumerate(walls, 1):
        t += round(wall * S)
        out.append(
            WorkloadStep(step=i, samples=4, loss=None, wall_s=wall, ts_ns=t, source="auto", data_wait_s=wait, pid=500 + rank, rank=rank)
        )
    return out


def end_of(steps: list[WorkloadStep]) -> int:
    return steps[-1].ts_ns


@pytest.mark.unit
def test_ranks_that_step_are_stepping_and_nothing_is_flagged():
    job = {0: stream(0, [0.05] * 100), 1: stream(1, [0.05] * 100)}
    flag = ranks.stall(job, end_of(job[0]) + 2 * S)
    assert flag.states == {0: "stepping", 1: "stepping"} and flag.text is None


@pytest.mark.unit
def test_a_rank_that_stops_while_the_other_steps_on_is_stalled_after_its_typical_steps_and_the_floor():
    # rank 1 stops after 20 steps of 1 s; rank 0 steps on: quiet after max(10 x 1 s, 10 s) = 10 s
    job = {0: stream(0, [1.0] * 60), 1: stream(1, [1.0] * 20)}
    stopped = end_of(job[1])
    at_9 = ranks.stall({0: [s for s in job[0] if s.ts_ns <= stopped + 9 * S], 1: job[1]}, stopped + 9 * S)
    assert at_9.text is None
    now = stopped + 41 * S
    flag = ranks.stall({0: [s for s in job[0] if s.ts_ns <= now], 1: job[1]}, now)
    assert flag.states == {0: "stepping", 1: "stalled"}
    assert flag.text == "rank 1: no step for 41 s; rank 0 steps on"


@pytest.mark.unit
def test_the_quiet_time_is_n_typical_steps_where_that_is_above_the_floor():
    job = {0: stream(0, [3.0] * 10)}  # 10 x 3 s = 30 s
    assert ranks.stall(job, end_of(job[0]) + 29 * S).text is None
    assert ranks.stall(job, end_of(job[0]) + 31 * S).text == "rank 0: no step for 31 s"
    fast = {0: stream(0, [0.001] * 500)}  # 10 x 1 ms is well under the floor
    assert ranks.stall(fast, end_of(fast[0]) + int(9.9 * S)).text is None
    assert ranks.STALL_STEPS == 10 and ranks.STALL_MIN_S == 10.0  # as the README says


@pytest.mark.unit
def test_the_rank_that_stopped_first_is_stalled_and_those_that_stopped_later_wait_for_it():
    # local SGD: rank 1 hangs at step 10, rank 0 steps on for 2 s to the next all-reduce and waits there
    job = {0: stream(0, [0.01] * 200), 1: stream(1, [0.01] * 10), 2: stream(2, [0.01] * 200)}
    now = end_of(job[1]) + 41 * S
    flag = ranks.stall(job, now)
    assert flag.states == {0: "waiting", 1: "stalled", 2: "waiting"}
    assert flag.text == "rank 1: no step for 41 s; ranks 0,2 wait"


@pytest.mark.unit
def test_ranks_in_lock_step_that_stop_together_are_all_stalled_and_the_flag_says_it_cannot_tell():
    # DDP: every step ends at the same all-reduce; rank 0's last step reached gputop 0.1 s later
    job = {0: stream(0, [0.05] * 50, start_ns=1_000 * S + S // 10), 1: stream(1, [0.05] * 50)}
    flag = ranks.stall(job, end_of(job[1]) + 20 * S)
    assert flag.states == {0: "stalled", 1: "stalled"}
    assert flag.text == "ranks 0,1: no step for 20 s; stopped together: which one the others wait for, their steps cannot tell"


@pytest.mark.unit
def test_a_rank_whose_process_has_gone_is_exited_and_the_quiet_ranks_wait_for_it():
    job = {0: stream(0, [0.05] * 50), 1: stream(1, [0.05] * 30)}
    flag = ranks.stall(job, end_of(job[0]) + 15 * S, exited=[1])
    assert flag.states == {0: "waiting", 1: "exited"}
    assert flag.text == "rank 1: exited; rank 0 waits (no step for 15 s)"
    # a rank that finished its loop early while the others step on: exited, nothing flagged
    assert ranks.stall(job, end_of(job[0]) + S, exited=[1]).text is None


@pytest.mark.unit
def test_rows_give_each_ranks_own_step_count_state_and_device_and_no_flag_once_ended():
    recent = {0: stream(0, [0.02] * 200)[-64:], 1: stream(1, [0.02] * 200, wait=0.015)[-64:]}  # the last 64 kept
    hellos = {500: {"device": "cuda:0", "device_uuid": "aaaa-0"}, 501: {"device": "cuda:1", "device_uuid": "bbbb-1"}}
    now = end_of(recent[0]) + S // 10
    rows, straggler, flag = ranks.rows(recent, hellos, now)
    assert [(r.rank, r.pid, r.steps, r.device, r.device_uuid, r.state) for r in rows] == [
        (0, 500, 200, "cuda:0", "aaaa-0", "stepping"),
        (1, 501, 200, "cuda:1", "bbbb-1", "stepping"),
    ]
    assert rows[0].steps_per_s == pytest.approx(50.0) and rows[1].data_wait_share == pytest.approx(0.75)
    assert straggler is not None and straggler.rank == 1 and straggler.reason == "data loader" and flag is None
    rows, _, flag = ranks.rows(recent, hellos, now + 60 * S, ended=True)
    assert {r.state for r in rows} == {"exited"} and flag is None
    rows, _, _ = ranks.rows(recent, hellos, now, gone_pids=[501])
    assert [r.state for r in rows] == ["stepping", "exited"]


@pytest.mark.unit
def test_the_live_view_names_no_straggler_before_every_rank_has_a_few_steps():
    early = {0: stream(0, [0.02] * 3), 1: stream(1, [0.02] * 3, wait=0.018)}
    assert ranks.rows(early, {}, end_of(early[0]))[1] is None


class Plain:
    """Styles for the lines builder: one plain style for every component."""

    def style_of(self, name: str):
        from rich.style import Style

        return Style()


@pytest.mark.unit
def test_a_ranks_gpu_is_the_gpu_panels_device_with_its_uuid_else_its_cuda_device_and_na_on_the_cpu():
    gpus = (gpu_sample(h100(0), sm_active_pct=81.0), gpu_sample(h100(1), sm_active_pct=12.0))
    # torch gives the UUID without NVML's "GPU-" (and may give it in another case)
    on_gpu1 = row(0, device="cuda:0", device_uuid="H100-0001")
    assert lines.rank_gpu(on_gpu1, gpus) == ("GPU 1", gpus[1])
    assert lines.rank_gpu(row(1, device="cuda:1", device_uuid="other"), gpus) == ("cuda:1", None)
    assert lines.rank_gpu(row(2, device="cuda:1"), gpus) == ("cuda:1", None)
    assert lines.rank_gpu(row(3), gpus) == ("n/a", None)
    text = [
        lines.plain(line)
        for line in lines.ranks_lines([on_gpu1, row(1, state="stalled")], None, "rank 1: no step for 41 s; rank 0 waits", gpus, Plain())
    ]
    assert text[0].split() == ["rank", "pid", "GPU", "steps", "steps/s", "step", "p50", "data", "wait", "SM", "%", "state"]
    assert text[1].split() == ["0", "700", "GPU", "1", "120", "48.5", "20.6", "ms", "5", "%", "12", "stepping"]
    assert text[2].split() == ["1", "701", "n/a", "120", "48.5", "20.6", "ms", "5", "%", "n/a", "stalled"]
    assert text[3] == "⚠ rank 1: no step for 41 s; rank 0 waits"
    assert text[4] == "straggler none: no rank's own work per step leads the others"


RANKED = dict(
    events=True,
    step=120,
    device="cpu",
    steps_source="auto",
    ranks=(row(0), row(1, data_wait_share=0.9, state="stalled")),
    straggler=RankStraggler(
        1, "data loader", "rank 1 waits 90 % of its step for data, the other ranks 5.0 % (median); the others wait for it"
    ),
    rank_stall="rank 1: no step for 41 s; rank 0 waits",
)


@pytest.mark.tui
async def test_the_ranks_table_shows_each_rank_the_stall_and_the_straggler():
    app = workload_app(FakeWorkload(silent(**RANKED)))
    async with app.run_test(size=(160, 50)) as pilot:
        await started(pilot)
        await until(pilot, lambda: app.query_one(RanksPanel).display)
        text = screen_text(app)
        assert "─ ranks ─" in text
        assert "⚠ rank 1: no step for 41 s; rank 0 waits" in text
        assert "straggler rank 1 (data loader): rank 1 waits 90 % of its step for data" in text
        assert any(line.split()[1:4] == ["1", "701", "n/a"] and "stalled" in line for line in text.splitlines())


@pytest.mark.tui
async def test_a_single_process_job_has_no_ranks_table():
    app = workload_app(FakeWorkload(silent(events=True, step=3)))
    async with app.run_test(size=(160, 50)) as pilot:
        await started(pilot, samples=2)
        assert not app.query_one(RanksPanel).display
        assert "─ ranks ─" not in screen_text(app)


@pytest.mark.unit
def test_a_ranks_thread_is_named_at_its_hello_and_a_restarted_rank_keeps_its_track():
    import json

    from gputop.model import WorkloadMark
    from gputop.trace.counters import Counters
    from gputop.trace.track import RANK_TID_BASE, WorkloadTrack

    track = WorkloadTrack(900, "torchrun", ["torchrun"], Counters())

    def hello(**args) -> list[dict]:
        lines = track.lines([WorkloadMark("hello", 10**18, name="torchrun", args=args)])
        return [json.loads(line[1:]) for line in lines]

    assert [e["ph"] for e in hello(pid=900, root=True)] == ["i"]  # the first process: the workload's own steps
    first = [e for e in hello(pid=901, rank=1, root=False, device="cuda:1") if e["ph"] == "M"]
    assert [(e["name"], e["tid"], e["args"]) for e in first] == [
        ("thread_name", RANK_TID_BASE + 1, {"name": "rank 1 · pid 901 · cuda:1"}),
        ("thread_sort_index", RANK_TID_BASE + 1, {"sort_index": 101}),
    ]
    again = [e for e in hello(pid=905, rank=1, root=False, device="cuda:1") if e["name"] == "thread_name"]
    assert again[0]["args"]["name"] == "rank 1 · pids 901, 905 · cuda:1"  # elastic restart: same rank, new pid
    other = [e for e in hello(pid=950, root=False) if e["ph"] == "M"]
    assert [(e["name"], e["args"]["name"]) for e in other] == [("thread_name", "pid 950")]


@pytest.mark.unit
def test_the_live_straggler_is_told_by_its_gpu_where_that_stands_apart_over_the_recent_samples():
    from tui_fixtures import T0_NS, make_sample, with_gpu

    job = {0: stream(0, [0.04] * 30, start_ns=T0_NS), 1: stream(1, [0.05] * 24, start_ns=T0_NS)}
    hellos = {500: {"device": "cuda:0", "device_uuid": "h100-0000"}, 501: {"device": "cuda:0", "device_uuid": "h100-0001"}}
    samples = [with_gpu(make_sample(2, t), 1, sm_clock_mhz=1200.0, clock_event_reasons=("hw_power_brake",)) for t in range(3)]
    now = end_of(job[0])
    _, from_steps, _ = ranks.rows(job, hellos, now)
    assert from_steps is not None and from_steps.rank == 1 and from_steps.reason == "compute"
    _, found, _ = ranks.rows(job, hellos, now, samples=samples)
    assert found is not None and found.rank == 1 and found.reason == "GPU clocks", found
    assert "GPU 1" in found.evidence
