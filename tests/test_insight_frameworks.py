"""Steps detected in training frameworks' own loops, unmodified: a Lightning ``Trainer.fit`` and a
Hugging Face ``Trainer`` with gradient accumulation (one step per optimizer step, not per
micro-batch). Real child processes, real PyTorch on this CPU. The frameworks are not in the test
extra (hundreds of MB), so each test is skipped where its framework is not installed; to run them:
``pip install lightning transformers accelerate``. Last passed 2026-12-02 with lightning 2.6.6,
transformers 5.24.0, accelerate 1.15.0: 120 of 120 and 32 of 32 steps.
"""

from __future__ import annotations

import os
import re
import time
from pathlib import Path

import pytest

from gputop.model import WorkloadState
from gputop.workload import Workload, inject

pytestmark = pytest.mark.unit

SCRIPTS = Path(__file__).parent / "insight_scripts"


def _run(script: str, *args: str) -> WorkloadState:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", inject.ENV_TOKEN)}
    env["PYTHONWARNINGS"] = "ignore"
    wl = Workload(str(SCRIPTS / script), args, env=env, cwd=str(SCRIPTS))
    wl.start()
    deadline = time.monotonic() + 300
    try:
        while (state := wl.poll()).running:
            assert time.monotonic() < deadline, "the script did not finish in 300 s"
            time.sleep(0.05)
        return state
    finally:
        wl.stop()


def _framework_steps(state: WorkloadState) -> int:
    line = next(x for x in reversed(state.output_tail) if x.startswith("global_step"))
    return int(re.search(r"\d+", line).group())


def test_a_lightning_fit_is_one_step_per_optimizer_step():
    pytest.importorskip("lightning")
    state = _run("lightning_fit.py")
    assert state.status == "ok", state.output_tail
    assert _framework_steps(state) == 120
    assert state.step == 120 and state.steps_source == "auto"
    assert state.batch_size == 16


def test_a_hugging_face_trainer_with_gradient_accumulation_counts_optimizer_steps(tmp_path):
    pytest.importorskip("transformers")
    pytest.importorskip("accelerate")
    state = _run("hf_trainer.py", str(tmp_path / "out"))
    assert state.status == "ok", state.output_tail
    assert _framework_steps(state) == 32  # 256 samples x 2 epochs / (8 per batch x 2 accumulated)
    assert state.step == 32 and state.steps_source == "auto"
    samples = [s.samples for s in state.recent_steps]
    # both micro-batches of each step; accelerate's loader fetches one batch ahead to know which
    # is last, so each epoch's first step is timed with three fetches and its last with one
    assert samples == ([24] + [16] * 14 + [8]) * 2 and sum(samples) == 512
