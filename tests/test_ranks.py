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
from pathlib import Path

import pytest

from gputop.commands import report
from gputop.model import WorkloadStep
from gputop.workload import ranks
from gputop.workload.channel import EventSocket
from gputop.workload.pipes import EventLines
from gputop.workload.targets import WorkloadError, resolve
from helpers import rank_job_env

pytestmark = pytest.mark.xdist_group("ranks")  # its module fixture runs once, on one worker

TESTS = Path(__file__).resolve().parent
SCRIPTS = TESTS / "rank_scripts"


def steps_of(rank: int, walls: list[float], waits: list[float], samples: int = 4, pid: int = 100) -> list[WorkloadStep]:
    out, t = [], 1_000_000_000
    for i, (wall, wait) in enumerate(zip(walls, waits), 1):
        t += int(wall * 1e9)
        out.append(
            WorkloadStep(
                step=i, samples=samples, loss=None, wall_s=wall, ts_ns=t, source="auto", data_wait_s=wait, pid=pid + rank, rank=rank
            )
        )
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
def test_a_slower_rank_without_data_wait_is_named_without_a_reason_it_cannot_measure():
    job = steps_of(0, [0.02] * 20, [0.0] * 20) + steps_of(1, [0.04] * 20, [0.0] * 20)
    s = ranks.straggler(ranks.model(job, {}))
    assert s is not None and s["rank"] == 1 and s["reason"] is None and "not from data wait" in s["evidence"]


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
    "spawn": (["spawn_train.py"], {"STEPS": "50", "SLOW_S": "0.01"}),
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


def own_measurements(w: dict) -> dict[int, tuple[int, int, float]]:
    """What each rank printed of itself: rank -> (steps, samples, data-wait share)."""
    found = {}
    for line in w["output_tail"]:
        m = re.search(r"rank (\d) steps (\d+) samples (\d+) wait ([\d.]+)", line)
        if m:
            found[int(m[1])] = (int(m[2]), int(m[3]), float(m[4]))
    return found


@pytest.mark.e2e
@pytest.mark.parametrize("name", list(JOBS))
def test_every_rank_is_seen_with_its_own_steps_and_data_wait(recorded, name):
    w = recorded[name]["workload"]
    own = own_measurements(w)
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
