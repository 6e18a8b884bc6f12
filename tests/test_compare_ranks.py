"""``gputop compare`` on a distributed job's launcher: a real 2-rank torchrun job (gloo on this CPU,
the GPUs hidden on the CPU run) whose script picks its backend the usual way, measured as the sum
of its ranks' rates against what each rank measured of itself; a script that asks for nccl
outright, or a launcher without a script to read, refused in one line. The scripts never import
gputop."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from helpers import rank_job_env

pytestmark = pytest.mark.xdist_group("compare_ranks")

SCRIPTS = Path(__file__).resolve().parent / "rank_scripts"
STEPS = 40


def compare(*args: str, cwd: Path = SCRIPTS, **extra: str) -> subprocess.CompletedProcess[str]:
    env = {**rank_job_env(), **extra}
    return subprocess.run([sys.executable, "-m", "gputop", "compare", *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=300)


@pytest.mark.e2e
def test_a_torchrun_job_is_compared_as_the_sum_of_its_ranks(tmp_path):
    done = compare(
        "--json", "torchrun", "--", "--standalone", "--nproc_per_node=2", "ddp_train.py", STEPS=str(STEPS), RATE_DIR=str(tmp_path)
    )
    assert done.returncode == 0, done.stderr
    got = json.loads(done.stdout)
    cpu = got["cpu"]
    assert cpu["status"] == "ok" and cpu["device"] == "cpu" and cpu["ranks"] == 2
    assert cpu["steps_measured"] == 2 * (STEPS - got["warmup"])  # each rank's steps after its own warm-up
    # what each rank measured itself, a line per run: the CPU run's first
    own = [float((tmp_path / f"rank{r}").read_text().split()[0]) for r in (0, 1)]
    assert cpu["samples_per_s"] == pytest.approx(sum(own), rel=0.1), (cpu, own)
    assert cpu["joules_per_sample"] is None and cpu["step_s_median"] is not None
    assert got["gpu"] is None and "torch saw no GPU" in got["gpu_unavailable"]  # no GPU here: the CPU side answers


@pytest.mark.e2e
def test_a_launcher_whose_script_cannot_run_on_the_cpu_is_refused_in_one_line(tmp_path):
    script = tmp_path / "train_nccl.py"
    script.write_text("import torch.distributed as dist\n\ndist.init_process_group(backend='nccl')\n")
    for args, message in (
        (["torchrun", "--", "--nproc_per_node=2", str(script)], "asks for the nccl backend outright"),
        (["torchrun", "--", "--nproc_per_node=2", "-m", "pkg.train"], "name it as a .py file"),
    ):
        done = compare(*args, cwd=tmp_path)
        assert done.returncode == 2 and done.stdout == "", done
        assert done.stderr.count("\n") == 1 and message in done.stderr and "Traceback" not in done.stderr, done.stderr


@pytest.mark.e2e
def test_a_torchrun_job_whose_cpu_run_fails_is_told_in_one_line(tmp_path):
    script = tmp_path / "train_on_gpu0.py"  # a GPU taken for granted: no GPU on the CPU run
    script.write_text("import torch\nimport torch.distributed as dist\n\ndist.init_process_group('gloo')\ntorch.cuda.set_device(0)\n")
    done = compare("torchrun", "--", "--standalone", "--nproc_per_node=2", str(script), cwd=tmp_path)
    assert done.returncode == 1 and done.stdout == "", done
    assert (
        done.stderr.count("\n") == 1
        and "torchrun's CPU run failed (" in done.stderr
        and "ChildFailedError" not in done.stderr
        and re.search(r"\(\[rank\d\]: \w+Error: ", done.stderr)
        and "the usual way" in done.stderr
    ), done.stderr
