"""Steps 3 to 5 of benchmarks/gpu_check.py: `gputop compare`, the reference configurations,
the screenshots and the training-insight step (the first two steps are in gpu_steps.py)."""

from __future__ import annotations

import re
import socket
from pathlib import Path
from typing import Any

from gpu_steps import _f, _json, _mfu, _py, _save

# --------------------------------------------------------------------------- 3. compare

def compare(ctx: Any, step: Any) -> None:
    runs = {"mlp": ["--steps", "20"] if not ctx.simulated else ["--steps", "3", "--warmup", "1"],
            "cnn": ["--steps", "10"] if not ctx.simulated else ["--steps", "3", "--warmup", "1", "--", "--depth", "tiny"]}
    ctx.data["compare"] = {}
    for name, extra in runs.items():
        proc = ctx.gputop(f"compare_{name}", "compare", name, "--json", *extra, timeout=150)
        doc = _json(proc)
        if doc is None:
            step.check(f"compare {name}", proc.why(), "exit 0", False)
            continue
        _save(ctx, f"compare_{name}.json", proc.stdout)
        ctx.data["compare"][name] = doc
        cpu, gpu = doc.get("cpu") or {}, doc.get("gpu")
        unit = "samples/s"
        if gpu is None:
            step.check(f"compare {name}: CPU {unit}", _f(cpu.get("samples_per_s")),
                       "CPU only under --simulated" if ctx.simulated else "a GPU run",
                       ctx.simulated and cpu.get("status") == "ok")
            step.notes.append(f"compare {name}: no GPU run: {doc.get('gpu_unavailable')}")
        else:
            step.check(f"compare {name}: CPU / GPU {unit}, speedup",
                       f"{_f(cpu.get('samples_per_s'))} / {_f(gpu.get('samples_per_s'))}, {_f(doc.get('speedup'))}x",
                       "both ok", cpu.get("status") == "ok" and gpu.get("status") == "ok")
    for label, workload, args, figure in _references(ctx):
        _reference(ctx, step, label, workload, args, figure)


def _references(ctx: Any) -> list[tuple[str, str, list[str], str]]:
    if ctx.simulated:
        step_args = ["--device", "cpu", "--steps", "4"]
        return [("matmul (fp32, not bf16; n 256 on the CPU)", "matmul", [*step_args, "--precision", "fp32",
                                                                        "--n", "256", "--batch-size", "2"], "tflops"),
                ("cnn (tiny, not ResNet-50, on the CPU)", "cnn", [*step_args, "--depth", "tiny", "--image-size",
                                                                  "32", "--batch-size", "4"], "samples"),
                ("transformer (tiny, not GPT-2, on the CPU)", "transformer", [*step_args, "--size", "tiny",
                                                                              "--batch-size", "2"], "tokens:32")]
    cuda = ["--device", "cuda", "--precision", "bf16"]
    return [("matmul bf16 8192^3", "matmul", [*cuda, "--n", "8192", "--batch-size", "20", "--steps", "100"], "tflops"),
            ("ResNet-50 224 px, batch 256, bf16", "cnn", [*cuda, "--depth", "50", "--image-size", "224",
                                                          "--batch-size", "256", "--steps", "30"], "samples"),
            ("GPT-2 124M, ctx 1024, batch 16, bf16", "transformer", [*cuda, "--size", "gpt2", "--batch-size", "16",
                                                                     "--steps", "30"], "tokens:1024")]


def _reference(ctx: Any, step: Any, label: str, workload: str, args: list[str], figure: str) -> None:
    trace = ctx.out / f"ref_{workload}_trace.json"
    rec = ctx.gputop(f"ref_{workload}", "record", "--out", str(trace), "--interval", "0.5", "--force",
                     "--run", workload, "--", *args, "--quiet", timeout=120)
    rep = ctx.gputop(f"ref_{workload}_report", "report", str(trace), "--json", timeout=60) if trace.exists() else rec
    report = _json(rep) if rec.ok else None
    w = (report or {}).get("workload") or {}
    if report is None or w.get("ended") != "finished":
        step.check(label, rec.why() if not rec.ok else w.get("ended"), "finished", False)
        return
    _save(ctx, f"ref_{workload}_report.json", rep.stdout)
    ctx.data.setdefault("references", {})[label] = w
    rate = w.get("samples_per_s_median")
    if figure == "tflops":
        _mfu(step, label, w)
    elif figure.startswith("tokens"):
        # report's own tokens/s, checked against the configuration's context length
        # (workloads/transformer.py SIZES: gpt2 1024, tiny 32)
        per, tokens = int(figure.split(":")[1]), w.get("tokens_per_s_median")
        step.check(label, f"{_f(tokens)} tokens/s ({_f(rate)} sequences/s x {w.get('tokens_per_sample')})",
                   f"> 0, {per} per sequence", tokens is not None and tokens > 0 and w.get("tokens_per_sample") == per)
    else:
        step.check(label, f"{_f(rate)} {w.get('sample_unit')}/s", "> 0", rate is not None and rate > 0)
    step.check(f"{label}: J per step (median)", _f(w.get("joules_per_step_median")), "-", None)


# ----------------------------------------------------------------------- 4. screenshots

def screenshots(ctx: Any, step: Any) -> None:
    folder = ctx.out / "screenshots"
    seconds = ctx.s(20, 4)
    if ctx.simulated:
        run, title, host = ["mlp", "--", "--device", "cpu", "--steps", "1000000"], "the NVML fake beside mlp on the CPU", "simulated GPU"
    else:
        run = ["matmul", "--", "--device", "cuda", "--precision", "bf16", "--steps", "1000000"]
        title, host = "beside matmul bf16 (real hardware)", socket.gethostname()
    proc = ctx.run("screenshots", _py(str(Path(__file__).with_name("gpu_screenshot.py")), "--out", str(folder),
                                      "--seconds", str(seconds), "--max-wait", "60", "--title", title,
                                      "--host", host, "--run", *run),
                   timeout=90)
    step.notes.append("screenshots/make.py draws only the fake (it installs tests/fakenvml.py itself), so "
                      "benchmarks/gpu_screenshot.py draws the same app over the real sampler")
    step.check("gpu_screenshot.py", proc.why() if not proc.ok else "ok", "exit 0", proc.ok)
    if proc.rc == 3:
        step.notes.append(proc.stderr.strip().splitlines()[-1])
    name = ((ctx.data.get("snapshot") or {}).get("gpus") or [{}])[0].get("info", {}).get("name") or ""
    token = next((t for t in name.split() if re.search(r"\d", t)), None)  # "H200", "H100"
    for svg in sorted(folder.glob("*.svg")) if folder.exists() else []:
        text = svg.read_text(errors="replace")
        step.check(f"screenshot {svg.name}", f"{svg.stat().st_size // 1024} KiB"
                   + (f", shows {token}" if token and token in text else ""),
                   "> 10 KiB" + (f", shows {token}" if token else ""),
                   svg.stat().st_size > 10_000 and (token is None or token in text))
        ctx.data.setdefault("screenshots", []).append(str(svg.relative_to(ctx.out)))
    if not ctx.data.get("screenshots"):
        step.fail("no screenshot written")


# --------------------------------------------------------------------------- 5. insight

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


def insight(ctx: Any, step: Any) -> None:
    report = ctx.data.get("record_report")
    if report is None:
        step.status = "skipped"
        return step.notes.append("skipped: the record step gave no report to detect the feature from")
    if "verdict" not in (report.get("workload") or {}):
        step.status = "skipped"
        return step.notes.append("skipped: not built yet (gputop report --json has no workload.verdict)")
    script = _save(ctx, "plain_train.py", PLAIN_SCRIPT)
    trace = ctx.out / "plain_trace.json"
    device = "cpu" if ctx.simulated else "cuda"
    steps = 20 if ctx.simulated else 60
    rec = ctx.gputop("insight", "record", "--out", str(trace), "--interval", "0.2", "--force", "--run",
                     str(script), "--", "--device", device, "--steps", str(steps), timeout=120)
    rep = ctx.gputop("insight_report", "report", str(trace), "--json", timeout=60) if trace.exists() else rec
    w = ((_json(rep) or {}).get("workload") or {}) if rec.ok else {}
    if rep is not rec and rec.ok:
        _save(ctx, "plain_report.json", rep.stdout)
    step.check("plain script recorded", rec.why() if not rec.ok else "ok", "exit 0", rec.ok)
    step.check("steps detected", w.get("steps"), f"{steps} (the script's own count)", w.get("steps") == steps)
    step.check("verdict", w.get("verdict"), "present", w.get("verdict") is not None)
