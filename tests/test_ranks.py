"""Every rank of a distributed job (gputop.workload.ranks, the hooks in each rank, the events
socket): the straggler rule on made-up per-rank streams, and real 2-rank jobs on gloo on this CPU
launched the ways users launch them (torchrun as a console script, ``-m torch.distributed.run``,
``mp.spawn``), recorded by ``gputop record --run`` and read back by ``report``. The scripts
(tests/rank_scripts/) never import gputop; rank 1's dataset is slow on purpose, and each rank prints
its own step count and data-wait share."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import pytest

import tui_fixtures
from gputop.commands import report
from gputop.model import WorkloadMark, WorkloadStep
from gputop.trace import TraceWriter
from gputop.workload import causes, ranks
from gputop.workload.channel import EventSocket
from gputop.workload.pipes import EventLines
from gputop.workload.targets import WorkloadError, resolve
from helpers import rank_job_env, rank_measurements

pytestmark = pytest.mark.xdist_group("ranks")  # its module fixture runs once, on one worker

TESTS = Path(__file__).resolve().parent
SCRIPTS = TESTS / "rank_scripts"


def steps_of(
    rank: int, walls: list[float], waits: list[float], samples: int = 4, pid: int = 100, backward: float | None = None
) -> list[WorkloadStep]:
    out, t = [], 1_000_000_000
    for i, (wall, wait) in enumerate(zip(walls, waits), 1):
        t += int(wall * 1e9)
        step = WorkloadStep(i, samples, None, wall, t, source="auto", data_wait_s=wait, pid=pid + rank, rank=rank, backward_s=backward)
        out.append(step)
    return out


@pytest.mark.unit
def test_the_rank_whose_batches_come_late_is_the_straggler_because_of_its_data_loader():
    # lock-step: both ranks' steps take 40 ms; rank 1 waits 36 ms of it for its batch, rank 0 none
    job = steps_of(0, [0.04] * 20, [0.0] * 20) + steps_of(1, [0.04] * 20, [0.036] * 20)
    model = ranks.model(job, {})
    assert [r.rank for r in model] == [0, 1] and [r.steps for r in model] == [20, 20]
    assert [r.samples for r in model] == [80, 80]
    assert model[1].data_wait_share == pytest.approx(0.9) and model[0].data_wait_share == 0.0
    s = ranks.straggler(model)
    assert s is not None and s["rank"] == 1 and s["reason"] == "data loader"
    assert "90 %" in s["evidence"]
    # the other way round: rank 0 made slow instead
    swapped = steps_of(0, [0.04] * 20, [0.036] * 20) + steps_of(1, [0.04] * 20, [0.0] * 20)
    assert ranks.straggler(ranks.model(swapped, {}))["rank"] == 0


@pytest.mark.unit
def test_ranks_alike_have_no_straggler_and_one_rank_none():
    even = steps_of(0, [0.04] * 20, [0.002] * 20) + steps_of(1, [0.041] * 20, [0.003] * 20)
    assert ranks.straggler(ranks.model(even, {})) is None
    assert ranks.straggler(ranks.model(steps_of(0, [0.04] * 20, [0.03] * 20), {})) is None


@pytest.mark.unit
def test_a_slower_rank_without_data_wait_is_named_for_its_compute():
    job = steps_of(0, [0.02] * 20, [0.0] * 20) + steps_of(1, [0.04] * 20, [0.0] * 20)
    s = ranks.straggler(ranks.model(job, {}))
    assert s is not None and s["rank"] == 1 and s["reason"] == "compute" and "(from their data waits)" in s["evidence"]


@pytest.mark.unit
def test_in_lock_step_the_wait_in_backward_names_the_rank_the_others_wait_for():
    # DDP: both ranks' steps take 40 ms; rank 0 spends 25 ms of it in backward (5 ms of its own
    # backward, 20 ms waiting at the all-reduce for rank 1), rank 1 5 ms: rank 1's own work is 40,
    # rank 0's 20. Without the backward times the two would read alike.
    job = steps_of(0, [0.04] * 20, [0.0] * 20, backward=0.025) + steps_of(1, [0.04] * 20, [0.0] * 20, backward=0.005)
    model = ranks.model(job, {})
    assert [r.backward_per_step_s for r in model] == [pytest.approx(0.025), pytest.approx(0.005)]
    assert ranks.collective_wait_s(model) == {0: pytest.approx(0.02), 1: 0.0}
    s = ranks.straggler(model)
    assert s is not None and s["rank"] == 1 and s["reason"] == "compute"
    assert "wait 20 ms a step for it in backward" in s["evidence"]
    # its batches late instead: the same wait, and the reason is its data loader
    late = steps_of(0, [0.04] * 20, [0.0] * 20, backward=0.025) + steps_of(1, [0.04] * 20, [0.02] * 20, backward=0.005)
    assert ranks.straggler(ranks.model(late, {}))["reason"] == "data loader"
    # ranks alike in backward too: none
    even = steps_of(0, [0.04] * 20, [0.0] * 20, backward=0.006) + steps_of(1, [0.04] * 20, [0.0] * 20, backward=0.005)
    assert ranks.straggler(ranks.model(even, {})) is None
    # one rank without backward times (an older recording): the data-wait estimate, as before
    mixed = steps_of(0, [0.04] * 20, [0.0] * 20, backward=0.025) + steps_of(1, [0.04] * 20, [0.0] * 20)
    assert ranks.straggler(ranks.model(mixed, {})) is None


@pytest.mark.unit
def test_rates_are_windowed_and_the_jobs_samples_per_s_is_the_sum_over_ranks():
    # alternating 1 ms / 66 ms steps (loader workers): a median of per-step rates says ~4,000/s or
    # ~240/s; the window's samples over its time is 16 * 2 / 0.067 = 478/s
    walls = [0.001, 0.066] * 10
    job = steps_of(0, walls, [0.0] * 20, samples=16) + steps_of(1, walls, [0.0] * 20, samples=16)
    model = ranks.model(job, {})
    timed = walls[1:]
    assert model[0].samples_per_s == pytest.approx(16 * len(timed) / sum(timed))
    assert model[0].steps_per_s == pytest.approx(len(timed) / sum(timed))
    assert ranks.job_samples_per_s(model) == pytest.approx(2 * 16 * len(timed) / sum(timed))


@pytest.mark.unit
def test_the_live_and_whole_run_samples_per_s_of_ranks_are_summed_not_mixed():
    job = steps_of(0, [0.01] * 20, [0.0] * 20) + steps_of(1, [0.02] * 20, [0.0] * 20)
    job.sort(key=lambda s: s.ts_ns)  # as they arrive
    expected = 4 / 0.01 + 4 / 0.02  # 400 + 200 samples/s; mixed together they read 267
    assert ranks.live_samples_per_s(job) == pytest.approx(expected)
    totals = ranks.RunTotalsByRank()
    for s in job:
        totals.add(s)
    assert totals.samples_per_s() == pytest.approx(expected)


@pytest.mark.unit
def test_a_job_without_ranks_has_no_ranks_keys():
    single = [WorkloadStep(step=i, samples=4, loss=None, wall_s=0.01, ts_ns=i * 10**7) for i in range(1, 5)]
    assert ranks.summary(single, {}) == {}


@pytest.mark.unit
def test_a_console_script_on_path_is_a_target(tmp_path, monkeypatch):
    script = tmp_path / "mylaunch"
    script.write_text("#!/usr/bin/env python3\nimport sys\nprint(sys.argv)\n")
    script.chmod(0o755)
    binary = tmp_path / "notpython"
    binary.write_bytes(b"\x7fELF\x00\x00")
    binary.chmod(0o755)
    monkeypatch.setenv("PATH", str(tmp_path))
    assert resolve("mylaunch") == ("mylaunch", (sys.executable, str(script)))
    with pytest.raises(WorkloadError, match="notpython.*null bytes"):
        resolve("notpython")
    with pytest.raises(WorkloadError, match="unknown workload 'resnet'"):
        resolve("resnet")


@pytest.mark.unit
def test_the_events_socket_is_private_and_feeds_the_same_lines():
    read_fd, write_fd = os.pipe()
    lines = EventLines(read_fd, None)
    channel = EventSocket()
    try:
        assert os.stat(channel.dir).st_mode & 0o777 == 0o700
        channel.attach(lines.follow)
        conns = []
        for n in range(2):
            conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            conn.connect(channel.path)
            conn.sendall(b'{"from": %d}\n{"and": ' % n)
            conns.append(conn)
        os.write(write_fd, b'{"pipe": 1}\n')
        for n, conn in enumerate(conns):
            conn.sendall(b"%d}\n" % n)
            conn.close()
        os.close(write_fd)
        got: list[bytes] = []
        deadline = time.monotonic() + 10
        while len(got) < 5 and time.monotonic() < deadline:  # each connection read on its own thread
            got += lines.take()
            time.sleep(0.01)
        assert sorted(got) == sorted([b'{"pipe": 1}', b'{"from": 0}', b'{"and": 0}', b'{"from": 1}', b'{"and": 1}'])
    finally:
        channel.close()
    assert not os.path.exists(channel.dir)


# ---- real jobs ------------------------------------------------------------------------------

JOBS = {  # name: (--run target and arguments, extra environment)
    "torchrun": (["torchrun", "--", "--standalone", "--nproc_per_node=2", "ddp_train.py"], {"STEPS": "30"}),
    "module": (["-m torch.distributed.run", "--", "--standalone", "--nproc_per_node=2", "ddp_train.py"], {"STEPS": "30"}),
    "compute": (["torchrun", "--", "--standalone", "--nproc_per_node=2", "ddp_train.py"], {"STEPS": "30", "SLOW_COMPUTE_S": "0.03"}),
    # the model and its optimizer made in the parent, pickled to the ranks: steps counted once
    "spawn": (["spawn_train.py"], {"STEPS": "50", "SLOW_S": "0.01", "BUILT_IN_PARENT": "1"}),
    "fork": (["spawn_train.py"], {"STEPS": "50", "SLOW_S": "0.01", "START_METHOD": "fork"}),
}


@pytest.fixture(scope="module")
def recorded(tmp_path_factory) -> dict[str, dict]:
    env = rank_job_env()
    out = tmp_path_factory.mktemp("ranks")
    running = {}
    for name, (run, extra) in JOBS.items():
        argv = [
            sys.executable,
            "-m",
            "gputop",
            "record",
            "--quiet",
            "--out",
            str(out / f"{name}.json"),
            "--interval",
            "0.25",
            "--run",
            *run,
        ]
        running[name] = subprocess.Popen(argv, cwd=SCRIPTS, env={**env, **extra}, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    done = {}
    deadline = time.monotonic() + 180
    for name, proc in running.items():
        _, err = proc.communicate(timeout=max(1, deadline - time.monotonic()))
        assert proc.returncode == 0, f"{name}: {err}"
        summary, _ = report.read(str(out / f"{name}.json"))
        done[name] = summary
    return done


@pytest.mark.e2e
def test_a_rank_slow_in_its_own_work_is_the_straggler_and_the_other_waits_for_it_in_backward(recorded):
    w = recorded["compute"]["workload"]
    assert [(r["rank"], r["steps"]) for r in w["ranks"]] == [(0, 30), (1, 30)]
    fast, slow = w["ranks"]
    # rank 1 sleeps 30 ms a step before its forward; rank 0 spends that time waiting in backward
    assert fast["backward_per_step_s"] - slow["backward_per_step_s"] > 0.02, w["ranks"]
    s = w["straggler"]
    assert s is not None and s["rank"] == 1 and s["reason"] == "compute", s
    assert "in backward, for the all-reduce" in s["evidence"]


@pytest.mark.e2e
@pytest.mark.parametrize("name", [name for name in JOBS if name != "compute"])
def test_every_rank_is_seen_with_its_own_steps_and_data_wait(recorded, name):
    w = recorded[name]["workload"]
    own = rank_measurements(w["output_tail"])
    steps = int(JOBS[name][1]["STEPS"])
    assert sorted(own) == [0, 1], w["output_tail"]
    assert [r["rank"] for r in w["ranks"]] == [0, 1]
    assert [(r["steps"], r["samples"]) for r in w["ranks"]] == [(steps, 4 * steps)] * 2, (w["ranks"], own, w["lost"])
    assert all(own[r["rank"]][:2] == (r["steps"], r["samples"]) for r in w["ranks"])
    for r in w["ranks"]:  # within a few points of what the rank measured itself
        assert abs(r["data_wait_share"] - own[r["rank"]][2]) < 0.05, (r, own)
        assert r["device"] == "cpu" and r["world_size"] == 2 and r["steps_per_s"] and r["samples_per_s"]
        assert r["step_p50_s"] is not None and r["pid"] != w["pid"]  # the launcher is no rank
    assert w["ranks"][1]["data_wait_share"] > 0.5 > w["ranks"][0]["data_wait_share"]
    s = w["straggler"]
    assert s is not None and s["rank"] == 1 and s["reason"] == "data loader", s
    assert w["job_samples_per_s"] == pytest.approx(sum(r["samples_per_s"] for r in w["ranks"]))
    assert w["steps"] == steps  # the job's step series is its slowest rank's


@pytest.mark.e2e
@pytest.mark.parametrize("name", ["spawn", "fork"])
def test_the_ranks_loader_workers_are_silent_and_counted_per_rank(recorded, name):
    w = recorded[name]["workload"]
    assert len(w["ranks"]) == 2  # two ranks; neither their loader workers nor the resource tracker
    assert w["job"]["workers"] == 1  # the slow rank's own loader worker; no rank counted as a worker


@pytest.mark.e2e
def test_the_report_prints_a_table_of_ranks_and_the_straggler(recorded):
    text = report.to_text(recorded["torchrun"])
    assert re.search(r"^\s+rank\s+pid\s+device\s+steps\s+samples", text, re.M)
    assert re.search(r"^\s+1\s+\d+\s+cpu\s+30\s+120\s", text, re.M)
    assert "straggler   rank 1 (data loader)" in text


# ---- the straggler's GPU ------------------------------------------------------------------------


def gpu_window(index: int, clock: float, active: float = 60.0, held: dict | None = None) -> causes.GpuWindow:
    return causes.GpuWindow(index, 20, clock, active, 70.0, 400.0, held or {})


@pytest.mark.unit
def test_the_straggler_whose_gpu_runs_slower_clocks_is_named_for_them_with_what_held_them():
    slow = gpu_window(1, 1410.0, held={"hw_thermal_slowdown": 0.8, "sw_power_cap": 0.1})
    cause = causes.gpu_cause(1, slow, [gpu_window(0, 1980.0), gpu_window(2, 1980.0)])
    assert cause is not None and cause[0] == "GPU clocks"
    assert "1410 MHz against 1980 MHz" in cause[1] and "°C" not in cause[1] and "too hot (hardware) 80 % of the time" in cause[1]
    assert "power cap" not in cause[1]  # held them a tenth of the time only: not named
    busier = causes.gpu_cause(1, gpu_window(1, 1980.0, active=92.0), [gpu_window(0, 1980.0, active=61.0)])
    assert busier is not None and busier[0] == "GPU work" and "92 %" in busier[1]
    assert causes.gpu_cause(1, gpu_window(1, 1900.0, active=65.0), [gpu_window(0, 1980.0, active=60.0)]) is None
    assert causes.gpu_cause(1, slow, []) is None


@pytest.mark.unit
def test_report_ties_each_rank_to_its_gpu_by_uuid_and_names_the_stragglers_gpu_clocks(tmp_path):
    # two ranks on two GPUs (rank 0 on GPU 1, rank 1 on GPU 0: by UUID, not by order); rank 1's
    # own work is the longer, and its GPU ran at 1,410 MHz held by heat while the other's ran at 1,980
    samples = [
        tui_fixtures.with_gpu(
            tui_fixtures.make_sample(2, t),
            0,
            sm_clock_mhz=1410,
            temp_c=88.0,
            clock_event_reasons=("hw_thermal_slowdown",),
        )
        for t in range(12)
    ]
    t0 = tui_fixtures.T0_NS
    hellos = [
        WorkloadMark("hello", t0 + 10**8, args={"pid": 101, "rank": 0, "device": "cuda:0", "device_uuid": "GPU-h100-0001"}),
        WorkloadMark("hello", t0 + 10**8, args={"pid": 102, "rank": 1, "device": "cuda:0", "device_uuid": "GPU-h100-0000"}),
    ]
    job = steps_of(0, [0.5] * 20, [0.0] * 20, backward=0.3, pid=101) + steps_of(1, [0.5] * 20, [0.0] * 20, backward=0.05, pid=101)
    job = sorted((replace(s, ts_ns=s.ts_ns - 10**9 + t0 + 10**9) for s in job), key=lambda s: s.ts_ns)
    path = tmp_path / "job.json"
    with TraceWriter.create(str(path)) as writer:
        writer.set_workload(100, "torchrun")
        writer.write_sample(samples[0])
        writer.write_workload(hellos)
        for sample in samples[1:]:
            writer.write_workload([s for s in job if sample.ts_ns - 10**9 < s.ts_ns <= sample.ts_ns])
            writer.write_sample(sample)
    w = report.read(str(path))[0]["workload"]
    gpus = {r["rank"]: r["gpu"] for r in w["ranks"]}
    assert gpus[0]["index"] == 1 and gpus[1]["index"] == 0 and gpus[1]["sm_clock_mhz"] == 1410
    assert gpus[1]["clock_event_reasons"] == {"hw_thermal_slowdown": 1.0}
    s = w["straggler"]
    assert s is not None and s["rank"] == 1 and s["reason"] == "GPU clocks", s
    assert "rank 1's GPU 0 runs its SMs at 1410 MHz against 1980 MHz" in s["evidence"]
    assert "it runs at 88 °C against 64 °C" in s["evidence"]
