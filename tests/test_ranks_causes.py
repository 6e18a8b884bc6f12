"""Why the straggler is slow beyond its data wait (gputop.workload.causes): its host thread (time
its main thread waited in the run queue for a CPU, from the readings of the job's processes; or
placed far from its GPU), its memory (the CUDA caching allocator's retries the hooks read where
CUDA is already initialised): the rules on made-up per-rank streams and readings, live and from a
recording; the hooks' read of the retries against a stand-in ``torch.cuda`` (no GPU here); and a real 2-rank torchrun job on gloo whose rank 1 pins itself to a core that a busy
spinner it starts occupies too (tests/rank_scripts/pinned_train.py, which never imports gputop),
recorded and reported: rank 1 is the straggler for its host CPU, and the hooks never initialised
CUDA in it."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import threading
from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace

import pytest

import tui_fixtures
from gputop.commands import report
from gputop.model import JobProcess, JobUsage, WorkloadMark, WorkloadStep
from gputop.trace import TraceWriter
from gputop.workload import causes, ranks
from gputop.workload.events import EventReader
from gputop.workload.inject import _gputop_autostep as hook
from helpers import rank_job_env

pytestmark = pytest.mark.xdist_group("ranks_causes")  # its module fixture runs once, on one worker

SCRIPTS = Path(__file__).resolve().parent / "rank_scripts"
S = 1_000_000_000
T0 = 1_700_000_000 * S


def lock_step(walls: float = 0.1, backward: tuple[float, float] = (0.045, 0.005), n: int = 40, retries=(None, None)) -> list[WorkloadStep]:
    """Two ranks in lock step (DDP): each step ``walls`` s; rank 0 waits in backward for rank 1."""
    out = []
    for rank in (0, 1):
        for i in range(1, n + 1):
            count = retries[rank]
            out.append(
                WorkloadStep(
                    step=i,
                    samples=4,
                    loss=None,
                    wall_s=walls,
                    ts_ns=T0 + int(i * walls * S),
                    source="auto",
                    data_wait_s=0.0,
                    pid=100 + rank,
                    rank=rank,
                    backward_s=backward[rank],
                    alloc_retries=None if count is None else count(i),
                )
            )
    return out


def host(queued_share: float, cores: set[int], interval_s: float = 4.0) -> causes.HostWindow:
    return causes.HostWindow(
        readings=4, interval_s=interval_s, run_s=0.5 * interval_s, queued_s=queued_share * interval_s, cores=frozenset(cores)
    )


def gpu(index: int, near: set[int] | None) -> causes.GpuWindow:
    return causes.GpuWindow(index, 20, 1980.0, 60.0, 60.0, 400.0, {}, None if near is None else frozenset(near))


@pytest.mark.unit
def test_a_rank_whose_main_thread_waits_for_a_cpu_is_the_straggler_for_its_host_cpu():
    # rank 1's own work is 100 ms a step, rank 0's 60 (it waits 40 ms in backward); rank 1's main
    # thread waited for a CPU 70 % of the time (70 ms a step), rank 0's 20 % (20 ms): 50 ms more
    model = ranks.model(lock_step(), {})
    s = ranks.straggler(model, hosts={0: host(0.2, {0, 1}), 1: host(0.7, {1})})
    assert s is not None and s["rank"] == 1 and s["reason"] == "host CPU", s
    assert "waited for a CPU (runnable, in the run queue) 70 % of the time, 70 ms a step, against 20 % (20 ms a step" in s["evidence"]
    assert "50 ms a step more than theirs, for its lead of 40 ms" in s["evidence"]
    assert "ran on CPUs 1, the others on CPUs 0,1" in s["evidence"] and "over 4 s" in s["evidence"]


@pytest.mark.unit
def test_the_host_cpu_is_named_only_where_its_extra_wait_explains_its_lead_and_was_measured():
    model = ranks.model(lock_step(), {})
    # 15 ms a step more queued than rank 0, for a 40 ms lead: not its host thread (less than half)
    assert ranks.straggler(model, hosts={0: host(0.2, {0}), 1: host(0.35, {1})})["reason"] == "compute"
    # readings over too short a time: not told
    short = {0: host(0.2, {0}, interval_s=1.0), 1: host(0.7, {1}, interval_s=1.0)}
    assert ranks.straggler(model, hosts=short)["reason"] == "compute"
    # the straggler's main thread not measured (its schedstat unreadable), or no other rank's: n/a
    assert ranks.straggler(model, hosts={0: host(0.2, {0})})["reason"] == "compute"
    assert ranks.straggler(model, hosts={1: host(0.7, {1})})["reason"] == "compute"
    # its data wait leads: that is the reason, whatever its host thread
    late = [replace(s, data_wait_s=0.04) if s.rank == 1 else s for s in lock_step()]
    assert ranks.straggler(ranks.model(late, {}), hosts={0: host(0.2, {0}), 1: host(0.7, {1})})["reason"] == "data loader"


@pytest.mark.unit
def test_a_rank_placed_far_from_its_gpu_while_the_others_run_near_theirs_is_named_for_its_host_cpu():
    model = ranks.model(lock_step(), {})
    gpus = {0: gpu(0, {0, 1, 2, 3}), 1: gpu(1, {4, 5, 6, 7})}
    hosts = {0: host(0.0, {1, 2}), 1: host(0.0, {0, 3})}  # no wait for a CPU; rank 1 on node 0's CPUs
    s = ranks.straggler(model, gpus, hosts)
    assert s is not None and s["reason"] == "host CPU" and "ran on CPUs 0,3, none near its GPU 1 (near: CPUs 4-7" in s["evidence"]
    assert "taskset -c 4-7" in s["evidence"]
    # one core near its GPU, or the other rank far too, or affinity unknown: not this
    assert ranks.straggler(model, gpus, {0: host(0.0, {1}), 1: host(0.0, {0, 4})})["reason"] == "compute"
    assert ranks.straggler(model, gpus, {0: host(0.0, {5}), 1: host(0.0, {0})})["reason"] == "compute"
    unknown = {0: gpu(0, None), 1: gpu(1, None)}
    assert ranks.straggler(model, unknown, hosts)["reason"] == "compute"


@pytest.mark.unit
def test_a_rank_whose_allocator_retries_grow_while_the_others_do_not_is_named_for_its_memory():
    grows = lock_step(retries=(lambda i: 1, lambda i: 2 + i // 4))  # rank 1: +10 over steps 3-40 (after warm-up)
    model = ranks.model(grows, {})
    assert [r.alloc_retries for r in model] == [0, 10]
    s = ranks.straggler(model)
    assert s is not None and s["reason"] == "GPU memory (allocator retries)", s
    assert "retried 10 times over its steps" in s["evidence"] and "the other ranks' 0 (median)" in s["evidence"]
    assert ranks.summary_of(model)["ranks"][1]["alloc_retries"] == 10
    # the others retry as much: not its memory; a CPU job (never read): n/a, its compute
    both = ranks.model(lock_step(retries=(lambda i: i // 4, lambda i: i // 4)), {})
    assert ranks.straggler(both)["reason"] == "compute"
    cpu = ranks.model(lock_step(), {})
    assert [r.alloc_retries for r in cpu] == [None, None] and ranks.straggler(cpu)["reason"] == "compute"


class Cuda:
    """``torch.cuda`` as the hooks see it where CUDA is, or is not yet, initialised in the process
    (the GPU layer's stand-in: there is no GPU here); it notes each ``memory_stats`` call."""

    def __init__(self, initialized: bool) -> None:
        self.initialized, self.asked = initialized, []

    def is_initialized(self) -> bool:
        return self.initialized

    def memory_stats(self, device: str) -> dict[str, int]:
        self.asked.append(device)
        return {"num_alloc_retries": 7, "num_ooms": 0}


@pytest.mark.unit
def test_the_hooks_read_the_allocators_retries_only_where_cuda_is_initialised_and_steps_carry_them(monkeypatch):
    cold = Cuda(False)
    monkeypatch.setitem(sys.modules, "torch", SimpleNamespace(cuda=cold))
    assert hook._alloc_retries("cuda:1") is None and cold.asked == []  # never asked: it would be the first CUDA call
    warm = Cuda(True)
    monkeypatch.setitem(sys.modules, "torch", SimpleNamespace(cuda=warm))
    assert hook._alloc_retries("cuda:1") == 7 and warm.asked == ["cuda:1"]
    assert hook._alloc_retries("cpu") is None and hook._alloc_retries("cuda") is None and warm.asked == ["cuda:1"]
    state = hook._State(None, None, root=False)
    state.started, state.flusher = True, threading.current_thread()  # past its hello; no writer thread
    hook._emit(state, T0)
    state.alloc_retries = 7
    hook._emit(state, T0 + S)
    reader = EventReader("train.py")
    first, second = (reader.feed(line.encode()) for line in state.held)
    assert first.alloc_retries is None and second.alloc_retries == 7


def usage(interval_s: float | None, times: dict[int, tuple[float, float, set[int]]]) -> JobUsage:
    procs = tuple(
        JobProcess(pid, "python", "rank", 50.0, 4, 1, frozenset(c), main_run_s=run, main_queued_s=queued)
        for pid, (run, queued, c) in times.items()
    )
    return JobUsage(None, None, None, None, None, frozenset(), procs, interval_s=interval_s)


@pytest.mark.unit
def test_the_live_straggler_is_told_by_its_host_thread_over_the_recent_readings():
    job = lock_step()
    by_rank = {r: [s for s in job if s.rank == r] for r in (0, 1)}
    readings = [causes.reading_of(usage(1.0, {100: (0.5, 0.2, {0, 1}), 101: (0.3, 0.7, {1})})) for _ in range(5)]
    assert causes.reading_of(usage(None, {100: (0.5, 0.2, {0})})) is None  # the first: no interval, n/a
    now = max(s.ts_ns for s in job)
    _, without, _ = ranks.rows(by_rank, {}, now)
    assert without is not None and without.reason == "compute"
    _, found, _ = ranks.rows(by_rank, {}, now, readings=readings)
    assert found is not None and found.rank == 1 and found.reason == "host CPU" and "70 % of the time" in found.evidence


@pytest.mark.unit
def test_report_reads_each_ranks_host_thread_from_the_job_readings_within_its_steps(tmp_path):
    job = sorted(lock_step(), key=lambda s: s.ts_ns)
    path = tmp_path / "job.json"
    hellos = [WorkloadMark("hello", T0, args={"pid": 100 + r, "rank": r, "device": "cpu"}) for r in (0, 1)]
    readings = [(T0 + t * S, usage(1.0, {100: (0.5, 0.2, {0, 1}), 101: (0.3, 0.7, {1})})) for t in (1, 2, 3, 4)]
    # one after the steps (the job winding down): left out
    readings.append((T0 + 9 * S, usage(1.0, {100: (0.0, 0.0, {0}), 101: (0.0, 0.0, {0})})))
    with TraceWriter.create(str(path)) as writer:
        writer.set_workload(99, "torchrun")
        writer.write_sample(tui_fixtures.make_sample(1, 0))
        writer.write_workload(hellos)
        writer.write_workload(job)
        for ts, reading in readings:  # a job reading is written with the workload's counters at a sample
            writer.write_workload([], tui_fixtures.silent(job=reading), ts)
    w = report.read(str(path))[0]["workload"]
    hosts = {r["rank"]: r["host"] for r in w["ranks"]}
    assert hosts[1]["queued_share"] == pytest.approx(0.7) and hosts[0]["queued_share"] == pytest.approx(0.2)
    assert hosts[1]["cores"] == "1" and hosts[0]["over_s"] == pytest.approx(3.0)  # the 3 readings wholly within the steps
    assert w["straggler"]["reason"] == "host CPU"


# ---- a real job: rank 1 pinned to a core it shares with a spinner ----------------------------------


@pytest.fixture(scope="module")
def pinned(tmp_path_factory) -> dict:
    if len(os.sched_getaffinity(0)) < 2:  # one core: every rank would share the spinner's
        pytest.skip("needs 2 CPUs: rank 1 and a spinner on one, rank 0 free to use another")
    out = tmp_path_factory.mktemp("causes") / "pinned.json"
    argv = ["record", "--quiet", "--out", str(out), "--interval", "0.25", "--run", "torchrun", "--"]
    argv += ["--standalone", "--nproc_per_node=2", "pinned_train.py"]
    done = subprocess.run(
        [sys.executable, "-m", "gputop", *argv], cwd=SCRIPTS, env=rank_job_env(), capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr
    reported = subprocess.run([sys.executable, "-m", "gputop", "report", "--json", str(out)], capture_output=True, text=True, timeout=120)
    assert reported.returncode == 0, reported.stderr
    return {"workload": json.loads(reported.stdout)["workload"], "trace": out.read_text()}


@pytest.mark.e2e
def test_a_rank_that_shares_its_core_with_a_spinner_is_the_straggler_for_its_host_cpu(pinned):
    w = pinned["workload"]
    assert [(r["rank"], r["steps"]) for r in w["ranks"]] == [(0, 100), (1, 100)]
    s = w["straggler"]
    assert s is not None and s["rank"] == 1 and s["reason"] == "host CPU", (s, [r["host"] for r in w["ranks"]])
    fast, slow = (r["host"] for r in w["ranks"])
    assert slow["queued_share"] > fast["queued_share"] and len(slow["cores"].split(",")) == 1 and "-" not in slow["cores"]
    assert re.search(r"waited for a CPU \(runnable, in the run queue\) \d+ % of the time", s["evidence"])


@pytest.mark.e2e
def test_the_hooks_never_initialise_cuda_and_a_cpu_job_has_no_allocator_count(pinned):
    w = pinned["workload"]
    said = [line for line in w["output_tail"] if "cuda initialized" in line]
    assert sorted(said) == ["rank 0 steps 100 cuda initialized False", "rank 1 steps 100 cuda initialized False"], w["output_tail"]
    assert [r["alloc_retries"] for r in w["ranks"]] == [None, None]  # n/a on the CPU, never 0
    assert '"alloc_retries"' not in pinned["trace"]
