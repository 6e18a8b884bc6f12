"""A distributed job recorded node by node (gputop.workload.nodes, ``report`` of several traces):
two real torchrun "nodes" on this machine (``--nnodes 2``, a c10d rendezvous on localhost, gloo),
each under its own ``gputop record``, joined by their run id; and the traces that are not one job
refused in one line. The script (tests/rank_scripts/ddp_train.py) never imports gputop; rank 1's
dataset is slow on purpose and each rank prints its own step count and data-wait share."""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from gputop.workload import nodes, ranks
from gputop.workload.ranks import RankFigures
from helpers import rank_job_env

pytestmark = pytest.mark.xdist_group("ranks_nodes")  # its module fixture runs once, on one worker

TESTS = Path(__file__).resolve().parent
SCRIPTS = TESTS / "rank_scripts"
STEPS = 30


def figures(rank: int, world: int = 2) -> RankFigures:
    return RankFigures(rank, 100 + rank, 20, 80, 50.0, 200.0, 0.02, 0.03, 0.02, 0.0, 0.0, device="cpu", local_rank=0, world_size=world)


def recording(path: str, run_ids: set[str], *rank_numbers: int, world: int = 2) -> nodes.NodeRecording:
    return nodes.NodeRecording(path, "host", tuple(figures(k, world) for k in rank_numbers), frozenset(run_ids))


@pytest.mark.unit
def test_nodes_of_one_run_are_one_job_and_anything_else_is_refused_in_one_line():
    job = nodes.join([recording("b.json", {"r1"}, 1), recording("a.json", {"r1"}, 0)])
    assert job["run_id"] == "r1" and [r["rank"] for r in job["ranks"]] == [0, 1]
    assert [r["node"] for r in job["ranks"]] == ["a.json", "b.json"] and job["missing_ranks"] == []
    assert nodes.join([recording("a.json", {"r1"}, 0, world=3)])["missing_ranks"] == [1, 2]
    refused = {
        "traces of different runs": [recording("a.json", {"r1"}, 0), recording("b.json", {"r2"}, 1)],
        "b.json holds no ranks": [recording("a.json", {"r1"}, 0), recording("b.json", set())],
        "said no run id": [recording("a.json", set(), 0), recording("b.json", {"r1"}, 1)],
        "several runs": [recording("a.json", {"r1", "r2"}, 0, 1), recording("b.json", {"r1"}, 2)],
        "rank 0 is in both a.json and b.json": [recording("a.json", {"r1"}, 0), recording("b.json", {"r1"}, 0)],
    }
    for message, given in refused.items():
        with pytest.raises(nodes.JobMismatch, match=message) as caught:
            nodes.join(given)
        assert "\n" not in str(caught.value)


@pytest.mark.unit
def test_a_joined_job_has_the_straggler_rule_of_one_node():
    ranks_ = [figures(0), RankFigures(1, 101, 20, 80, 25.0, 100.0, 0.04, 0.05, 0.04, 0.9, 0.036, device="cpu", local_rank=0, world_size=2)]
    joined = nodes.join([nodes.NodeRecording(path, "host", (r,), frozenset({"r"})) for path, r in zip(("a.json", "b.json"), ranks_)])
    assert joined["straggler"] == ranks.straggler(ranks_) and joined["straggler"]["rank"] == 1


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def recorded(tmp_path_factory) -> Path:
    """node0.json and node1.json (one run, a rank each), solo.json (another run: torchrun
    --standalone, one rank), plain.json (no workload); recorded side by side."""
    env = {**rank_job_env(), "STEPS": str(STEPS)}
    out = tmp_path_factory.mktemp("nodes")
    rdzv = ["--nnodes", "2", "--nproc_per_node", "1", "--rdzv-backend", "c10d", "--rdzv-endpoint", f"localhost:{free_port()}"]
    runs = {
        "node0": ["--run", "torchrun", "--", *rdzv, "--node-rank", "0", "--rdzv-id", "nodes-test", "ddp_train.py"],
        "node1": ["--run", "torchrun", "--", *rdzv, "--node-rank", "1", "--rdzv-id", "nodes-test", "ddp_train.py"],
        "solo": ["--run", "torchrun", "--", "--standalone", "--nproc_per_node", "1", "ddp_train.py"],
        "plain": ["--duration", "1"],
    }
    running = {
        name: subprocess.Popen(
            [sys.executable, "-m", "gputop", "record", "--quiet", "--out", str(out / f"{name}.json"), "--interval", "0.25", *run],
            cwd=SCRIPTS,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for name, run in runs.items()
    }
    deadline = time.monotonic() + 240
    for name, proc in running.items():
        _, err = proc.communicate(timeout=max(1, deadline - time.monotonic()))
        assert proc.returncode == 0, f"{name}: {err}"
    return out


def report(*args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "GPUTOP_FAKE_NVML"}
    return subprocess.run([sys.executable, "-m", "gputop", "report", *args], capture_output=True, text=True, env=env, timeout=120)


@pytest.mark.e2e
def test_two_nodes_traces_give_the_whole_jobs_ranks_and_straggler(recorded):
    done = report("--json", str(recorded / "node1.json"), str(recorded / "node0.json"))
    assert done.returncode == 0, done.stderr
    got = json.loads(done.stdout)
    w = got["workload"]
    assert w["run_id"] == "nodes-test" and w["missing_ranks"] == []
    assert [r["rank"] for r in w["ranks"]] == [0, 1]
    assert [(r["steps"], r["samples"]) for r in w["ranks"]] == [(STEPS, 4 * STEPS)] * 2
    assert sorted(r["node"] for r in w["ranks"]) == sorted(str(recorded / f"node{k}.json") for k in (0, 1))
    assert [len(n["ranks"]) for n in w["nodes"]] == [1, 1] and [t["path"] for t in got["traces"]] == [n["path"] for n in w["nodes"]]
    own = {}  # what each rank printed of itself, in its own node's output (recorded whole in the trace)
    for k in (0, 1):
        for m in re.finditer(r"rank (\d) steps (\d+) samples (\d+) wait ([\d.]+)", (recorded / f"node{k}.json").read_text()):
            own[int(m[1])] = (int(m[2]), int(m[3]), float(m[4]))
    assert sorted(own) == [0, 1]
    for r in w["ranks"]:
        assert own[r["rank"]][:2] == (r["steps"], r["samples"])
        assert abs(r["data_wait_share"] - own[r["rank"]][2]) < 0.05, (r, own)
    s = w["straggler"]
    assert s is not None and s["rank"] == 1 and s["reason"] == "data loader", s
    assert w["job_samples_per_s"] == pytest.approx(sum(r["samples_per_s"] for r in w["ranks"]))
    text = report(str(recorded / "node0.json"), str(recorded / "node1.json"))
    assert text.returncode == 0, text.stderr
    assert "Job run nodes-test: 2 ranks from 2 traces" in text.stdout
    assert re.search(r"^\s+1\s+\d+\s+cpu\s+30\s+120\s", text.stdout, re.M)
    assert "straggler   rank 1 (data loader)" in text.stdout


@pytest.mark.e2e
def test_a_single_nodes_trace_still_reports_on_its_own(recorded):
    done = report("--json", str(recorded / "node0.json"))
    assert done.returncode == 0, done.stderr
    w = json.loads(done.stdout)["workload"]
    assert len(w["ranks"]) == 1 and w["straggler"] is None and "run_id" not in w


@pytest.mark.e2e
@pytest.mark.parametrize(
    ("other", "message"),
    [("solo", "traces of different runs"), ("plain", "plain.json holds no ranks of a distributed job"), ("node0", "given twice")],
)
def test_traces_that_are_not_one_job_are_refused_in_one_line(recorded, other, message):
    done = report(str(recorded / "node0.json"), str(recorded / f"{other}.json"))
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr.count("\n") == 1 and message in done.stderr and "Traceback" not in done.stderr, done.stderr
