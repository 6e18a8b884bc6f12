"""`gputop compare` on scripts that take no --device (issue #12.4): they run as they are, the CPU
run with the GPUs hidden, measured from the detected steps; refused up front where no step can be
seen; and a failed CPU run is said to be one (not "No GPU run")."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path

import pytest

from gputop.commands import compare
from gputop.environment import Environment
from helpers import PowerSampler
from helpers import compare_args as args

SCRIPTS = Path(__file__).resolve().parent / "insight_scripts"


def plain_args(script: str, *run_args: str, as_json: bool = False):
    a = args(str(SCRIPTS / script), *run_args, as_json=as_json, batch=None)
    a.steps = None
    return a


@pytest.mark.e2e
def test_a_script_that_never_imports_torch_is_refused_up_front():
    done = subprocess.run(
        [sys.executable, "-m", "gputop", "compare", str(SCRIPTS / "no_torch.py")], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr.count("\n") == 1 and "imports only the standard library, never torch" in done.stderr
    assert "argv" not in done.stderr  # it was not run


@pytest.mark.unit
def test_steps_and_batch_size_are_refused_for_a_script_that_runs_as_it_is():
    err = io.StringIO()
    a = plain_args("adamw.py")
    a.steps = 50
    assert compare.run(a, Environment.of("compare", sampler=PowerSampler(), stdout=io.StringIO(), stderr=err)) == 2
    assert "adamw.py takes no --device, so it runs as it is" in err.getvalue()


@pytest.mark.unit
def test_the_cpu_run_hides_the_gpus():
    assert compare._env("cpu")["CUDA_VISIBLE_DEVICES"] == "" and compare._env("cuda") is None


@pytest.mark.e2e
def test_a_usual_script_is_measured_from_its_detected_steps():
    pytest.importorskip("torch")
    out = io.StringIO()
    assert (
        compare.run(
            plain_args("adamw.py", as_json=True), Environment.of("compare", sampler=PowerSampler(), stdout=out, stderr=io.StringIO())
        )
        == 0
    )
    report = json.loads(out.getvalue())
    assert report["steps"] is None and report["steps_seen"]["cpu"] == 7 and report["steps_source"] == "auto"
    assert report["cpu"]["steps_measured"] == 6 and report["cpu"]["step_s_median"] > 0  # warm-up 1
    assert report["cpu"]["samples_per_s"] is None  # no batch to see: n/a, not a guess
    # this machine has no GPU: the second run trained on the CPU, and compare says why
    assert report["gpu"] is None and report["steps_seen"]["gpu"] == 7
    assert report["gpu_unavailable"] == "with the GPUs visible, adamw.py trained on cpu (torch saw no GPU)"
    text = compare.to_text(report, compare.result("cpu", _state(report), 1), None)
    assert "batch n/a, 7 steps on the CPU (detected by gputop's hooks)" in text


def _state(report):
    """A minimal final state for to_text (the JSON already holds every figure it prints)."""
    from gputop.model import WorkloadState

    return WorkloadState(
        name="adamw.py",
        argv=(),
        pid=1,
        status="ok",
        returncode=0,
        started_ns=0,
        ended_ns=1,
        events=True,
        device="cpu",
        device_name=None,
        precision=None,
        batch_size=None,
        sample_unit="samples",
        flops_per_step=None,
        peak_flops=None,
        peak_flops_source=None,
        steps_planned=None,
        step=7,
        samples_per_s=None,
        tflops=None,
        mfu_pct=None,
        loss=None,
        losses=(),
        joules_per_step=None,
        recent_steps=(),
        error=None,
        pids=frozenset(),
        output_tail=(),
    )


@pytest.mark.e2e
def test_a_torch_script_whose_steps_are_not_seen_runs_once_and_says_so():
    pytest.importorskip("torch")
    out, err = io.StringIO(), io.StringIO()
    assert compare.run(plain_args("no_steps.py"), Environment.of("compare", sampler=PowerSampler(), stdout=out, stderr=err)) == 1
    assert out.getvalue() == ""
    assert err.getvalue() == (
        "gputop compare: error: no_steps.py ran on the CPU and no training step of it "
        "was seen (no torch optimizer stepped, no backward): nothing to compare\n"
    )


@pytest.mark.e2e
def test_a_failed_cpu_run_is_not_blamed_on_the_gpu():
    out = io.StringIO()
    a = args("mlp", "--bogus", steps=4, batch=4)
    assert compare.run(a, Environment.of("compare", sampler=PowerSampler(), stdout=out, stderr=io.StringIO())) == 1
    text = out.getvalue()
    assert "No GPU run" not in text
    assert "CPU only: the CPU run failed, so no GPU run was started" in text
    assert "failed:" in text and "--bogus" in text


# ---- a module, as python -m runs it (issue #11.6) --------------------------------------------


def _compare(*argv: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "gputop", "compare", *argv], capture_output=True, text=True, timeout=180, cwd=cwd)


@pytest.mark.e2e
def test_a_module_is_compared_like_a_script():
    pytest.importorskip("torch")
    done = _compare("-m", "userpkg.train", "--warmup", "1", "--json", "--", "--epochs", "1", cwd=SCRIPTS)
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["workload"] == "userpkg.train" and report["argv_common"] == ["--epochs", "1"]
    assert report["steps_seen"] == {"cpu": 3, "gpu": 3} and report["steps_source"] == "auto"
    assert report["cpu"]["steps_measured"] == 2 and report["cpu"]["step_s_median"] > 0
    assert report["gpu_unavailable"] == "with the GPUs visible, userpkg.train trained on cpu (torch saw no GPU)"


@pytest.mark.e2e
def test_a_module_that_never_imports_torch_or_is_not_there_is_one_line(tmp_path):
    (tmp_path / "stdpkg").mkdir()
    (tmp_path / "stdpkg" / "__init__.py").write_text("")
    (tmp_path / "stdpkg" / "__main__.py").write_text("import json\nprint(json.dumps(1))\n")
    for argv, words in (
        (("-m", "stdpkg"), "stdpkg imports only the standard library, never torch"),
        (("-m stdpkg",), "stdpkg imports only the standard library, never torch"),
        (("-m", "nothere.train"), "no module named 'nothere'"),
        (("--json", "-m"), "-m wants a module name such as pkg.train"),
    ):
        done = _compare(*argv, cwd=tmp_path)
        assert done.returncode == 2 and done.stdout == "", argv
        assert done.stderr.count("\n") == 1 and words in done.stderr, (argv, done.stderr)


@pytest.mark.unit
def test_module_source_finds_the_file_python_m_runs_without_importing_it(tmp_path):
    from gputop.workload.targets import module_source

    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "__init__.py").write_text("raise SystemExit('imported!')\n")
    (tmp_path / "pkg" / "train.py").write_text("")
    assert module_source("pkg.train", str(tmp_path)) == str(tmp_path / "pkg" / "train.py")
    assert module_source("pkg", str(tmp_path)) is None  # a package without __main__
    (tmp_path / "pkg" / "__main__.py").write_text("")
    assert module_source("pkg", str(tmp_path)) == str(tmp_path / "pkg" / "__main__.py")
    assert module_source("pkg.nothere", str(tmp_path)) is None and module_source("nothere", str(tmp_path)) is None
