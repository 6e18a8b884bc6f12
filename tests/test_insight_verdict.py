"""The verdict's rules on synthetic signals (gputop.workload.verdict), one case per kind and the
edges of each threshold; and the job's processes read from a fake /proc tree."""

from __future__ import annotations

from pathlib import Path

import pytest

from gputop.workload import verdict
from gputop.workload.procs import JobWatch
from gputop.workload.verdict import Signals, decide

pytestmark = pytest.mark.unit

GPU = dict(device="cuda", gpus=1, gpu_label="GPU0")


def test_too_few_steps_after_warm_up_is_unknown():
    v = decide(Signals(steps=verdict.MIN_STEPS - 1, device="cuda", data_wait_share=0.9))
    assert v.kind == "unknown" and "at least 5" in v.evidence


def test_input_bound_says_how_much_waits_and_what_to_try():
    v = decide(
        Signals(
            steps=10, data_wait_share=0.62, loader_workers=4, workers_cpu_pct=390, cores=16, idle_cores=12.2, gpu_sm_active_pct=18, **GPU
        )
    )
    assert v.kind == "input_bound"
    assert v.evidence == (
        "62 % of each step waits for the DataLoader; its 4 workers keep 3.9 of 16 cores "
        "busy while 12 of 16 cores are idle; GPU0 SMs 18 % active"
    )
    assert v.suggestion == "Try num_workers=16"


@pytest.mark.parametrize(
    "share, kind", [(verdict.INPUT_BOUND_SHARE, "input_bound"), (verdict.INPUT_BOUND_SHARE - 0.01, "gpu_compute_bound")]
)
def test_the_input_bound_threshold(share, kind):
    assert decide(Signals(steps=10, data_wait_share=share, gpu_sm_active_pct=95, **GPU)).kind == kind


def test_a_busy_gpu_is_compute_or_memory_bound_by_its_bandwidth():
    assert decide(Signals(steps=10, gpu_sm_active_pct=90, gpu_dram_pct=30, **GPU)).kind == "gpu_compute_bound"
    assert decide(Signals(steps=10, gpu_sm_active_pct=90, gpu_dram_pct=75, **GPU)).kind == "gpu_memory_bound"
    # no GPM (SM activity n/a): NVML's utilization stands in
    assert decide(Signals(steps=10, gpu_util_pct=99, **GPU)).kind == "gpu_compute_bound"


def test_host_bound_needs_a_waiting_gpu_and_a_full_main_thread():
    v = decide(Signals(steps=10, gpu_sm_active_pct=20, main_thread_busy_pct=99, **GPU))
    assert v.kind == "host_bound" and "99 %" in v.evidence
    assert decide(Signals(steps=10, gpu_sm_active_pct=20, main_thread_busy_pct=40, **GPU)).kind == "unknown"


def test_gpu_activity_not_readable_is_unknown_not_a_guess():
    assert decide(Signals(steps=10, main_thread_busy_pct=99, **GPU)).kind == "unknown"


def test_training_on_the_cpu_next_to_an_idle_gpu():
    v = decide(Signals(steps=10, device="cpu", gpus=2, gpu_label="GPU1", gpu_util_pct=0, job_busy_pct=200))
    assert v.kind == "gpu_idle" and "GPU1" in v.evidence


def test_cpu_compute_counts_time_queued_for_a_core():
    # a job that never sleeps, on a machine so shared that it is on a core a third of the time
    v = decide(Signals(steps=10, device="cpu", job_busy_pct=95, job_cpu_pct=33, cores=2))
    assert v.kind == "cpu_compute" and "want 0.9 cores and get 0.3 of 2" in v.evidence
    assert decide(Signals(steps=10, device="cpu", job_busy_pct=verdict.CPU_BUSY_PCT - 1)).kind == "unknown"


@pytest.mark.parametrize("got, crowded", [(33, True), (47, True), (48, False), (95, False), (None, False)])
def test_a_crowded_out_cpu_job_is_told_so_rather_than_to_shrink_its_model(got, crowded):
    """Seen for real: a Lightning script getting 0.2 of the 2.0 cores it wanted on a busy machine
    was told its arithmetic was the limit."""
    v = decide(Signals(steps=10, device="cpu", job_busy_pct=95, job_cpu_pct=got, cores=2))
    assert v.kind == "cpu_compute"
    assert v.suggestion.startswith("Other processes hold the cores") == crowded
    if crowded:
        assert f"gets {100 * got / 95:.0f} % of the CPU time it wants" in v.suggestion


def test_every_kind_is_listed():
    assert set(verdict.KINDS) == {
        "input_bound",
        "host_bound",
        "gpu_compute_bound",
        "gpu_memory_bound",
        "gpu_idle",
        "cpu_compute",
        "unknown",
    }


def _proc(root: Path, pid: int, ppid: int, tids: dict[int, tuple[int, int, int, int, int]]) -> None:
    """A /proc/PID with stat and tasks; tids: tid -> (utime, stime, processor, on_ns, queued_ns)."""

    def stat(t: int, utime: int, stime: int, cpu: int, threads: int) -> str:
        fields = ["S", str(ppid)] + ["0"] * 9 + [str(utime), str(stime)] + ["0"] * 4 + [str(threads)]
        fields += ["0"] * 3 + ["250"] + ["0"] * 14 + [str(cpu)] + ["0"] * 5
        return f"{t} (py thon) " + " ".join(fields) + "\n"

    base = root / str(pid)
    total = [sum(v[0] for v in tids.values()), sum(v[1] for v in tids.values())]
    (base / "task").mkdir(parents=True, exist_ok=True)
    (base / "stat").write_text(stat(pid, *total, 0, len(tids)))
    for tid, (u, s, cpu, on, queued) in tids.items():
        (base / "task" / str(tid)).mkdir(exist_ok=True)
        (base / "task" / str(tid) / "stat").write_text(stat(tid, u, s, cpu, len(tids)))
        (base / "task" / str(tid) / "schedstat").write_text(f"{on} {queued} 7\n")


def test_job_watch_reads_cpu_threads_memory_and_cores(tmp_path):
    clock = iter([10.0, 12.0]).__next__
    watch = JobWatch(100, clock=clock, proc=str(tmp_path))
    _proc(tmp_path, 100, 1, {100: (0, 0, 0, 0, 0), 101: (0, 0, 1, 0, 0)})
    _proc(tmp_path, 200, 100, {200: (0, 0, 3, 0, 0)})
    first = watch.read({100, 200})
    assert first is not None and first.cpu_pct is None and first.cores == frozenset()  # n/a, never 0
    tick = JobWatch.__init__.__globals__["_TICK"]
    _proc(tmp_path, 100, 1, {100: (tick, 0, 0, int(1.5e9), int(0.5e9)), 101: (0, 0, 1, 0, 0)})
    _proc(tmp_path, 200, 100, {200: (2 * tick, 0, 3, int(2e9), 0)})
    usage = watch.read({100, 200})
    assert usage is not None
    main, worker = usage.processes
    assert (main.role, worker.role) == ("main", "worker")
    assert main.cpu_pct == pytest.approx(50.0) and worker.cpu_pct == pytest.approx(100.0)
    assert main.cores == frozenset({0}) and worker.cores == frozenset({3})  # thread 101 never ran
    assert usage.cores == frozenset({0, 3}) and main.threads == 2 and main.name == "py thon"
    assert usage.main_thread_cpu_pct == pytest.approx(75.0) and usage.main_thread_busy_pct == pytest.approx(100.0)
    assert usage.busy_pct == pytest.approx(200.0)  # (1.5 + 0.5 + 2) s over 2 s
    assert usage.rss_bytes == 2 * 250 * JobWatch.__init__.__globals__["_PAGE"]
    assert first.core_cpu_s == () and usage.core_cpu_s == ((0, 1.0), (3, 2.0))  # CPU s on each core
    # each process's main thread (tid = pid): on a core and queued for one over the interval
    assert (main.main_run_s, main.main_queued_s, worker.main_run_s, worker.main_queued_s) == (1.5, 0.5, 2.0, 0.0)
    assert first.interval_s is None and usage.interval_s == 2.0
    assert all(p.main_run_s is None and p.main_queued_s is None for p in first.processes)  # n/a, never 0


def test_workers_that_wait_on_io_are_told_to_double():
    v = decide(Signals(steps=10, device="cpu", data_wait_share=0.6, loader_workers=2, workers_cpu_pct=4, cores=2, idle_cores=0))
    assert v.kind == "input_bound" and v.suggestion is not None and v.suggestion.startswith("Try num_workers=4")


def test_busy_workers_on_a_full_machine_are_told_to_make_items_cheaper():
    v = decide(Signals(steps=10, device="cpu", data_wait_share=0.6, loader_workers=2, workers_cpu_pct=190, cores=2, idle_cores=0.1))
    assert v.kind == "input_bound" and "cheaper" in (v.suggestion or "")
