"""Shared plumbing for the bundled workloads: options, device and precision, FLOPs, peak FLOP/s,
the training loop, events and the progress line.

Only the workload scripts import torch; the gputop package never imports this module.
"""

from __future__ import annotations

import argparse
import contextlib
import math
import platform
import signal
import sys
import time
import warnings
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

# A torch wheel without numpy warns about it on import; the workloads never use numpy.
warnings.filterwarnings("ignore", message=".*Failed to initialize NumPy.*")

import torch  # noqa: E402
import torch.nn as nn  # noqa: E402

try:  # run as `python -m workloads.cnn` or imported as a package
    from .events import EventWriter
except ImportError:  # run as `python workloads/cnn.py`
    from events import EventWriter  # type: ignore[no-redef]

PRECISIONS = ("fp32", "tf32", "bf16", "fp16")

# ----------------------------------------------------------------------------------------------
# Peak dense FLOP/s by GPU name and precision. Dense means without 2:4 structured sparsity: the
# datasheets print the sparse figure with an asterisk, and these are half of it. bf16/fp16 are
# tensor-core rates with fp32 accumulation (what PyTorch uses). fp32 is the non-tensor-core rate
# (TF32 off); tf32 is the tensor-core rate. Order matters: the first substring that matches wins.
# ----------------------------------------------------------------------------------------------
PEAK_FLOPS: list[tuple[str, dict[str, float]]] = [
    # NVIDIA H100 datasheet (nvidia.com/en-us/data-center/h100): H100 NVL column;
    # FP32 60 TF, TF32 835 TF*, BF16/FP16 1,671 TF* (* with sparsity).
    ("H100 NVL", {"fp32": 60e12, "tf32": 417.5e12, "bf16": 835.5e12, "fp16": 835.5e12}),
    # same datasheet, H100 PCIe column: FP32 51 TF, TF32 756 TF*, BF16/FP16 1,513 TF*.
    ("H100 PCIe", {"fp32": 51e12, "tf32": 378e12, "bf16": 756e12, "fp16": 756e12}),
    # same datasheet, H100 SXM column: FP32 67 TF, TF32 989 TF*, BF16/FP16 1,979 TF*.
    ("H100", {"fp32": 67e12, "tf32": 494.5e12, "bf16": 989.5e12, "fp16": 989.5e12}),
    # NVIDIA H200 datasheet (nvidia.com/en-us/data-center/h200): H200 NVL column is the same as
    # H100 NVL (FP32 60 TF, BF16 1,671 TF*); H200 SXM the same as H100 SXM.
    ("H200 NVL", {"fp32": 60e12, "tf32": 417.5e12, "bf16": 835.5e12, "fp16": 835.5e12}),
    ("H200", {"fp32": 67e12, "tf32": 494.5e12, "bf16": 989.5e12, "fp16": 989.5e12}),
    # NVIDIA A100 datasheet (nvidia.com/en-us/data-center/a100), SXM and PCIe alike:
    # FP32 19.5 TF, TF32 156 TF (312*), BF16/FP16 312 TF (624*).
    ("A100", {"fp32": 19.5e12, "tf32": 156e12, "bf16": 312e12, "fp16": 312e12}),
    # NVIDIA Ada Lovelace architecture whitepaper, RTX 4090: FP32 82.6 TF; TF32 82.6 TF (dense);
    # FP16/BF16 tensor with FP32 accumulate 165.2 TF dense (330.4 with FP16 accumulate).
    ("RTX 4090", {"fp32": 82.6e12, "tf32": 82.6e12, "bf16": 165.2e12, "fp16": 165.2e12}),
    # NVIDIA L40S datasheet: FP32 91.6 TF, TF32 183 TF (366*), BF16/FP16 362.05 TF (733*).
    ("L40S", {"fp32": 91.6e12, "tf32": 183e12, "bf16": 362e12, "fp16": 362e12}),
    # NVIDIA L4 datasheet: FP32 30.3 TF, TF32 120 TF*, BF16/FP16 242 TF*.
    ("L4", {"fp32": 30.3e12, "tf32": 60e12, "bf16": 121e12, "fp16": 121e12}),
    # NVIDIA A10 datasheet: FP32 31.2 TF, TF32 62.5 TF (125*), BF16/FP16 125 TF (250*).
    ("A10", {"fp32": 31.2e12, "tf32": 62.5e12, "bf16": 125e12, "fp16": 125e12}),
]


def table_peak_flops(device_name: str, precision: str) -> float | None:
    """Peak dense FLOP/s from the table, or None for a device it does not know."""
    for key, peaks in PEAK_FLOPS:
        if key == "L4" and "L40" in device_name:  # "L4" is a substring of "L40"
            continue
        if key == "A10" and "A100" in device_name:
            continue
        if key in device_name:
            return peaks.get(precision)
    return None


def dtype_of(precision: str) -> torch.dtype:
    return {"bf16": torch.bfloat16, "fp16": torch.float16}.get(precision, torch.float32)


def measure_peak_flops(device: torch.device, precision: str, seconds: float = 1.0) -> float:
    """Achievable matmul FLOP/s, measured: the best of repeated square matmuls for ~`seconds`
    (at least 3). A full second, not less: on a busy machine a short window can catch only
    contended runs, and a peak measured low makes MFU read over 100 % (seen at 0.3 s). N starts
    at 512 and doubles (up to 4096 on CPU, 8192 on GPU) while one matmul takes under a twentieth
    of the budget, so that it is large enough to run near peak."""
    dtype = dtype_of(precision)
    max_n = 4096 if device.type == "cpu" else 8192
    n = 512

    def timed(a: torch.Tensor, b: torch.Tensor) -> float:
        t0 = time.perf_counter()
        torch.matmul(a, b)
        synchronize(device)
        return time.perf_counter() - t0

    while True:
        a = torch.randn(n, n, device=device, dtype=dtype)
        b = torch.randn(n, n, device=device, dtype=dtype)
        timed(a, b)  # warm up (thread pool, kernel choice)
        if timed(a, b) >= seconds / 20 or n >= max_n:
            break
        n *= 2
    best, reps = 0.0, 0
    deadline = time.perf_counter() + seconds
    while reps < 3 or time.perf_counter() < deadline:
        best = max(best, 2 * n**3 / timed(a, b))
        reps += 1
    return best


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def device_uuid(device: torch.device) -> str | None:
    """The CUDA device's UUID (how gputop finds it among NVML's devices, whose order can differ
    from CUDA's); None on the CPU or where torch cannot say."""
    if device.type != "cuda":
        return None
    try:
        return str(torch.cuda.get_device_properties(device).uuid)
    except Exception:  # an old torch, a driver that does not say: gputop falls back to the ordinal
        return None


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    with contextlib.suppress(OSError):
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine() or "cpu"


# ----------------------------------------------------------------------------------------------
# Options
# ----------------------------------------------------------------------------------------------


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value}")
    return value


def base_parser(description: str, cpu_defaults: dict, cuda_defaults: dict) -> argparse.ArgumentParser:
    """Options every workload has. Options left unset take a per-device default: small on CPU
    (a demo that ends in well under a minute on 2 cores), large enough to fill a GPU on CUDA."""

    def show(key: str) -> str:
        return f"default: {cpu_defaults.get(key)} on cpu, {cuda_defaults.get(key)} on cuda"

    p = argparse.ArgumentParser(
        description=description,
        epilog="Writes progress to stderr, and JSON events for gputop when GPUTOP_EVENTS_FD or GPUTOP_EVENTS_FILE is set.",
    )
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto", help="auto: cuda when available, else cpu (default: auto)")
    p.add_argument("--steps", type=positive_int, default=None, help=f"training steps ({show('steps')})")
    p.add_argument("--batch-size", type=positive_int, default=None, help=f"samples per step ({show('batch_size')})")
    p.add_argument(
        "--precision",
        choices=PRECISIONS,
        default=None,
        help="fp32 (TF32 off), tf32, bf16 or fp16 autocast (default: bf16 on cuda where supported, else fp16; fp32 on cpu)",
    )
    p.add_argument("--compile", action="store_true", help="torch.compile the model")
    p.add_argument("--seed", type=int, default=0, help="random seed for weights and synthetic data (default: 0)")
    p.add_argument("--quiet", action="store_true", help="no progress lines on stderr")
    p.set_defaults(_cpu_defaults=cpu_defaults, _cuda_defaults=cuda_defaults)
    return p


def parse(parser: argparse.ArgumentParser, argv: Sequence[str] | None = None) -> tuple[argparse.Namespace, torch.device]:
    """Parse, pick the device, fill per-device defaults, apply backend settings."""
    args = parser.parse_args(argv)
    if args.device == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda: no CUDA device is available to this torch build")
    device = torch.device("cuda" if args.device == "cuda" or (args.device == "auto" and torch.cuda.is_available()) else "cpu")
    defaults = args._cuda_defaults if device.type == "cuda" else args._cpu_defaults
    for key, value in defaults.items():
        if getattr(args, key, None) is None:
            setattr(args, key, value)
    if args.precision is None:
        if device.type == "cuda":
            args.precision = "bf16" if torch.cuda.is_bf16_supported() else "fp16"
        else:
            args.precision = "fp32"
    if device.type == "cpu" and args.precision in ("tf32", "fp16"):
        parser.error(f"--precision {args.precision} is for cuda; on cpu use fp32 or bf16")
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
        tf32 = args.precision == "tf32"
        torch.backends.cuda.matmul.allow_tf32 = tf32  # fp32 means fp32: the peak table assumes so
        torch.backends.cudnn.allow_tf32 = tf32
    torch.manual_seed(args.seed)
    return args, device


def autocast(device: torch.device, precision: str):
    """bf16/fp16 autocast (bf16 also on CPU when asked); a no-op for fp32 and tf32."""
    if precision in ("bf16", "fp16"):
        return torch.autocast(device_type=device.type, dtype=dtype_of(precision))
    return contextlib.nullcontext()


# ----------------------------------------------------------------------------------------------
# FLOPs
# ----------------------------------------------------------------------------------------------


def count_train_flops(
    build_model: Callable[[], nn.Module],
    make_batch: Callable[[torch.device], Any],
    loss_fn: Callable[[nn.Module, Any], torch.Tensor],
    fallback_device: torch.device,
) -> int:
    """FLOPs of one forward+backward, counted once with FlopCounterMode before training.

    Counted on the meta device (no memory, no compute, nothing shared with the real model); if
    some op has no meta kernel, on a fresh model on the real device. The counter counts matmul
    and convolution FLOPs (elementwise ops, norms and the optimizer are left out, as MFU usually
    does), and attention as the full (not causally halved) math-path matmuls.
    """
    from torch.utils.flop_counter import FlopCounterMode

    for dev in (torch.device("meta"), fallback_device):
        try:
            with torch.device(dev):
                model = build_model()
            batch = make_batch(dev)
            with FlopCounterMode(display=False) as counter:
                loss_fn(model, batch).backward()
            return int(counter.get_total_flops())
        except (NotImplementedError, RuntimeError):
            if dev == fallback_device:
                raise
    raise AssertionError("unreachable")


# ----------------------------------------------------------------------------------------------
# Progress line and the training loop
# ----------------------------------------------------------------------------------------------


@dataclass
class Progress:
    """A readable line on stderr, at most every `every_s` seconds (always the first and last)."""

    total_steps: int
    flops_per_step: float | None
    peak_flops: float | None
    quiet: bool = False
    every_s: float = 0.5
    unit: str = "samples"
    _last_print: float = 0.0
    _window: list = field(default_factory=lambda: [0, 0, 0.0])  # steps, samples, seconds
    _total: list = field(default_factory=lambda: [0, 0, 0.0])  # the same, without step 1

    def update(self, step: int, samples: int, loss: float | None, wall_s: float) -> None:
        self._window[0] += 1
        self._window[1] += samples
        self._window[2] += wall_s
        if step > 1:  # step 1 carries one-off costs (allocation, cudnn autotune, compilation)
            self._total[0] += 1
            self._total[1] += samples
            self._total[2] += wall_s
        now = time.perf_counter()
        if self.quiet or not (step == 1 or step == self.total_steps or now - self._last_print >= self.every_s):
            return
        steps, n, secs = self._window
        self._window[:] = [0, 0, 0.0]
        self._last_print = now
        loss_text = "n/a" if loss is None or not math.isfinite(loss) else f"{loss:.4g}"
        print(f"step {step}/{self.total_steps}  loss {loss_text}  {self._rates(steps, n, secs)}", file=sys.stderr, flush=True)

    def _rates(self, steps: int, n: int, secs: float) -> str:
        rate = n / secs if secs > 0 else None
        parts = [f"{'n/a' if rate is None else f'{rate:,.0f}' if rate >= 10 else f'{rate:.2g}'} {self.unit}/s"]
        if self.flops_per_step and secs > 0:
            flops = self.flops_per_step * steps / secs
            parts.append(f"{flops / 1e12:.3g} TFLOP/s" if flops >= 1e10 else f"{flops / 1e9:.3g} GFLOP/s")
            parts.append(f"MFU {100 * flops / self.peak_flops:.1f}%" if self.peak_flops else "MFU n/a")
        return "  ".join(parts)

    def summary(self, elapsed_s: float) -> None:
        if self.quiet:
            return
        steps, n, secs = self._total
        tail = f"; steps 2+: {self._rates(steps, n, secs)}" if steps else ""
        print(f"done: {self.total_steps} steps in {elapsed_s:.1f} s{tail}", file=sys.stderr, flush=True)


def start_fields(
    name: str, args: argparse.Namespace, device: torch.device, flops_per_step: float | None, events: EventWriter, **extra: Any
) -> dict:
    """Measure or look up the peak and build the start event's fields."""
    dname = device_name(device)
    peak = table_peak_flops(dname, args.precision) if device.type == "cuda" else None
    source = "table" if peak else None
    if peak is None:
        with events.phase("measure_peak"):
            peak = measure_peak_flops(device, args.precision)
        source = "measured"
    return dict(
        name=name,
        device=device.type,
        device_name=dname,
        device_uuid=device_uuid(device),
        precision=args.precision,
        batch_size=args.batch_size,
        flops_per_step=flops_per_step,
        peak_flops=peak,
        peak_flops_source=source,
        steps_planned=args.steps,
        compiled=bool(args.compile),
        **extra,
    )


def _sigterm_to_exit(signum, frame):  # so that `finally` runs and the end event is written
    raise SystemExit(128 + signum)


def run_events(events: EventWriter, body: Callable[[dict], None]) -> int:
    """Run `body(state)`, which keeps state["steps"] up to date, then write `end`: ok, or error
    with a one-line reason (an exception, Ctrl-C, SIGTERM), re-raising the error."""
    with contextlib.suppress(ValueError):  # not in the main thread
        signal.signal(signal.SIGTERM, _sigterm_to_exit)
    state = {"steps": 0}
    try:
        body(state)
    except BaseException as exc:
        if isinstance(exc, KeyboardInterrupt):
            message = "interrupted"
        elif isinstance(exc, SystemExit):
            message = "terminated" if exc.code == 128 + signal.SIGTERM else f"exit {exc.code}"
        else:
            message = f"{type(exc).__name__}: {exc}"
        events.end(steps=state["steps"], status="error", error=message)
        raise
    events.end(steps=state["steps"], status="ok")
    return 0


def train(
    name: str,
    args: argparse.Namespace,
    device: torch.device,
    *,
    build_model: Callable[[], nn.Module],
    make_batch: Callable[..., Any],
    loss_fn: Callable[[nn.Module, Any], torch.Tensor],
    make_optimizer: Callable[[nn.Module], torch.optim.Optimizer],
    channels_last: bool = False,
    n_batches: int = 4,
    unit: str = "samples",
    **extra: Any,
) -> int:
    """The shared loop: count FLOPs, build, train, report each step (events and progress).

    make_batch(device, generator=None) -> (inputs, targets); `n_batches` synthetic batches are
    made on the device up front and cycled, so no data work happens inside the timed loop.
    """
    events = EventWriter.from_env()

    def body(state: dict) -> None:
        with events.phase("setup"):
            with events.phase("count_flops"):
                flops = count_train_flops(build_model, make_batch, loss_fn, device)
            model = build_model().to(device)
            if channels_last:
                model = model.to(memory_format=torch.channels_last)
            model.train()
            optimizer = make_optimizer(model)
            scaler = torch.amp.GradScaler("cuda") if args.precision == "fp16" and device.type == "cuda" else None
            gen = torch.Generator(device="cpu").manual_seed(args.seed + 1)
            batches = [make_batch(device, generator=gen) for _ in range(n_batches)]
            if channels_last:
                batches = [(x.contiguous(memory_format=torch.channels_last), y) for x, y in batches]
            step_model = torch.compile(model) if args.compile else model
            fields = start_fields(name, args, device, flops, events, sample_unit=unit, **extra)
        events.start(**fields)
        progress = Progress(args.steps, flops, fields["peak_flops"], quiet=args.quiet, unit=unit)
        t_start = time.perf_counter()
        for step in range(1, args.steps + 1):
            batch = batches[(step - 1) % len(batches)]
            if args.compile and step == 1:
                events.phase_begin("compile")  # torch.compile compiles lazily, in the first step
            t0 = time.perf_counter()
            optimizer.zero_grad(set_to_none=True)
            with autocast(device, args.precision):
                loss = loss_fn(step_model, batch)
            if scaler is not None:
                scaler.scale(loss).backward()
                scaler.step(optimizer)
                scaler.update()
            else:
                loss.backward()
                optimizer.step()
            loss_value = loss.item()  # waits for the step's kernels
            synchronize(device)
            wall = time.perf_counter() - t0
            if args.compile and step == 1:
                events.phase_end("compile")
            state["steps"] = step
            events.step(step=step, samples=args.batch_size, loss=loss_value, wall_s=wall)
            progress.update(step, args.batch_size, loss_value, wall)
        progress.summary(time.perf_counter() - t_start)

    return run_events(events, body)
