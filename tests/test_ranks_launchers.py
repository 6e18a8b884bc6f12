"""Every rank of a distributed job, launched the other ways users launch one, and in trouble:
Lightning ``strategy="ddp"`` (which launches this script again for rank 1) and ``"ddp_spawn"``,
``accelerate launch --multi_gpu --num_processes 2`` (gloo on this CPU), and torchrun jobs with a
rank that dies, an elastic restart, unequal step counts and a rank that hangs. Real children,
recorded by ``gputop record --run`` and read back by ``report``; the scripts (tests/rank_scripts/)
never import gputop and print what each rank measured of itself. Lightning and accelerate are not
in the test extra (hundreds of MB): their tests are skipped where they are not installed
(``pip install lightning accelerate``). Last passed 2026-12-07 with lightning 2.6.6, accelerate
1.16.0, torch 2.13.0+cpu."""

from __future__ import annotations

import importlib.util
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from gputop.commands import report
from gputop.trace import TraceError
from helpers import rank_job_env, rank_measurements

pytestmark = pytest.mark.xdist_group("ranks")  # heavy jobs: one worker runs them one after another

TESTS = Path(__file__).resolve().parent
SCRIPTS = TESTS / "rank_scripts"
BIN = os.path.dirname(sys.executable)


def has(module: str) -> bool:
    return importlib.util.find_spec(module) is not None


def environment(**extra: str) -> dict[str, str]:
    """A rank job's environment (helpers.rank_job_env: skips where torch or torchrun is missing) and ``extra``."""
    return {**rank_job_env(), **extra}


def record(out: Path, run: list[str], *, duration: float | None = None, quiet: bool = True, **extra: str) -> subprocess.Popen[str]:
    argv = [sys.executable, "-m", "gputop", "record", *(["--quiet"] if quiet else []), "--out", str(out), "--interval", "0.25"]
    if duration is not None:
        argv += ["--duration", str(duration)]
    return subprocess.Popen(
        [*argv, "--run", *run], cwd=SCRIPTS, env=environment(**extra), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


def finish(proc: subprocess.Popen[str], out: Path, timeout: float = 240) -> tuple[int, str, dict]:
    try:
        _, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.terminate()  # gputop record stops the job's process group as it ends: nothing left running
        proc.communicate(timeout=60)
        raise
    summary, _ = report.read(str(out))
    return proc.returncode, err, summary["workload"]


# ---- Lightning and accelerate ----------------------------------------------------------------

LAUNCHERS = {  # name: (module needed, --run target and arguments, extra environment)
    "lightning-ddp": ("lightning", ["lightning_train.py"], {"STRATEGY": "ddp"}),
    "lightning-ddp-rank0-slow": ("lightning", ["lightning_train.py"], {"STRATEGY": "ddp", "SLOW_RANK": "0"}),
    "lightning-ddp_spawn": ("lightning", ["lightning_train.py"], {"STRATEGY": "ddp_spawn"}),
    "accelerate": ("accelerate", ["accelerate", "--", "launch", "--multi_gpu", "--num_processes", "2", "accelerate_train.py"], {}),
}
STEPS = 30


@pytest.fixture(scope="module")
def launched(tmp_path_factory) -> dict[str, tuple[int, str, dict]]:
    """Each installed launcher's job, recorded (two at a time: the machine has few cores)."""
    pytest.importorskip("torch")
    out = tmp_path_factory.mktemp("launchers")
    todo = [name for name, (module, _, _) in LAUNCHERS.items() if has(module)]
    done: dict[str, tuple[int, str, dict]] = {}
    for pair in (todo[i : i + 2] for i in range(0, len(todo), 2)):
        running = {n: record(out / f"{n}.json", LAUNCHERS[n][1], STEPS=str(STEPS), **LAUNCHERS[n][2]) for n in pair}
        for name, proc in running.items():
            done[name] = finish(proc, out / f"{name}.json")
    return done


@pytest.mark.e2e
@pytest.mark.parametrize("name", list(LAUNCHERS))
def test_each_launchers_ranks_are_seen_with_their_own_steps_and_data_wait(launched, name):
    if not has(LAUNCHERS[name][0]):
        pytest.skip(f"{LAUNCHERS[name][0]} is not installed")
    rc, err, w = launched[name]
    assert rc == 0, err
    own = rank_measurements(w["output_tail"])
    assert sorted(own) == [0, 1], w["output_tail"]
    assert [r["rank"] for r in w["ranks"]] == [0, 1]
    assert [(r["steps"], r["samples"]) for r in w["ranks"]] == [(STEPS, 4 * STEPS)] * 2, (w["ranks"], own)
    for r in w["ranks"]:  # within a few points of what the rank measured itself
        assert abs(r["data_wait_share"] - own[r["rank"]][2]) < 0.05, (r, own)
        assert r["device"] == "cpu" and r["world_size"] == 2 and r["ended"] == "exited"
    slow = int(LAUNCHERS[name][2].get("SLOW_RANK", "1"))
    s = w["straggler"]
    assert s is not None and s["rank"] == slow and s["reason"] == "data loader", s
    # the launcher (accelerate's CLI, Lightning's rank 0 that launched rank 1 is a rank) and the
    # resource tracker are no worker: these ranks load in their main process
    assert w["job"]["workers"] == 0, w["job"]
    assert w["verdict"]["kind"] == "input_bound" and "num_workers=0" in w["verdict"]["evidence"], w["verdict"]
    if name == "accelerate":
        assert w["pid"] not in {r["pid"] for r in w["ranks"]}  # accelerate's CLI is no rank


# ---- torchrun in trouble ---------------------------------------------------------------------

TORCHRUN = ["torchrun", "--", "--standalone", "--nproc_per_node=2"]


@pytest.mark.e2e
def test_a_rank_that_dies_fails_the_job_and_the_report_says_which_and_how(tmp_path):
    rc, err, w = finish(record(tmp_path / "t.json", [*TORCHRUN, "trouble_train.py"], TROUBLE="raise"), tmp_path / "t.json")
    assert rc != 0 and "failed" in err
    assert [r["steps"] for r in w["ranks"]] == [4, 4]  # rank 1 raised at its 5th step; rank 0 stopped with it
    f = w["first_failure"]
    assert f is not None and f["rank"] == 1 and f["steps"] == 4 and f["exitcode"] == 1, f
    assert f["error"] == "RuntimeError: rank 1 fails at step 5"
    assert f["pid"] == w["ranks"][1]["pid"] and w["ranks"][1]["ended"] == "raised"
    assert w["exit_returncode"] != 0
    text = report.to_text(report.read(str(tmp_path / "t.json"))[0])
    assert f"failure     first at rank 1 (pid {f['pid']}, exit 1) after 4 steps: RuntimeError: rank 1 fails at step 5" in text


@pytest.mark.e2e
def test_an_elastic_restart_keeps_each_attempt_of_a_rank_apart(tmp_path):
    run = ["torchrun", "--", "--standalone", "--nproc_per_node=2", "--max-restarts", "1", "trouble_train.py"]
    # torch 2.13's restart on gloo fails at times here, gputop or not (seen in 3 of 5 plain runs): the
    # restarted rank 1 connects to the first attempt's rank 0, long gone ("failed to connect ...
    # Connection refused"), or both hang in init_process_group (seen for minutes, the process group's
    # timeout notwithstanding). Those two, and only they, skip.
    proc = record(tmp_path / "t.json", run, duration=90, quiet=False, TROUBLE="raise_once")
    out, err = proc.communicate(timeout=300)
    rc, w = proc.returncode, report.read(str(tmp_path / "t.json"))[0]["workload"]
    if any(len(r.get("attempts") or ()) < 2 or not r["attempts"][-1]["steps"] for r in w.get("ranks") or ()):
        if w.get("stopped_by") == "--duration":
            pytest.skip(
                "the restarted attempt never stepped within 90 s (torch's restart on gloo hangs in init_process_group here at times, gputop or not)"
            )
        if "failed to connect" in out + err:
            pytest.skip("the restarted rank connected to the first attempt's rank 0 (torch's restart on gloo here, gputop or not)")
    assert rc == 0, (err, w.get("first_failure"), w["output_tail"])
    own = {
        int(m[1]): (int(m[2]), int(m[3])) for m in re.finditer(r"rank (\d) attempt 1 pid (\d+) steps (\d+)", "\n".join(w["output_tail"]))
    }
    assert sorted(own) == [0, 1], w["output_tail"]
    for r in w["ranks"]:
        first, second = r["attempts"]
        assert second["pid"] == r["pid"] == own[r["rank"]][0] != first["pid"]  # same rank, new process
        assert (first["restart_count"], second["restart_count"], r["restart_count"]) == (0, 1, 1)
        assert (first["steps"], second["steps"], r["steps"]) == (4, 20, 20)  # the figures: the latest attempt's
        assert first["ended"] == "raised" and second["ended"] == "exited"
    assert w["first_failure"]["rank"] == 1 and w["first_failure"]["restart_count"] == 0
    assert w["steps"] == 20  # the job's steps: its latest attempt's, not 4 + 20


@pytest.mark.e2e
def test_ranks_with_unequal_step_counts_each_keep_their_own(tmp_path):
    rc, err, w = finish(record(tmp_path / "t.json", [*TORCHRUN, "trouble_train.py"], TROUBLE="unequal"), tmp_path / "t.json")
    assert rc == 0, err
    assert [(r["rank"], r["steps"]) for r in w["ranks"]] == [(0, 20), (1, 30)]
    assert all(r["ended"] == "exited" and len(r["attempts"]) == 1 for r in w["ranks"])


@pytest.mark.e2e
def test_a_rank_that_hangs_at_the_end_is_ended_by_a_stop_with_every_step_it_took(tmp_path):
    # the ranks train 20 steps, then hang (rank 1 sleeps an hour, rank 0 waits for it at the
    # barrier); the trace (written as it goes) must get every step while they hang, and a stop
    # (what --duration does too: the same path) must end them
    out = tmp_path / "t.json"
    proc = record(out, [*TORCHRUN, "trouble_train.py"], duration=600, TROUBLE="hang")  # (the bound: should pytest die)
    deadline = time.monotonic() + 240
    while (steps := [r["steps"] for r in _ranks_so_far(out)]) != [20, 20]:
        assert proc.poll() is None, f"record ended before the ranks hung: {proc.communicate()[1]}"
        if time.monotonic() > deadline:
            proc.terminate()
            proc.communicate(timeout=60)
            pytest.fail(f"the hung ranks' steps never all reached the trace: {steps}")
        time.sleep(0.5)
    t0 = time.monotonic()
    proc.send_signal(signal.SIGINT)
    rc, err, w = finish(proc, out, timeout=120)
    assert rc == 0, err
    assert time.monotonic() - t0 < 60  # the stop (and its grace), not the hang's hour
    assert [r["steps"] for r in w["ranks"]] == [20, 20]
    assert [r["ended"] for r in w["ranks"]] == [None, None]  # stopped by gputop: no exit of their own
    assert w["stopped_by"] == "SIGINT"
    assert not [r["pid"] for r in w["ranks"] if psutil.pid_exists(r["pid"])]  # the hung ranks ended too


def _ranks_so_far(out: Path) -> list[dict]:
    """The ranks of a recording still being written (each line is written whole)."""
    try:
        summary, _ = report.read(str(out))
    except (FileNotFoundError, TraceError):  # not yet, or not yet past its header
        return []
    return list(summary.get("workload", {}).get("ranks") or [])


# ---- identity --------------------------------------------------------------------------------

DOCUMENTED = {  # what gputop adds or changes in a rank's environment (README: Distributed training)
    "GPUTOP_AUTOSTEP",
    "GPUTOP_EVENTS_SOCK",
    "GPUTOP_EVENTS_FD",
    "PYTHONPATH",  # gputop/workload/inject first
    "PYTHONUNBUFFERED",  # =1 where unset, without the hooks (--no-instrument) only
}
PER_RUN = {"TORCHELASTIC_RUN_ID", "MASTER_PORT", "TORCHELASTIC_ERROR_FILE", "TMPDIR"}  # torchrun's own, new each run


@pytest.mark.e2e
def test_the_ranks_environment_differs_from_a_plain_run_only_by_documented_variables(tmp_path):
    plain_dir, gputop_dir = tmp_path / "plain", tmp_path / "gputop"
    plain_dir.mkdir(), gputop_dir.mkdir()
    env = environment(STEPS="3", TROUBLE="")
    subprocess.run(
        [os.path.join(BIN, "torchrun"), "--standalone", "--nproc_per_node=2", "trouble_train.py"],
        cwd=SCRIPTS,
        env={**env, "DUMP_ENV": str(plain_dir)},
        check=True,
        capture_output=True,
    )
    done = record(tmp_path / "t.json", [*TORCHRUN, "trouble_train.py"], STEPS="3", TROUBLE="", DUMP_ENV=str(gputop_dir))
    rc, err, w = finish(done, tmp_path / "t.json")
    assert rc == 0, err
    for rank in (0, 1):
        plain = json.loads((plain_dir / f"{rank}.json").read_text())
        seen = json.loads((gputop_dir / f"{rank}.json").read_text())
        changed = {k for k in plain.keys() | seen.keys() if plain.get(k) != seen.get(k)} - PER_RUN - {"DUMP_ENV"}
        assert changed <= DOCUMENTED, changed - DOCUMENTED
        assert seen["PYTHONPATH"].endswith(os.pathsep + plain["PYTHONPATH"])
    hellos = {h["rank"]: h for h in report_hellos(tmp_path / "t.json")}
    for rank, h in hellos.items():  # who each rank said it is
        assert h["world_size"] == 2 and h["local_rank"] == rank and h["group_rank"] == 0 and h["restart_count"] == 0
        assert h["run_id"] and h["ppid"] and h["device"] == "cpu" and h["pid"] in {r["pid"] for r in w["ranks"]}
    assert sorted(hellos) == [0, 1]


def report_hellos(path: Path) -> list[dict]:
    events = json.loads(path.read_text())
    return [e["args"] for e in events if e.get("name") == "hello" and e.get("ph") == "i"]


# ---- the model's attempts and failures, on made-up streams ------------------------------------


def stream(rank: int, pid: int, n: int, t0: int) -> list:
    from gputop.model import WorkloadStep

    return [
        WorkloadStep(step=i, samples=4, loss=None, wall_s=0.01, ts_ns=t0 + i * 10**7, source="auto", pid=pid, rank=rank)
        for i in range(1, n + 1)
    ]


@pytest.mark.unit
def test_a_restarted_ranks_attempts_are_kept_apart_and_its_figures_are_the_latest_ones():
    from gputop.workload import ranks

    steps = stream(0, 10, 4, 0) + stream(1, 11, 4, 0) + stream(0, 20, 20, 10**9) + stream(1, 21, 20, 10**9)
    hellos = {10: {"restart_count": 0}, 11: {"restart_count": 0}, 20: {"restart_count": 1}, 21: {"restart_count": 1}}
    byes = {11: {"error": "RuntimeError: boom", "ts_ns": 5 * 10**8}, 10: {"error": "RuntimeError: peer gone", "ts_ns": 6 * 10**8}, 20: {}}
    model = ranks.model(steps, hellos, byes)
    assert [(r.rank, r.pid, r.steps, r.restart_count) for r in model] == [(0, 20, 20, 1), (1, 21, 20, 1)]
    assert [(a.pid, a.steps, a.ended) for a in model[1].attempts] == [(11, 4, "raised"), (21, 20, None)]
    assert model[0].attempts[-1].ended == "exited"
    first = ranks.failed(model)
    assert first is not None and (first["rank"], first["pid"], first["steps"], first["error"]) == (1, 11, 4, "RuntimeError: boom")
    assert ranks.failed(ranks.model(stream(0, 1, 5, 0) + stream(1, 2, 5, 0), {}, {})) is None
