"""The bundled workloads, run for real as subprocesses on CPU at tiny sizes, and their events.

torch is imported only in the child processes (this test process must stay torch-free, like the
monitor). Each subprocess costs ~2-3 s, mostly importing torch.
"""

from __future__ import annotations

import importlib.util
import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
WORKLOADS = ROOT / "workloads"

# workloads/ is a folder of scripts beside the package, not on sys.path: load the helper by path.
_spec = importlib.util.spec_from_file_location("gputop_workload_events", WORKLOADS / "events.py")
events_module = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(events_module)
ENV_FD, ENV_FILE, EventWriter = events_module.ENV_FD, events_module.ENV_FILE, events_module.EventWriter

HAVE_TORCH = importlib.util.find_spec("torch") is not None
needs_torch = pytest.mark.skipif(not HAVE_TORCH, reason="torch is not installed (README: Workloads)")

TINY = {
    "mlp": ["--hidden", "32", "--layers", "1", "--batch-size", "4"],
    "cnn": ["--depth", "tiny", "--image-size", "16", "--batch-size", "4"],
    "transformer": ["--size", "tiny", "--batch-size", "2"],
    "matmul": ["--n", "64", "--batch-size", "2"],
}


def run_workload(name: str, *extra: str, env_extra: dict | None = None, **kw) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in (ENV_FD, ENV_FILE)}
    env.update(env_extra or {})
    cmd = [sys.executable, str(WORKLOADS / f"{name}.py"), "--device", "cpu", *TINY[name], *extra]
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120, **kw)


def read_events(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def check_events(events: list[dict], name: str, steps: int) -> dict:
    kinds = [e["event"] for e in events]
    assert kinds[-1] == "end", kinds
    assert "start" in kinds and kinds.count("start") == 1
    main = [e for e in events if e["event"] != "phase"]
    assert main[0]["event"] == "start", kinds  # only phases (setup) may come before start
    start, end = main[0], main[-1]
    assert start["name"] == name and start["device"] == "cpu" and start["pid"] > 0
    assert start["precision"] == "fp32" and start["batch_size"] >= 1
    assert start["flops_per_step"] > 0
    assert start["peak_flops"] > 0 and start["peak_flops_source"] == "measured"
    step_events = main[1:-1]
    assert [e["event"] for e in step_events] == ["step"] * steps
    assert [e["step"] for e in step_events] == list(range(1, steps + 1))
    for e in step_events:
        assert e["wall_s"] > 0 and e["samples"] >= 1
        if name == "matmul":
            assert e["loss"] is None
        else:
            assert isinstance(e["loss"], float) and math.isfinite(e["loss"])
    assert end == {**end, "status": "ok", "steps": steps}
    ts = [e["ts_ns"] for e in events]
    assert ts == sorted(ts) and abs(ts[0] / 1e9 - time.time()) < 300
    # phases are balanced begin/end pairs
    open_phases: list[str] = []
    for e in events:
        if e["event"] == "phase":
            if e["ph"] == "B":
                open_phases.append(e["name"])
            else:
                assert open_phases.pop() == e["name"]
    assert not open_phases
    return start


@pytest.mark.e2e
@needs_torch
@pytest.mark.parametrize("name", sorted(TINY))
def test_workload_writes_valid_events(name, tmp_path):
    path = tmp_path / "events.jsonl"
    proc = run_workload(name, "--steps", "3", env_extra={ENV_FILE: str(path)})
    assert proc.returncode == 0, proc.stderr
    assert "step 3/3" in proc.stderr and "samples" not in proc.stdout
    start = check_events(read_events(path), name, steps=3)
    if name == "mlp":  # 784 -> 32 -> 10, batch 4: forward 2*B*sum(in*out), backward twice that,
        fwd = 2 * 4 * (784 * 32 + 32 * 10)  # less the input gradient of the first layer
        assert start["flops_per_step"] == 3 * fwd - 2 * 4 * 784 * 32
    if name == "matmul":
        assert start["flops_per_step"] == 2 * 64**3 * 2


@pytest.mark.e2e
@needs_torch
def test_workload_without_event_env_still_runs():
    proc = run_workload("mlp", "--steps", "2")
    assert proc.returncode == 0, proc.stderr
    assert "step 2/2" in proc.stderr and "done: 2 steps" in proc.stderr


@pytest.mark.e2e
@needs_torch
def test_workload_survives_reader_going_away():
    """The reader's end of the pipe is closed before the workload writes: it must finish fine."""
    r, w = os.pipe()
    os.close(r)
    try:
        proc = run_workload("matmul", "--steps", "3", env_extra={ENV_FD: str(w)}, pass_fds=(w,))
    finally:
        os.close(w)
    assert proc.returncode == 0, proc.stderr
    assert "step 3/3" in proc.stderr


@pytest.mark.e2e
@needs_torch
def test_workload_events_through_a_pipe_and_sigterm(tmp_path):
    """As gputop runs it: events on an inherited pipe fd; stopped by SIGTERM -> end status error."""
    r, w = os.pipe()
    env = {k: v for k, v in os.environ.items() if k not in (ENV_FD, ENV_FILE)}
    env[ENV_FD] = str(w)
    cmd = [sys.executable, str(WORKLOADS / "matmul.py"), "--device", "cpu", "--n", "64", "--steps", "1000000", "--quiet"]
    proc = subprocess.Popen(cmd, env=env, pass_fds=(w,), stderr=subprocess.PIPE, text=True)
    os.close(w)
    lines = []
    with os.fdopen(r) as reader:
        for line in reader:
            lines.append(json.loads(line))
            if lines[-1]["event"] == "step" and lines[-1]["step"] >= 5:
                proc.send_signal(signal.SIGTERM)
                break
        lines.extend(json.loads(line) for line in reader)  # until the child closes the pipe
    assert proc.wait(timeout=30) == 128 + signal.SIGTERM, proc.stderr.read()
    proc.stderr.close()
    end = lines[-1]
    assert end["event"] == "end" and end["status"] == "error" and end["error"] == "terminated"
    assert end["steps"] >= 5


@pytest.mark.e2e
@needs_torch
@pytest.mark.parametrize("args", [["--steps", "0"], ["--depth", "34"], ["--device", "tpu"]])
def test_bad_arguments_exit_nonzero_with_one_line(args):
    proc = subprocess.run([sys.executable, str(WORKLOADS / "cnn.py"), *args], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    errors = [line for line in proc.stderr.splitlines() if "error:" in line]
    assert len(errors) == 1 and errors[0].startswith("cnn.py: error:")


@pytest.mark.e2e
@needs_torch
def test_peak_table_lookup():
    code = (
        "import json, common;"
        "names = ['NVIDIA H100 80GB HBM3', 'NVIDIA H100 PCIe', 'NVIDIA H200', 'NVIDIA A100-SXM4-80GB',"
        " 'NVIDIA A10', 'NVIDIA L4', 'NVIDIA L40S', 'NVIDIA GeForce RTX 4090', 'NVIDIA GeForce GTX 1080'];"
        "print(json.dumps({n: common.table_peak_flops(n, 'bf16') for n in names}"
        " | {'fp32': common.table_peak_flops('NVIDIA H100 80GB HBM3', 'fp32')}))"
    )
    proc = subprocess.run([sys.executable, "-c", code], cwd=WORKLOADS, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    peaks = json.loads(proc.stdout)
    assert peaks == {
        "NVIDIA H100 80GB HBM3": 989.5e12,
        "NVIDIA H100 PCIe": 756e12,
        "NVIDIA H200": 989.5e12,
        "NVIDIA A100-SXM4-80GB": 312e12,
        "NVIDIA A10": 125e12,
        "NVIDIA L4": 121e12,
        "NVIDIA L40S": 362e12,
        "NVIDIA GeForce RTX 4090": 165.2e12,
        "NVIDIA GeForce GTX 1080": None,
        "fp32": 67e12,
    }


# The event helper itself (no torch) ---------------------------------------------------------


@pytest.mark.unit
def test_events_disabled_without_env():
    ev = EventWriter.from_env({})
    assert not ev.enabled
    assert ev.step(step=1, samples=1, loss=1.0, wall_s=0.1) is False
    with ev.phase("x"):
        pass
    ev.end(steps=0)


@pytest.mark.unit
def test_events_to_file_are_strict_json_lines(tmp_path):
    path = tmp_path / "ev.jsonl"
    ev = EventWriter.from_env({ENV_FILE: str(path)})
    assert ev.enabled
    ev.start(name="t", device="cpu")
    ev.step(step=1, samples=8, loss=float("nan"), wall_s=0.5)
    with ev.phase("eval"):
        pass
    ev.end(steps=1)
    ev.close()
    lines = path.read_text().splitlines()
    events = [json.loads(line, parse_constant=lambda c: pytest.fail(f"non-strict JSON {c}")) for line in lines]
    assert [e["event"] for e in events] == ["start", "step", "phase", "phase", "end"]
    assert events[0]["pid"] == os.getpid() and isinstance(events[0]["ts_ns"], int)
    assert events[1]["loss"] is None  # NaN is not JSON
    assert [e["ph"] for e in events[2:4]] == ["B", "E"]
    assert events[4] == {**events[4], "steps": 1, "status": "ok"}


@pytest.mark.unit
def test_events_closed_pipe_does_not_raise():
    r, w = os.pipe()
    os.close(r)
    ev = EventWriter(w)
    try:
        assert ev.step(step=1, samples=1, loss=0.0, wall_s=0.1) is False  # EPIPE, not an exception
        assert not ev.enabled
        assert ev.end(steps=1) is False
    finally:
        os.close(w)


@pytest.mark.unit
def test_events_bad_fd_or_unwritable_file_is_a_no_op(tmp_path):
    assert not EventWriter.from_env({ENV_FD: "not-a-number"}).enabled
    ev = EventWriter.from_env({ENV_FD: "987654"})  # not an open descriptor
    assert ev.emit("step", step=1) is False and not ev.enabled
    assert not EventWriter.from_env({ENV_FILE: str(tmp_path / "missing-dir" / "ev.jsonl")}).enabled
