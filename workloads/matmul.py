"""Dense square matrix multiply (GEMM) at the device's peak: the ceiling the others aim at.

Each step multiplies two N x N matrices `--batch-size` times (one "sample" = one matmul,
2*N^3 FLOPs). No training, so no loss. Inputs are made in the chosen precision directly
(bf16/fp16 tensors, not autocast).
"""

from __future__ import annotations

import sys
import time

if __package__:  # python -m gputop.workloads.matmul, as gputop runs it
    from . import common
    from .events import EventWriter
else:  # python workloads/matmul.py: its folder is on sys.path
    import common  # type: ignore[no-redef]
    from events import EventWriter  # type: ignore[no-redef]

import torch


def main(argv: list[str] | None = None) -> int:
    parser = common.base_parser(
        __doc__.splitlines()[0],
        cpu_defaults=dict(steps=40, batch_size=4, n=2048),
        cuda_defaults=dict(steps=200, batch_size=20, n=8192),
    )
    parser.add_argument("--n", type=common.positive_int, default=None, help="matrix side N (default: 2048 on cpu, 8192 on cuda)")
    args, device = common.parse(parser, argv)
    events = EventWriter.from_env()
    n, per_step = args.n, args.batch_size
    flops = 2 * n**3 * per_step

    def body(state: dict) -> None:
        with events.phase("setup"):
            gen = torch.Generator(device="cpu").manual_seed(args.seed)
            dtype = common.dtype_of(args.precision)
            a = torch.randn(n, n, generator=gen).to(device=device, dtype=dtype)
            b = torch.randn(n, n, generator=gen).to(device=device, dtype=dtype)
            c = torch.empty(n, n, device=device, dtype=dtype)
            mm = torch.compile(torch.matmul) if args.compile else torch.matmul
            fields = common.start_fields("matmul", args, device, flops, events, sample_unit="matmuls", n=n)
        events.start(**fields)
        progress = common.Progress(args.steps, flops, fields["peak_flops"], quiet=args.quiet, unit="matmuls")
        t_start = time.perf_counter()
        for step in range(1, args.steps + 1):
            if args.compile and step == 1:
                events.phase_begin("compile")  # torch.compile compiles lazily, in the first call
            t0 = time.perf_counter()
            for _ in range(per_step):
                if args.compile:
                    c = mm(a, b)
                else:
                    torch.matmul(a, b, out=c)
            common.synchronize(device)
            wall = time.perf_counter() - t0
            if args.compile and step == 1:
                events.phase_end("compile")
            state["steps"] = step
            events.step(step=step, samples=per_step, loss=None, wall_s=wall)
            progress.update(step, per_step, None, wall)
        progress.summary(time.perf_counter() - t_start)

    return common.run_events(events, body)


if __name__ == "__main__":
    sys.exit(main())
