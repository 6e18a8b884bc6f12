"""On a real GPU: a recording beside matmul bf16 (GPM activity, power, the energy counter), each
bundled workload on the CPU and on the GPU through `gputop compare`, the reference
configurations against the seeds' claims (matmul bf16 against the datasheet, ResNet-50, GPT-2),
and an unmodified training script whose steps are detected on CUDA."""

from __future__ import annotations

from typing import Any

import pytest
from machine import Runner
from recording import analyse_run

pytestmark = [pytest.mark.e2e, pytest.mark.gpu]  # on the real hardware: never in the fast loop

RECORD_S = 30


@pytest.fixture(scope="module")
def matmul(runner: Runner) -> tuple[dict[str, Any], dict[str, Any]]:
    """`gputop record` 30 s at 10 Hz beside matmul bf16 (stopped by gputop at --duration), then
    `gputop report --json`: (the trace's figures, the report)."""
    trace = runner.out / "matmul_trace.json"
    rec = runner.gputop(
        "record",
        "record",
        "--out",
        str(trace),
        "--interval",
        "0.1",
        "--duration",
        str(RECORD_S),
        "--force",
        "--run",
        "matmul",
        "--",
        "--device",
        "cuda",
        "--precision",
        "bf16",
        "--steps",
        "1000000",
        "--quiet",
        timeout=RECORD_S + 60,
    )
    last = rec.stderr.strip().splitlines()[-1:]
    assert rec.ok and any("stopped by gputop at --duration" in line for line in last), rec.why()
    rep = runner.gputop("report", "report", str(trace), "--json", timeout=60)
    report = rep.json()
    assert report is not None, f"gputop report --json: {rep.why()}"
    runner.save("matmul_report.json", rep.stdout)
    return analyse_run(trace), report


def test_a_recording_beside_matmul_samples_at_10_hz(matmul, figure):
    a, _ = matmul
    figure(
        "samples", f"{a['samples']} in {a.get('span_s', 0):.1f} s ({a.get('rate_hz') or 0:.2f} Hz)", f">= 8 Hz over >= {0.9 * RECORD_S:g} s"
    )
    figure("workload steps recorded", a["steps"], ">= 3")
    assert (a.get("rate_hz") or 0) >= 8 and a.get("span_s", 0) >= 0.9 * RECORD_S
    assert a["steps"] >= 3


def test_gpm_shows_the_tensor_cores_and_dram_busy(matmul, figure):
    a, _ = matmul
    sm, tensor, bw = a.get("during_sm_active_pct"), a.get("during_tensor_active_pct"), a.get("during_dram_bw_bytes_per_s")
    figure("GPM SM activity (median during steps)", sm, ">= 50 %")
    figure("GPM tensor activity (median)", tensor, ">= 20 %")
    figure("DRAM bandwidth (median)", f"{(bw or 0) / 1e9:.1f} GB/s ({a.get('during_dram_bw_util_pct')} % of peak)", "> 0")
    for metric in ("gpu_util_pct", "sm_occupancy_pct", "sm_clock_mhz", "temp_c"):
        figure(f"{metric} (median during steps)", a.get(f"during_{metric}"))
    assert sm is not None and sm >= 50
    assert tensor is not None and tensor >= 20
    assert bw is not None and bw > 0


def test_power_rises_and_the_energy_counter_matches_power_over_time(matmul, figure):
    a, _ = matmul
    before, during = a.get("before_power_w"), a.get("during_power_w")
    figure(
        "power before the first step -> during",
        f"{before} W -> {during} W ({a.get('samples_before')} / {a.get('samples_during')} samples)",
        ">= 1.3 x before",
    )
    counter, integral = a.get("energy_counter_j"), a.get("power_integral_j")
    figure("energy counter delta vs power x time", f"{counter} J vs {integral} J", "within 10 % (power is a ~1 s average)")
    assert before is not None and during is not None and during >= 1.3 * before
    assert counter is not None and integral and abs(counter - integral) <= 0.10 * integral


def _mfu(figure: Any, what: str, w: dict[str, Any]) -> None:
    """MFU against the datasheet's peak must be <= 100 %."""
    mfu, peak, source = w.get("mfu_pct_median"), w.get("peak_flops"), w.get("peak_flops_source")
    figure(
        what,
        f"{w.get('tflops_median')} TFLOP/s = {mfu} % of {(peak or 0) / 1e12:g} TFLOP/s ({source} peak)",
        "MFU <= 100 % of the datasheet",
    )
    assert source == "table", f"no datasheet peak for this GPU (peak from {source})"
    assert mfu is not None and 0 < mfu <= 100


def test_matmul_mfu_against_the_datasheet(matmul, figure):
    _, report = matmul
    _mfu(figure, "matmul bf16 MFU (median step)", report.get("workload") or {})


PLAIN_SCRIPT = '''\
"""A plain PyTorch training script, written as anyone would: no gputop in it."""
import argparse
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

parser = argparse.ArgumentParser()
parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
parser.add_argument("--steps", type=int, default=60)
args = parser.parse_args()
torch.manual_seed(0)
data = TensorDataset(torch.randn(args.steps * 64, 256), torch.randint(0, 10, (args.steps * 64,)))
model = nn.Sequential(nn.Linear(256, 512), nn.ReLU(), nn.Linear(512, 10)).to(args.device)
opt = torch.optim.SGD(model.parameters(), lr=0.05)
steps = 0
for x, y in DataLoader(data, batch_size=64, shuffle=True):
    x, y = x.to(args.device), y.to(args.device)
    opt.zero_grad()
    loss = nn.functional.cross_entropy(model(x), y)
    loss.backward()
    opt.step()
    steps += 1
print(f"plain script: {steps} optimizer steps, last loss {loss.item():.3f}")
'''


def test_an_unmodified_script_has_its_steps_detected_on_cuda(runner, figure):
    script = runner.save("plain_train.py", PLAIN_SCRIPT)
    trace, steps = runner.out / "plain_trace.json", 60
    rec = runner.gputop(
        "insight",
        "record",
        "--out",
        str(trace),
        "--interval",
        "0.2",
        "--force",
        "--run",
        str(script),
        "--",
        "--device",
        "cuda",
        "--steps",
        str(steps),
        timeout=120,
    )
    assert rec.ok, rec.why()
    rep = runner.gputop("insight_report", "report", str(trace), "--json", timeout=60)
    w = (rep.json() or {}).get("workload") or {}
    runner.save("plain_report.json", rep.stdout)
    figure("steps detected", w.get("steps"), f"{steps} (the script's own count)")
    figure("verdict", w.get("verdict"), "present")
    assert w.get("steps") == steps
    assert w.get("verdict") is not None


# short runs: the rates are medians over the steps after the warm-up; torch's import and the CPU
# peak's measurement in each child are most of a compare's time
COMPARE = {name: ["--steps", "10", "--warmup", "2"] for name in ("mlp", "cnn", "transformer", "matmul")}


@pytest.mark.parametrize("name", list(COMPARE))
def test_compare_runs_the_workload_on_cpu_and_gpu(name, runner, figure):
    proc = runner.gputop(f"compare_{name}", "compare", name, "--json", *COMPARE[name], timeout=150)
    doc = proc.json()
    assert doc is not None, proc.why()
    runner.save(f"compare_{name}.json", proc.stdout)
    cpu, gpu = doc.get("cpu") or {}, doc.get("gpu") or {}
    figure("CPU / GPU samples/s", f"{cpu.get('samples_per_s')} / {gpu.get('samples_per_s')}")
    figure("speedup", doc.get("speedup"))
    assert doc.get("gpu") is not None, f"no GPU run: {doc.get('gpu_unavailable')}"
    assert cpu.get("status") == "ok" and gpu.get("status") == "ok"


CUDA = ["--device", "cuda", "--precision", "bf16"]
REFERENCES = {
    "matmul bf16 8192^3": ("matmul", [*CUDA, "--n", "8192", "--batch-size", "20", "--steps", "100"], "tflops"),
    "ResNet-50 224 px, batch 256, bf16": (
        "cnn",
        [*CUDA, "--depth", "50", "--image-size", "224", "--batch-size", "256", "--steps", "30"],
        "samples",
    ),
    "GPT-2 124M, ctx 1024, batch 16, bf16": (
        "transformer",
        [*CUDA, "--size", "gpt2", "--batch-size", "16", "--steps", "30"],
        "tokens:1024",
    ),
}


@pytest.mark.parametrize("label", list(REFERENCES))
def test_a_reference_configuration(label, runner, figure):
    workload, args, kind = REFERENCES[label]
    trace = runner.out / f"ref_{workload}_trace.json"
    rec = runner.gputop(
        f"ref_{workload}",
        "record",
        "--out",
        str(trace),
        "--interval",
        "0.5",
        "--force",
        "--run",
        workload,
        "--",
        *args,
        "--quiet",
        timeout=120,
    )
    assert rec.ok, rec.why()
    rep = runner.gputop(f"ref_{workload}_report", "report", str(trace), "--json", timeout=60)
    w = (rep.json() or {}).get("workload") or {}
    assert w.get("ended") == "finished", f"{rep.why()}; ended: {w.get('ended')}"
    runner.save(f"ref_{workload}_report.json", rep.stdout)
    figure("J per step (median)", w.get("joules_per_step_median"))
    rate = w.get("samples_per_s_median")
    if kind == "tflops":
        _mfu(figure, label, w)
    elif kind.startswith("tokens"):
        # report's own tokens/s against the configuration's context (workloads/transformer.py SIZES)
        per, tokens = int(kind.split(":")[1]), w.get("tokens_per_s_median")
        figure("tokens/s", f"{tokens} ({rate} sequences/s x {w.get('tokens_per_sample')})", f"> 0, {per} per sequence")
        assert tokens is not None and tokens > 0 and w.get("tokens_per_sample") == per
    else:
        figure(f"{w.get('sample_unit')}/s", rate, "> 0")
        assert rate is not None and rate > 0
