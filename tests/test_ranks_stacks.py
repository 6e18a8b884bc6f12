"""A rank that stops (gputop.workload.ranks.stalled, the events socket's requests, the hooks'
answering thread): the stall rule on made-up steps, a stacks request answered over a real socket,
and a real 2-rank torchrun job on gloo whose rank 1 hangs in its dataset, recorded until gputop
is told to stop: every rank's Python stacks, and torchrun's agent's, are in the trace and
``report`` prints them; and a hung single-process script (no ranks) answers the same way. The
scripts (tests/rank_scripts/ddp_train.py, tests/insight_scripts/hang.py) never import gputop."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import replace
from pathlib import Path

import pytest

from gputop.model import WorkloadStep
from gputop.workload import ranks
from gputop.workload.channel import EventSocket
from gputop.workload.pipes import EventLines
from helpers import rank_job_env, wait_for

pytestmark = pytest.mark.xdist_group("ranks_stacks")

SCRIPTS = Path(__file__).resolve().parent / "rank_scripts"


def steps(rank: int, n: int, wall_s: float, end_ns: int) -> list[WorkloadStep]:
    return [
        WorkloadStep(step=i, samples=4, loss=None, wall_s=wall_s, ts_ns=end_ns - int((n - i) * wall_s * 1e9), rank=rank, pid=100 + rank)
        for i in range(1, n + 1)
    ]


@pytest.mark.unit
def test_a_rank_is_stalled_after_its_typical_steps_and_never_before_the_floor():
    now = 1_000_000 * 10**9
    # rank 0 stepped 1 s ago at 0.5 s a step (10 steps: 5 s); rank 1 stepped 11 s ago at 20 ms (floor 10 s)
    job = steps(0, 20, 0.5, now - 10**9) + steps(1, 20, 0.02, now - 11 * 10**9)
    assert ranks.stalled(job, now) == {1: pytest.approx(11.0)}
    # rank 0, 5.5 s after its last step at 1 s a step: under 10 steps' time yet
    assert ranks.stalled(steps(0, 20, 1.0, now - int(5.5e9)), now) == {}
    assert ranks.stalled(steps(0, 20, 1.0, now - int(5.5e9)), now + int(5e9)) == {0: pytest.approx(10.5)}
    assert ranks.stalled([WorkloadStep(step=1, samples=4, loss=None, wall_s=0.1, ts_ns=now - 10**10)], now) == {}  # no rank


@pytest.mark.unit
def test_a_job_without_ranks_is_quiet_by_the_same_rule():
    now = 1_000_000 * 10**9
    alone = [replace(s, rank=None, pid=None) for s in steps(0, 20, 0.02, now - 11 * 10**9)]
    assert ranks.quiet_s(alone, now) == pytest.approx(11.0)
    assert ranks.quiet_s(alone, now - 2 * 10**9) is None  # 9 s: under the floor
    assert ranks.quiet_s([replace(s, rank=None) for s in steps(0, 20, 1.5, now - 14 * 10**9)], now) is None  # < 10 steps of 1.5 s
    assert ranks.quiet_s([], now) is None


def peer(path: str, answer: bool, go: threading.Event) -> threading.Thread:
    """A process's side, as the hooks do it: connect, read a request, answer on its reply path."""

    def run() -> None:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as conn:
            conn.connect(path)
            conn.sendall(b'{"event":"hello"}\n')
            line = b""
            while not line.endswith(b"\n"):
                chunk = conn.recv(4096)
                if not chunk:
                    return
                line += chunk
            request = json.loads(line)
            if answer:
                with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as out:
                    out.connect(request["reply"])
                    out.sendall(
                        json.dumps(
                            {"pid": os.getpid(), "rank": 0, "threads": [{"thread": "MainThread", "main": True, "stack": "x"}]}
                        ).encode()
                    )
            conn.sendall(b'{"event":"after"}\n')  # its events still read after the request ...
            go.wait(30)
            conn.sendall(b'{"event":"later"}\n')  # ... and once the reader has waited for more

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


@pytest.mark.unit
def test_a_stacks_request_gets_the_answers_that_come_within_its_time():
    read_fd, write_fd = os.pipe()
    os.close(write_fd)
    lines = EventLines(read_fd, None)
    channel = EventSocket()
    try:
        channel.attach(lines.follow)  # the events reader, as the launcher has it
        go = threading.Event()
        threads = [peer(channel.path, True, go), peer(channel.path, False, go)]
        got_lines: list[bytes] = []

        def read(n: int) -> bool:
            got_lines.extend(lines.take())
            return len(got_lines) >= n

        wait_for(lambda: read(2), 30, "both peers said hello")
        began = time.monotonic()
        got = channel.capture_stacks(timeout_s=1.0)
        assert time.monotonic() - began >= 1.0  # waited for the one that never answers, and no more than that
        assert [(a["rank"], a["threads"][0]["stack"]) for a in got] == [(0, "x")]
        wait_for(lambda: read(4), 30, "each peer's events after the request")
        time.sleep(0.2)  # the reader back in its read, with nothing to read
        go.set()
        wait_for(lambda: read(6), 10, "each peer's events later")
        assert sorted(got_lines) == [b'{"event":"after"}'] * 2 + [b'{"event":"hello"}'] * 2 + [b'{"event":"later"}'] * 2
    finally:
        channel.close()
    for thread in threads:
        thread.join(10)
    assert not os.path.exists(channel.dir)


def record_until_stalled(
    run: list[str], cwd: Path, env: dict[str, str], out: Path, ready: str, least: int
) -> subprocess.CompletedProcess[str]:
    """``gputop record --run RUN`` until the trace holds ``least`` lines with ``ready`` and then no
    new step for longer than the stall rule's floor (and a margin); then stopped with SIGINT."""
    argv = [sys.executable, "-m", "gputop", "record", "--quiet", "--out", str(out), "--interval", "0.25", "--run", *run]
    proc = subprocess.Popen(argv, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        wait_for(lambda: out.exists() and out.read_text().count(ready) >= least, 180, f"{least} x {ready}")
        seen = {"size": -1, "since": time.monotonic()}

        def quiet() -> bool:
            now, n = time.monotonic(), out.read_text().count('"ph":"X","cat":"gputop.workload","name":"step"')
            if n != seen["size"]:
                seen.update(size=n, since=now)
            return now - seen["since"] > ranks.STALL_MIN_S + 3

        wait_for(quiet, 120, "the job stalled", step=0.5)
        proc.send_signal(signal.SIGINT)
        stdout, stderr = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return subprocess.CompletedProcess(proc.args, proc.returncode, stdout, stderr)


def reported(out: Path) -> tuple[list[dict], str]:
    """The stacks ``report --json`` gives of a recording, and report's text."""
    done = subprocess.run([sys.executable, "-m", "gputop", "report", "--json", str(out)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    text = subprocess.run([sys.executable, "-m", "gputop", "report", "--no-chart", str(out)], capture_output=True, text=True, timeout=120)
    return json.loads(done.stdout)["workload"]["stacks"], text.stdout


@pytest.fixture(scope="module")
def hung(tmp_path_factory) -> tuple[Path, subprocess.CompletedProcess[str]]:
    """A 2-rank torchrun job whose rank 1 hangs in its dataset after 10 steps, recorded until the
    stall is sure (no new step for longer than the rule's floor), then stopped with SIGINT."""
    env = {**rank_job_env(), "STEPS": "100000", "HANG_AFTER": "10"}
    out = tmp_path_factory.mktemp("stacks") / "hang.json"
    run = ["torchrun", "--", "--standalone", "--nproc_per_node=2", "ddp_train.py"]
    return out, record_until_stalled(run, SCRIPTS, env, out, '"name":"hello"', 2)


@pytest.mark.e2e
def test_record_ends_a_stalled_job_with_every_ranks_python_stacks(hung):
    out, done = hung
    assert done.returncode in (0, 130), done.stderr
    # both ranks and torchrun's agent, the first process (hooked, it imports torch): 3 answers
    assert "no step for" in done.stderr and "3 processes' stacks are in the trace" in done.stderr, done.stderr
    answers, text = reported(out)
    stacks = {s["rank"]: s for s in answers}
    assert sorted(stacks, key=str) == [0, 1, None]
    agent = stacks.pop(None)
    assert agent["root"] is True and "torch/distributed/elastic" in agent["stacks"], agent
    assert not stacks[0]["root"] and not stacks[1]["root"]
    # the hung rank is in its dataset's read; the other waits for it in backward (gloo's all-reduce)
    assert "time.sleep(3600)" in stacks[1]["stacks"] and "__getitem__" in stacks[1]["stacks"]
    assert "backward" in stacks[0]["stacks"] and "__getitem__" not in stacks[0]["stacks"]
    assert all(s["stacks"].startswith("Thread MainThread (main):") and "gputop-requests" not in s["stacks"] for s in stacks.values())
    assert "each process's Python stacks:" in text and "time.sleep(3600)" in text
    assert f"first process (pid {agent['pid']})" in text


@pytest.fixture(scope="module")
def hung_alone(tmp_path_factory) -> tuple[Path, subprocess.CompletedProcess[str]]:
    """A single-process script (no ranks, one forked DataLoader worker) that steps 8 times then
    hangs, recorded until the stall is sure, then stopped with SIGINT."""
    env = {k: v for k, v in rank_job_env().items() if k != "STEPS"}
    out = tmp_path_factory.mktemp("alone") / "hang.json"
    return out, record_until_stalled(["hang.py"], SCRIPTS.parent / "insight_scripts", env, out, '"name":"step"', 8)


@pytest.mark.e2e
def test_record_ends_a_hung_single_process_job_with_its_python_stacks(hung_alone):
    out, done = hung_alone
    assert done.returncode in (0, 130), done.stderr
    # the script's own process only: its forked loader worker is never asked
    assert "no step for" in done.stderr and "1 processes' stacks are in the trace" in done.stderr, done.stderr
    (stack,), text = reported(out)
    assert stack["rank"] is None and stack["root"] is True and stack["stalled"].startswith("no step for"), stack
    assert stack["stacks"].startswith("Thread MainThread (main):") and "wait_for_the_other_job" in stack["stacks"]
    assert "time.sleep(3600)" in stack["stacks"] and "gputop-requests" not in stack["stacks"]
    assert f"first process (pid {stack['pid']})" in text and "wait_for_the_other_job" in text
