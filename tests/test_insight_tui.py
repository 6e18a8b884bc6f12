"""The live view of an unmodified script: detected steps (steps/s, p50/p95, data wait), the job's
processes and cores (marked on the per-core grid), and the verdict, from WorkloadState snapshots."""

from __future__ import annotations

import pytest

from gputop.model import JobProcess, JobUsage, Verdict
from gputop.tui.widgets.cpu import CpuPanel
from gputop.workload import WorkloadStep
from tui_fixtures import T0_NS, FakeWorkload, screen_text, silent, started, until, workload_app

pytestmark = pytest.mark.tui

JOB = JobUsage(
    cpu_pct=190.0,
    main_thread_cpu_pct=98.0,
    main_thread_busy_pct=99.0,
    busy_pct=195.0,
    rss_bytes=2 << 30,
    cores=frozenset({0, 1}),
    processes=(
        JobProcess(4242, "python", "main", 98.0, 12, 1 << 30, frozenset({0})),
        JobProcess(4250, "python", "worker", 46.0, 1, 1 << 29, frozenset({1})),
        JobProcess(4251, "python", "worker", 46.0, 1, 1 << 29, frozenset({1})),
    ),
)
STEPS = tuple(
    WorkloadStep(step=k, samples=None, loss=None, wall_s=0.1 if k < 10 else 0.3, ts_ns=T0_NS + k, source="auto", data_wait_s=0.06)
    for k in range(1, 11)
)


def detected(**overrides):
    values = dict(
        events=True,
        step=10,
        device="cpu",
        recent_steps=STEPS,
        steps_source="auto",
        data_wait_share=0.62,
        job=JOB,
        verdict=Verdict("input_bound", "62 % of each step waits for the DataLoader", "Try num_workers=4"),
    )
    values.update(overrides)
    return silent(**values)


async def test_the_panel_shows_detected_steps_the_job_and_the_verdict():
    app = workload_app(FakeWorkload(detected()))
    async with app.run_test(size=(160, 50)) as pilot:
        await started(pilot)
        text = screen_text(app)
        assert "steps detected" in text and "data wait 62 %" in text
        assert "steps/s 8.2" in text  # 9 steps after the first in 1.1 s
        assert "step p50 100 ms p95 300 ms" in text
        assert "job 1.9 cores on 0,1: main 98 % (12 threads), 2 workers 92 %" in text
        assert "input-bound: 62 % of each step waits for the DataLoader. Try num_workers=4." in text


async def test_the_jobs_cores_are_marked_on_the_grid():
    app = workload_app(FakeWorkload(detected()))
    async with app.run_test(size=(160, 50)) as pilot:
        await started(pilot)
        panel = app.query_one(CpuPanel)
        await until(pilot, lambda: panel.job_cores == frozenset({0, 1}))
        assert "job's cores underlined" in screen_text(app)


async def test_a_script_without_steps_still_shows_its_processes():
    app = workload_app(FakeWorkload(silent(job=JOB)))
    async with app.run_test(size=(160, 50)) as pilot:
        await started(pilot)
        text = screen_text(app)
        assert "job 1.9 cores on 0,1" in text and "steps detected" not in text


async def test_a_job_far_from_its_gpu_is_warned_of_and_a_near_one_is_not():
    from dataclasses import replace

    from gputop.workload import placement
    from tui_fixtures import h100

    board = [replace(h100(0), cpu_affinity=(4, 5, 6, 7))]
    far = placement.place(board, (0,), "processes", {0: 3.0, 1: 2.0})
    near = placement.place(board, (0,), "processes", {4: 3.0, 1: 1.0})
    assert far is not None and far.warning and near is not None and near.warning is None
    for state, shown in ((detected(placement=far), True), (detected(placement=near), False), (detected(placement=None), False)):
        app = workload_app(FakeWorkload(state))
        async with app.run_test(size=(160, 50)) as pilot:
            await started(pilot)
            text = screen_text(app)
            assert ("100 % of the job's CPU time ran on CPUs 0,1, not near GPU0" in text) == shown
            assert "input-bound: 62 %" in text
