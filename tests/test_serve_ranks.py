"""`gputop serve --run`: a launched job's ranks exported beside the node, scraped by a real
Prometheus and read back by `gputop cluster`. One real job: torchrun, 2 ranks of DDP on gloo on
this CPU (tests/rank_scripts/ddp_train.py, which never imports gputop; rank 1's dataset slow on
purpose), each rank printing its own steps, samples and data wait. Around it, cheap children: a
job that fails (the exit status, serve's default linger), and bad input."""

from __future__ import annotations

import json
import queue
import re
import signal
import subprocess
import sys
import threading
import urllib.request
from pathlib import Path

import pytest

from cluster_fixtures import APT, PROMETHEUS, Prometheus, free_port, stop_process
from helpers import fake_env, rank_job_env, rank_measurements, wait_for

pytestmark = pytest.mark.xdist_group("serve_ranks")  # its module fixture runs the job once, on one worker

SCRIPTS = Path(__file__).resolve().parent / "rank_scripts"
STEPS = 30


class ServedJob:
    """``gputop serve ... --run ...`` as a child; its stderr lines as they come."""

    def __init__(self, args: list[str], env: dict[str, str], cwd: Path) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "gputop", "serve", *args],
            cwd=cwd,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.stderr: list[str] = []
        self.stdout: list[str] = []
        self._lines: queue.Queue[str | None] = queue.Queue()
        threading.Thread(target=self._read, args=(self.proc.stderr, self.stderr, True), daemon=True).start()
        threading.Thread(target=self._read, args=(self.proc.stdout, self.stdout, False), daemon=True).start()

    def _read(self, stream, into: list[str], signal_lines: bool) -> None:
        for line in stream:
            into.append(line)
        if signal_lines:
            self._lines.put(None)

    def said(self, words: str) -> bool:
        assert self.proc.poll() is None or any(words in line for line in self.stderr), "".join(self.stderr)
        return any(words in line for line in self.stderr)

    def stop(self) -> int:
        stop_process(self.proc, timeout=30)
        return self.proc.returncode


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """The job under serve (its final figures served until the test is done), and a Prometheus
    scraping it every second."""
    if PROMETHEUS is None:
        pytest.skip(f"prometheus not installed ({APT})")
    env = {**rank_job_env(), "STEPS": str(STEPS)}
    port = free_port()
    prom = Prometheus(tmp_path_factory.mktemp("prom"), {"train": [f"127.0.0.1:{port}"]}, scrape_s=1.0)
    job = None
    try:
        args = ["--port", str(port), "--interval", "0.5", "--linger", "600", "--run", "torchrun"]
        job = ServedJob([*args, "--", "--standalone", "--nproc_per_node=2", "ddp_train.py"], env, SCRIPTS)
        wait_for(lambda: job.said("the job has ended"), 180, "the job under gputop serve did not end")
        final = 'gputop_workload_status{status="ok"} == 1'
        wait_for(lambda: prom.query(final), 60, "Prometheus never scraped the job's final figures")
        yield job, prom
    finally:
        if job is not None:
            job.stop()
        prom.stop()


def by_rank(prom: Prometheus, expr: str) -> dict[int, float]:
    return {int(s["metric"]["rank"]): float(s["value"][1]) for s in prom.query(expr)}


@pytest.mark.e2e
def test_serve_run_exports_every_ranks_steps_and_the_straggler_and_cluster_names_it(served):
    job, prom = served
    own = rank_measurements(job.stdout)  # the job's output, echoed as record echoes it
    assert sorted(own) == [0, 1], "".join(job.stdout + job.stderr)
    # exact per-rank counts, as each rank counted itself
    assert by_rank(prom, "gputop_workload_steps_total") == {0: STEPS, 1: STEPS}
    assert by_rank(prom, "gputop_workload_samples_total") == {0: 4 * STEPS, 1: 4 * STEPS}
    assert all(own[r][:2] == (STEPS, 4 * STEPS) for r in (0, 1)), own
    waits = by_rank(prom, "gputop_workload_data_wait_ratio")
    assert all(abs(waits[r] - own[r][2]) < 0.05 for r in (0, 1)), (waits, own)
    assert waits[1] > 0.5 > waits[0]
    assert all(v > 0 for v in by_rank(prom, "gputop_workload_step_p50_seconds").values())
    # the straggler, its reason; every rank exited; one run label, torchrun's run id, on every series
    (straggler,) = prom.query("gputop_workload_straggler")
    assert (straggler["metric"]["rank"], straggler["metric"]["reason"]) == ("1", "data loader")
    assert by_rank(prom, 'gputop_workload_rank_state{state="exited"} == 1') == {0: 1.0, 1: 1.0}
    runs = {s["metric"]["run"] for s in prom.query('{__name__=~"gputop_workload_.*"}')}
    assert len(runs) == 1 and re.fullmatch(r"[0-9a-f-]{36}", runs.pop()), runs  # torchrun --standalone's uuid
    assert not prom.query('{__name__=~"gputop_workload_.*", pid!=""}')  # no pid label
    # cluster reads it back: per job, the straggler with its reason, each rank's counts
    out = subprocess.run(
        [sys.executable, "-m", "gputop", "cluster", "--prometheus", prom.url, "--once", "--json"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    (j,) = json.loads(out.stdout)["jobs"]
    assert j["run"] == straggler["metric"]["run"] and j["workload"] == "torchrun" and j["status"] == "ok"
    assert j["stragglers"] == [{"rank": 1, "reason": "data loader", "host": "127.0.0.1"}]
    assert [(r["rank"], r["steps"], r["samples"], r["state"]) for r in j["ranks"]] == [
        (0, STEPS, 4 * STEPS, "exited"),
        (1, STEPS, 4 * STEPS, "exited"),
    ]
    text = subprocess.run(
        [sys.executable, "-m", "gputop", "cluster", "--prometheus", prom.url, "--once"], capture_output=True, text=True, timeout=60
    )
    assert "straggler rank 1 (data loader) on 127.0.0.1" in text.stdout, text.stdout + text.stderr
    # a stop signal while it lingers: serve ends, saying how the job had ended
    assert job.stop() == 0
    assert any("workload torchrun finished (30 steps)" in line for line in job.stderr), job.stderr


@pytest.mark.e2e
def test_a_failed_job_is_served_until_scraped_then_serve_exits_1(tmp_path):
    script = tmp_path / "fails.py"
    script.write_text("import sys\nprint('about to fail', flush=True)\nsys.exit(3)\n")
    job = ServedJob(["--port", "0", "--interval", "0.2", "--run", str(script)], fake_env("H100_SXM"), tmp_path)
    try:
        wait_for(lambda: job.said("the job has ended"), 60, "serve did not see the job end")
        assert job.proc.poll() is None  # it waits for a scrape of the final figures
        url = next(line.split()[2] for line in job.stderr if "://" in line)
        with urllib.request.urlopen(url, timeout=10) as resp:
            text = resp.read().decode()
        assert re.search(r'gputop_workload_status\{.*status="failed"\} 1\.0', text), text
        assert re.search(r'gputop_workload_info\{.*run="fails\.py-\d+".*\} 1\.0', text)  # no run id: NAME-PID
        assert "gputop_workload_steps_total" not in text and "gputop_workload_straggler" not in text  # no ranks: no series
        assert job.proc.wait(timeout=30) == 1
    finally:
        job.stop()
    assert "about to fail\n" in job.stdout
    assert "workload fails.py failed (no steps reported): exit code 3" in job.stderr[-1], job.stderr


@pytest.mark.e2e
def test_a_stop_signal_stops_the_running_job_and_its_group_and_serve_says_so(tmp_path):
    script = tmp_path / "forever.py"
    pidfile = tmp_path / "child"
    script.write_text(
        "import os, subprocess, sys, time\n"
        f"child = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(600)'])\n"
        f"open({str(pidfile)!r}, 'w').write(str(child.pid))\n"
        "print('started', flush=True)\n"
        "time.sleep(600)\n"
    )
    job = ServedJob(["--port", "0", "--interval", "0.2", "--run", str(script)], fake_env("H100_SXM"), tmp_path)
    try:
        wait_for(lambda: "started\n" in job.stdout and pidfile.exists() and pidfile.read_text(), 60, "the job did not start")
        job.proc.send_signal(signal.SIGTERM)
        assert job.proc.wait(timeout=60) == 0  # stopped as asked: not a failure of serve's
    finally:
        job.stop()
    wait_for(lambda: any("stopped by gputop on SIGTERM" in line for line in job.stderr), 10, "no line on how the job ended")
    assert "workload forever.py stopped by gputop on SIGTERM (no steps reported)" in "".join(job.stderr), job.stderr
    child = int(pidfile.read_text())
    wait_for(
        lambda: not Path(f"/proc/{child}").exists() or "Z" in Path(f"/proc/{child}/stat").read_text().split()[2],
        10,
        "the job's child outlived serve",
    )


@pytest.mark.e2e
@pytest.mark.parametrize(
    "args, words",
    [
        (["--run", "nosuch.py"], "nosuch.py"),
        (["--linger", "5"], "--linger goes with --run"),
        (["--", "--steps", "3"], "use them with --run"),
        (["--run", "cnn", "--linger", "-1"], "--linger"),
    ],
)
def test_serve_run_bad_input_is_one_line_and_exit_2(args, words):
    out = subprocess.run(
        [sys.executable, "-m", "gputop", "serve", "--port", "0", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env=fake_env("H100_SXM"),
        stdin=subprocess.DEVNULL,
    )
    assert out.returncode == 2, (out.returncode, out.stderr)
    assert out.stderr.count("\n") == 1 and "Traceback" not in out.stderr and words in out.stderr, out.stderr
