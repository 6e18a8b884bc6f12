"""`gputop compare`: a fake two-device script for the table and the speedup, the real mlp at a toy
size for the no-GPU path (this machine has none), and bad input as one line."""

from __future__ import annotations

import ast
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

ROOT = Path(__file__).resolve().parent.parent

# A script that takes --device/--steps/--batch-size like the bundled ones and reports steps that
# take 50 ms on cpu and 0.5 ms on cuda (step 1: 0.2 s on both, the warm-up), without torch.
FAKE = """\
import argparse, json, os, time
p = argparse.ArgumentParser()
p.add_argument("--device"); p.add_argument("--steps", type=int); p.add_argument("--batch-size", type=int)
p.add_argument("--fail-on", default=None); p.add_argument("--ignore-device", action="store_true")
p.add_argument("--oom-at", type=int, default=None)
a = p.parse_args()
if a.ignore_device:
    a.device = "cpu"
fd = int(os.environ["GPUTOP_EVENTS_FD"])
def emit(**e):
    e.setdefault("ts_ns", time.time_ns())
    os.write(fd, (json.dumps(e) + "\\n").encode())
if a.device == a.fail_on:
    raise SystemExit(f"{a.device}: not today")
emit(event="start", name="fake", device=a.device, device_name=f"Fake {a.device.upper()}",
     precision="fp32", batch_size=a.batch_size, flops_per_step=1e12,
     peak_flops=1e14 if a.device == "cuda" else 1e12, peak_flops_source="table",
     steps_planned=a.steps)
for k in range(1, a.steps + 1):
    wall = 0.2 if k == 1 else 0.05 if a.device == "cpu" else 0.0005
    time.sleep(wall * 1.2)  # the reported step lies within real time, after the launch
    if a.device == "cuda" and k == a.oom_at:
        raise RuntimeError("CUDA out of memory")
    emit(event="step", step=k, samples=a.batch_size, loss=1.0 / k, wall_s=wall)
emit(event="end", steps=a.steps, status="ok")
"""


@pytest.fixture
def fake(tmp_path) -> str:
    path = tmp_path / "fake.py"
    path.write_text(FAKE)
    return str(path)


@pytest.mark.e2e
def test_the_table_shows_both_devices_and_the_speedup(fake):
    out, err = io.StringIO(), io.StringIO()
    assert compare.run(args(fake), Environment.of("compare", sampler=PowerSampler(), stdout=out, stderr=err)) == 0
    text = out.getvalue()
    assert "the first 1 are warm-up, left out of the rates" in text
    rows = {line.split("  ")[0]: line.split()[-2:] for line in text.splitlines() if "  " in line}
    assert rows["samples/s"] == ["160", "16,000"]  # 8 samples / 50 ms and / 0.5 ms
    assert rows["speedup"] == ["1x", "100.0x"]
    assert "Fake CPU" in text and "Fake CUDA" in text
    assert err.getvalue() == ""  # no progress line when stderr is not a terminal


@pytest.mark.e2e
def test_json_has_the_rates_and_cpu_energy_per_sample(fake):
    out = io.StringIO()
    assert compare.run(args(fake, as_json=True), Environment.of("compare", sampler=PowerSampler(), stdout=out, stderr=io.StringIO())) == 0
    report = json.loads(out.getvalue())
    cpu, gpu = report["cpu"], report["gpu"]
    assert cpu["steps_measured"] == 4 and cpu["samples_per_s"] == pytest.approx(160.0)
    assert cpu["step_s_median"] == pytest.approx(0.05) and cpu["tflops"] == pytest.approx(20.0)
    assert cpu["mfu_pct"] == pytest.approx(2000.0)  # a fake peak: the arithmetic is what counts
    assert gpu["tflops"] == pytest.approx(2000.0) and gpu["mfu_pct"] == pytest.approx(2000.0)
    assert report["speedup"] == pytest.approx(100.0)
    # 100 W over each 50 ms step (the samples cover every step), per 8 samples
    assert cpu["joules_per_sample"] == pytest.approx(100.0 * 0.05 / 8)
    assert gpu["joules_per_sample"] is None  # no GPU energy counter in these samples: n/a


@pytest.mark.e2e
def test_a_failed_gpu_run_is_reported_and_the_cpu_side_kept(fake):
    out = io.StringIO()
    assert (
        compare.run(args(fake, "--fail-on", "cuda"), Environment.of("compare", sampler=PowerSampler(), stdout=out, stderr=io.StringIO()))
        == 0
    )
    text = out.getvalue()
    assert "No GPU run, CPU only: cuda: not today" in text
    assert "speedup" not in text and "160" in text


@pytest.mark.e2e
def test_a_gpu_run_that_got_under_way_and_failed_exits_1(fake):
    """Unlike no GPU at all (the CPU side is then the answer, exit 0), a GPU run that started and
    then failed (CUDA out of memory at step 4) is a failed comparison."""
    out = io.StringIO()
    assert (
        compare.run(args(fake, "--oom-at", "4"), Environment.of("compare", sampler=PowerSampler(), stdout=out, stderr=io.StringIO())) == 1
    )
    assert "failed: RuntimeError: CUDA out of memory" in out.getvalue()


@pytest.mark.e2e
def test_a_script_that_ignores_device_is_no_gpu_run(fake):
    out = io.StringIO()
    assert (
        compare.run(args(fake, "--ignore-device"), Environment.of("compare", sampler=PowerSampler(), stdout=out, stderr=io.StringIO())) == 0
    )
    text = out.getvalue()
    assert "No GPU run, CPU only: asked for --device cuda, the workload reported running on cpu" in text
    assert "speedup" not in text


@pytest.mark.e2e
def test_a_failed_cpu_run_exits_1(fake):
    out = io.StringIO()
    assert (
        compare.run(args(fake, "--fail-on", "cpu"), Environment.of("compare", sampler=PowerSampler(), stdout=out, stderr=io.StringIO()))
        == 1
    )
    assert "failed: cpu: not today" in out.getvalue()


@pytest.mark.e2e
def test_the_real_mlp_without_a_gpu_says_so_in_one_line():
    out = io.StringIO()
    a = args("mlp", "--hidden", "32", "--layers", "1", "--quiet", steps=4, batch=4)
    assert compare.run(a, Environment.of("compare", sampler=PowerSampler(), stdout=out, stderr=io.StringIO())) == 0
    text = out.getvalue()
    no_gpu = [line for line in text.splitlines() if line.startswith("No GPU run")]
    assert len(no_gpu) == 1 and "no CUDA device is available" in no_gpu[0]
    rows = {line.split("  ")[0]: line for line in text.splitlines()}
    assert rows["precision"].split()[-1] == "fp32" and "n/a" not in rows["samples/s"]
    assert "n/a" not in rows["TFLOP/s"] and "speedup" not in rows


@pytest.mark.e2e
@pytest.mark.parametrize(
    "argv, words",
    [
        (["compare", "resnet"], "unknown workload 'resnet'"),
        (["compare", "mlp", "--steps", "2", "--warmup", "2"], "leaves nothing after --warmup"),
        (["compare", "mlp", "--", "--device", "cpu"], "compare chooses --device itself"),
        (["compare", "mlp", "--", "--steps", "3"], "give --steps to compare itself"),
        (["compare", "mlp", "--", "--batch-size=64"], "give --batch-size to compare itself"),
        (["compare", "mlp", "--steps", "0"], "expected 1 or more, got 0"),
    ],
)
def test_bad_input_is_one_line(argv, words):
    out = subprocess.run([sys.executable, "-m", "gputop", *argv], capture_output=True, text=True, timeout=60)
    assert out.returncode == 2 and out.stdout == ""
    assert out.stderr.count("\n") == 1 and words in out.stderr and "Traceback" not in out.stderr


@pytest.mark.unit
def test_pinned_sizes_are_the_scripts_cpu_defaults():
    """Both devices run the model the CPU defaults describe (the CUDA defaults are bigger)."""
    for name in compare.SAME_SIZE:
        tree = ast.parse((ROOT / "workloads" / f"{name}.py").read_text())
        defaults = next(
            kw.value for node in ast.walk(tree) if isinstance(node, ast.Call) for kw in node.keywords if kw.arg == "cpu_defaults"
        )
        cpu = {kw.arg: ast.literal_eval(kw.value) for kw in defaults.keywords}
        assert cpu.pop("batch_size") == compare.SAME_BATCH[name]
        cpu.pop("steps")
        pinned = compare.SAME_SIZE[name]
        expected = tuple(x for key, value in cpu.items() for x in (f"--{key.replace('_', '-')}", str(value)))
        assert pinned == expected, name
