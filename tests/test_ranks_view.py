"""The views of a real distributed job, 2 ranks on gloo on this CPU (tests/rank_scripts/, scripts
that never import gputop): gputop --run torchrun in tmux, whose ranks table shows each rank with its
own steps, the straggler (rank 1's dataset is slow) and a rank that stops while the other steps on
to the next all-reduce and waits there; a recording's track per rank (named and sorted for
Perfetto) and its replay, which shows the ranks at the cursor."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from gputop.commands import replay
from gputop.trace import load
from gputop.tui.app import GputopApp
from gputop.view.timeline import WorkloadTimeline
from helpers import TESTS, TMUX, Tmux, tmux_env
from tui_fixtures import screen_text

pytestmark = [pytest.mark.e2e, pytest.mark.xdist_group("ranks-view")]

SCRIPTS = Path(__file__).resolve().parent / "rank_scripts"
BIN = os.path.dirname(sys.executable)
JOB_TIMEOUT_S = 180.0  # torch imported by two ranks, then the steps, on a busy 2-core machine


@pytest.fixture
def term():
    pytest.importorskip("torch")
    if TMUX is None:
        pytest.skip("tmux is not installed")
    if shutil.which("torchrun", path=BIN) is None:
        pytest.skip("torchrun is not installed beside this Python")
    # pytest-xdist's workers have COLUMNS=80 and LINES=24, which would size the view (not the pane)
    env = {k: v for k, v in tmux_env("H100_SXM").items() if k not in ("COLUMNS", "LINES")}
    env.update(PATH=BIN + os.pathsep + env.get("PATH", ""), PYTHONWARNINGS="ignore")
    t = Tmux(env, size=(160, 50))
    yield t
    t.tmux("send-keys", "-t", "t", "q")  # stops the job (SIGTERM to its group) and quits
    t.kill()


def rank_row(screen: str, rank: int) -> list[str]:
    """The ranks table's row of ``rank``, split into its cells."""
    for line in screen.splitlines():
        cells = line.strip("│ ").split()
        if len(cells) >= 10 and cells[0] == str(rank) and cells[-1] in ("stepping", "waiting", "stalled", "exited"):
            return cells
    return []


def launch(term: Tmux, env: str, script: str) -> None:
    term.type(f"cd {SCRIPTS} && {env} {sys.executable} -m gputop --run torchrun -- --standalone --nproc_per_node=2 {script}")


def test_the_ranks_table_shows_each_rank_on_the_cpu_and_the_slow_rank_as_straggler(term):
    launch(term, "STEPS=100000 SLOW_S=0.004", "ddp_train.py")

    def ready(screen: str) -> bool:
        rows = [rank_row(screen, r) for r in (0, 1)]
        return all(rows) and all(int(r[3].replace(",", "")) >= 50 for r in rows) and "straggler rank 1 (data loader)" in screen

    screen = term.wait_for(ready, "both ranks stepping and rank 1 named the straggler", JOB_TIMEOUT_S)
    assert "─ ranks ─" in screen
    for rank in (0, 1):
        cells = rank_row(screen, rank)
        # rank, pid, GPU (n/a: on the CPU), steps, steps/s, step p50 (2 cells), data wait (2), SM %, state
        assert cells[2] == "n/a" and cells[-2] == "n/a" and cells[-1] == "stepping", cells
        assert int(cells[1]) > 0 and float(cells[4]) > 0
    wait0, wait1 = (int(rank_row(screen, r)[7]) for r in (0, 1))
    assert wait1 > 50 > wait0  # rank 1 waits for its batches, rank 0 for rank 1 (not for data)
    assert re.search(r"straggler rank 1 \(data loader\): rank 1 waits \d+ % of its step for data", screen)


def test_a_rank_that_stops_is_flagged_and_the_rank_that_waits_for_it_said_so(term):
    launch(term, "STALL_S=120 STALL_AT=10", "stall_train.py")
    screen = term.wait_for(
        lambda s: "rank 0 waits" in s and rank_row(s, 0)[-1:] == ["waiting"], "rank 1 flagged, rank 0 waiting", JOB_TIMEOUT_S
    )
    flag = re.search(r"⚠ rank 1: no step for (\d+) s; rank 0 waits", screen)
    assert flag is not None and int(flag[1]) >= 10, screen
    assert rank_row(screen, 1)[-1] == "stalled" and rank_row(screen, 1)[2] == "n/a"
    # rank 0 stepped on to the next all-reduce (step 200) before it waited; rank 1 stopped near step 10
    assert int(rank_row(screen, 0)[3].replace(",", "")) > int(rank_row(screen, 1)[3].replace(",", ""))
    # w: where each rank is now, from its own Python stacks: rank 1 in its dataset's hang
    term.tmux("send-keys", "-t", "t", "w")
    stacks = term.wait_for(lambda s: "Python stacks of the job's" in s and "time.sleep(STALL_S)" in s, "rank 1's stack", 60)
    assert re.search(r"rank 1 \(pid \d+\)", stacks) and "__getitem__" in stacks, stacks


# ---- a recording of a 2-rank job: its tracks and its replay -----------------------------------

RECORDED_STEPS = 40


@pytest.fixture(scope="module")
def recording(tmp_path_factory) -> Path:
    pytest.importorskip("torch")
    if shutil.which("torchrun", path=BIN) is None:
        pytest.skip("torchrun is not installed beside this Python")
    out = tmp_path_factory.mktemp("ranks-view") / "ddp.json"
    env = {k: v for k, v in os.environ.items() if not k.startswith("GPUTOP_AUTOSTEP")}
    env.update(
        GPUTOP_FAKE_NVML="H100_SXM",
        PYTHONWARNINGS="ignore",
        PATH=BIN + os.pathsep + env.get("PATH", ""),
        PYTHONPATH=os.pathsep.join([str(TESTS / "sitecustom"), str(TESTS)]),
        STEPS=str(RECORDED_STEPS),
        SLOW_S="0.004",
    )
    argv = [sys.executable, "-m", "gputop", "record", "--quiet", "--out", str(out), "--interval", "0.25", "--run", "torchrun", "--"]
    argv += ["--standalone", "--nproc_per_node=2", "ddp_train.py"]
    done = subprocess.run(argv, cwd=SCRIPTS, env=env, capture_output=True, text=True, timeout=JOB_TIMEOUT_S)
    assert done.returncode == 0, done.stderr
    return out


def test_each_rank_has_a_track_of_its_own_named_and_sorted_for_perfetto(recording):
    events = json.loads(recording.read_text())  # a finished recording is a strict JSON array
    pid = next(e for e in events if e.get("name") == "gputop")["args"]["workload"]["pid"]
    on_tid: dict[int, set[tuple[int, int]]] = {}
    for e in events:
        if e.get("ph") == "X" and e.get("name") == "step" and e.get("pid") == pid:
            on_tid.setdefault(e["tid"], set()).add((e["args"]["rank"], e["args"]["pid"]))
    assert len(on_tid) == 2 and all(len(who) == 1 for who in on_tid.values()), on_tid  # a thread per rank
    meta = [e for e in events if e.get("ph") == "M" and e.get("pid") == pid]
    names = {e["tid"]: e["args"]["name"] for e in meta if e["name"] == "thread_name"}
    order = {e["tid"]: e["args"]["sort_index"] for e in meta if e["name"] == "thread_sort_index"}
    for tid, who in on_tid.items():
        ((rank, rank_pid),) = who
        assert rank_pid != pid  # a rank, not torchrun's agent
        assert names[tid] == f"rank {rank} · pid {rank_pid} · cpu"
        assert order[tid] == 100 + rank
    # the sort indices stack the ranks in their order; every metadata event has no time stamp
    assert sorted(on_tid, key=order.__getitem__) == sorted(on_tid, key=lambda t: min(on_tid[t])[0])
    assert not [e for e in meta if "ts" in e]


async def test_the_replay_shows_the_ranks_at_the_cursor_not_their_steps_mixed(recording):
    steps = load(str(recording)).workload_steps()
    mine = {r: [s for s in steps if s.rank == r] for r in (0, 1)}
    assert [len(mine[0]), len(mine[1])] == [RECORDED_STEPS] * 2
    feed = replay.open_feed(str(recording), playing=False)
    try:
        assert feed.index is not None and feed.index.wait(60) and isinstance(feed.workload, WorkloadTimeline)
        feed.workload.poll()  # takes in the events the index has read
        cursor = mine[0][19].ts_ns  # rank 0's 20th step
        state = feed.workload.at(cursor)
        assert {r.rank: r.steps for r in state.ranks} == {r: sum(s.ts_ns <= cursor for s in mine[r]) for r in (0, 1)}
        assert {r.pid for r in state.ranks} == {mine[0][0].pid, mine[1][0].pid}
        assert len({s.rank for s in state.recent_steps}) == 1  # the job's series: one rank's steps
        assert state.rank_stall is None and {r.state for r in state.ranks} == {"stepping"}
        end = feed.workload.at(max(s.ts_ns for s in steps) + 60 * 10**9)
        assert [(r.rank, r.steps, r.state) for r in end.ranks] == [(0, RECORDED_STEPS, "exited"), (1, RECORDED_STEPS, "exited")]
        assert end.straggler is not None and end.straggler.rank == 1 and end.straggler.reason == "data loader"
        app = GputopApp(feed)
        async with app.run_test(size=(160, 50)) as pilot:
            await pilot.pause()
            await pilot.press("end")
            await pilot.pause()
            text = screen_text(app)
            assert "─ ranks ─" in text and "straggler rank 1 (data loader)" in text, text
    finally:
        feed.close()
