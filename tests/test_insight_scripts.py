"""Steps detected in unmodified training scripts (tests/insight_scripts/, which never import
gputop): each runs as a real child process with real PyTorch on this CPU, under the hooks that
gputop's launcher injects. All are launched at once by one fixture (importing torch is most of
their time), then each test reads its own final state. Exact step counts; verdict kinds only where
they are robust (a deliberately slow loader; a loop that never sleeps)."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from gputop.model import WorkloadState
from gputop.workload import Workload, inject

pytestmark = [pytest.mark.e2e, pytest.mark.xdist_group("insight_scripts")]  # its module fixture runs once, on one worker

pytest.importorskip("torch")

SCRIPTS = Path(__file__).parent / "insight_scripts"
RUNS = {  # name: (script, args, extra environment)
    "adamw": ("adamw.py", (), {}),
    "manual_sgd": ("manual_sgd.py", (), {}),
    "lbfgs": ("lbfgs.py", (), {}),
    "gan": ("gan.py", (), {}),
    "slow_loader": ("slow_loader.py", (), {}),
    "compute": ("compute.py", (), {}),
    "own_site": ("own_site.py", (), {"PYTHONPATH": str(SCRIPTS / "ownsite")}),
    "no_torch": ("no_torch.py", ("--lr", "0.1"), {}),
    "workers": ("workers.py", (), {}),
    "compiled": ("compiled.py", (), {}),
    "adamw_off": ("adamw.py", (), {}),  # --no-instrument
    "module": ("-m userpkg.train", ("--epochs", "1"), {}),  # python -m, from SCRIPTS
}


@pytest.fixture(scope="module")
def finished() -> dict[str, WorkloadState]:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", inject.ENV_TOKEN)}
    env["PYTHONWARNINGS"] = "ignore"  # torch without numpy says so on every import
    running = {}
    for name, (path, args, extra) in RUNS.items():
        target = path if path.startswith("-m") else str(SCRIPTS / path)
        wl = Workload(target, args, env={**env, **extra}, cwd=str(SCRIPTS), instrument=name != "adamw_off")
        wl.start()
        running[name] = wl
    states: dict[str, WorkloadState] = {}
    deadline = time.monotonic() + 240
    try:
        while len(states) < len(running):
            assert time.monotonic() < deadline, f"still running: {set(running) - set(states)}"
            for name, wl in running.items():
                if name not in states:
                    state = wl.poll()
                    if not state.running:
                        states[name] = state
            time.sleep(0.05)
    finally:
        for wl in running.values():
            wl.stop()
    return states


def test_a_plain_loop_with_adamw_is_seen_step_by_step(finished):
    s = finished["adamw"]
    assert s.status == "ok", s.output_tail
    assert s.step == 7 and [x.step for x in s.recent_steps] == list(range(1, 8))
    assert s.steps_source == "auto" and all(x.source == "auto" for x in s.recent_steps)
    assert s.device == "cpu"
    # no DataLoader: no batch size to see, and no data wait (n/a, not 0)
    assert all(x.samples is None and x.data_wait_s is None for x in s.recent_steps)
    assert s.samples_per_s is None and s.data_wait_share is None
    assert "trained 7 steps" in s.output_tail


def test_no_instrument_leaves_the_script_alone(finished):
    s = finished["adamw_off"]
    assert s.status == "ok" and s.step is None and not s.events and s.steps_source is None


def test_hand_written_updates_count_one_step_per_backward(finished):
    s = finished["manual_sgd"]
    assert s.status == "ok", s.output_tail
    assert s.step == 6 and len(s.recent_steps) == 6


def test_an_lbfgs_closure_is_one_step_however_often_it_runs_backward(finished):
    s = finished["lbfgs"]
    assert s.status == "ok", s.output_tail
    calls = int(next(line for line in s.output_tail if line.startswith("closure calls")).split()[-1])
    assert calls > 3  # backward ran many times inside each step
    assert s.step == 3


def test_two_optimizers_per_iteration_are_one_step(finished):
    s = finished["gan"]
    assert s.status == "ok", s.output_tail
    assert s.step == 5


def test_a_slow_dataloader_reads_input_bound(finished):
    s = finished["slow_loader"]
    assert s.status == "ok", s.output_tail
    assert s.step == 20
    assert [x.samples for x in s.recent_steps] == [4] * 20 and s.batch_size == 4
    assert all(x.data_wait_s is not None and x.data_wait_s > 0 for x in s.recent_steps)
    assert all(x.waits and len(x.waits) == 1 for x in s.recent_steps)  # one batch a step
    assert s.data_wait_share is not None and 0 < s.data_wait_share <= 1
    assert s.verdict is not None and s.verdict.kind == "input_bound", s.verdict
    assert "waits for the DataLoader" in s.verdict.evidence and "num_workers" in (s.verdict.suggestion or "")
    assert s.samples_per_s is not None


def test_a_compute_bound_loop_on_the_cpu_reads_cpu_compute(finished):
    s = finished["compute"]
    assert s.status == "ok", s.output_tail
    assert s.step == 200
    assert s.job is not None and s.job.main_thread_busy_pct is not None
    assert s.verdict is not None and s.verdict.kind == "cpu_compute", s.verdict


def test_the_scripts_own_sitecustomize_still_runs_and_paths_are_its_own(finished):
    s = finished["own_site"]
    assert s.status == "ok", s.output_tail
    assert "the user's sitecustomize ran" in s.output_tail
    # its own path, after gputop's inject directory (kept for the processes it starts: ranks)
    assert f"PYTHONPATH={inject.DIR}{os.pathsep}{SCRIPTS / 'ownsite'}" in s.output_tail
    assert "inject on sys.path: False" in s.output_tail
    assert s.step == 3


def test_a_script_without_torch_runs_as_it_would_alone(finished):
    s = finished["no_torch"]
    assert s.status == "failed" and s.returncode == 3  # its own exit code
    assert "argv ['--lr', '0.1'] main True" in s.output_tail
    assert "torch imported: False" in s.output_tail and "to stderr" in s.output_tail
    assert s.step is None and not s.events
    assert s.job is not None and s.job.processes and s.job.processes[0].role == "main"


def test_forked_workers_report_no_steps(finished):
    s = finished["workers"]
    assert s.status == "ok", s.output_tail
    assert any(line.endswith("exit 0") for line in s.output_tail)
    assert s.step == 4  # the main process's 2 + 2; the worker's 5 are not the job's steps


def test_a_compiled_model_is_seen_too(finished):
    s = finished["compiled"]
    if s.status != "ok":
        pytest.skip(f"torch.compile does not run on this machine: {s.error}")
    assert s.step == 4


def test_a_module_run_with_python_m_is_seen_too(finished):
    s = finished["module"]
    assert s.status == "ok", s.output_tail
    assert "run as __main__ spec userpkg.train argv ['--epochs', '1']" in s.output_tail
    assert s.name == "userpkg.train" and s.step == 3
