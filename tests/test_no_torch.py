"""Without PyTorch (the README's first command installs none): the bundled workloads are refused
up front, in one line that says what to install, and a workload run by hand names the missing
module itself, not a helper module of ours."""

from __future__ import annotations

import os
import pathlib
import subprocess
import sys

import pytest

pytestmark = pytest.mark.e2e

TESTS = pathlib.Path(__file__).resolve().parent


def run(*argv: str, cwd: pathlib.Path | None = None) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, GPUTOP_FAKE_NVML="H100_SXM")
    env["PYTHONPATH"] = os.pathsep.join([str(TESTS / "notorch"), str(TESTS), env.get("PYTHONPATH", "")])
    return subprocess.run([sys.executable, *argv], capture_output=True, text=True, env=env, timeout=60, cwd=cwd, stdin=subprocess.DEVNULL)


def test_the_hook_really_hides_torch():
    done = run("-c", "import torch")
    assert done.returncode == 1 and "No module named 'torch'" in done.stderr


@pytest.mark.parametrize(
    "argv, prog",
    [
        (["compare", "mlp"], "gputop compare"),
        (["record", "--out", "{tmp}/t.json", "--run", "cnn"], "gputop record"),
        (["--run", "matmul"], "gputop"),
    ],
)
def test_a_bundled_workload_needs_pytorch_and_says_how_to_get_it(tmp_path, argv, prog):
    done = run("-m", "gputop", *[a.format(tmp=tmp_path) for a in argv])
    assert done.returncode == 2
    assert done.stderr.count("\n") == 1 and "Traceback" not in done.stderr
    assert done.stderr.startswith(f"{prog}: error: the bundled workloads (cnn, mlp, transformer, matmul) need PyTorch")
    # the README's own commands: never `gputop` from the package index (that name there is another project)
    assert f"{sys.executable} -m pip install torch (" in done.stderr and "--index-url https://download.pytorch.org/whl/cpu" in done.stderr
    assert "gputop[" not in done.stderr and "install gputop" not in done.stderr
    assert not (tmp_path / "t.json").exists()  # refused before anything was written


def test_a_workload_run_by_hand_names_torch_as_what_is_missing():
    done = run("-m", "gputop.workloads.mlp", "--steps", "1")
    assert done.returncode == 1
    assert "No module named 'torch'" in done.stderr and "common" not in done.stderr.splitlines()[-1]
