"""The live view of a real distributed job: gputop --run torchrun in tmux, 2 ranks on gloo on this
CPU (tests/rank_scripts/, scripts that never import gputop). The ranks table shows each rank with
its own steps, the straggler (rank 1's dataset is slow) and a rank that stops while the other
steps on to the next all-reduce and waits there."""

from __future__ import annotations

import os
import re
import shutil
import sys
from pathlib import Path

import pytest

from helpers import TMUX, Tmux, tmux_env

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
    env = tmux_env("H100_SXM")
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
