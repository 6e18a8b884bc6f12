"""MNIST-sized MLP (784 -> hidden -> 10) on synthetic data: the smallest training workload.

Small matmuls and many tiny kernels: on a GPU it is launch-bound unless the batch is large.
"""

from __future__ import annotations

import sys

if __package__:  # python -m gputop.workloads.NAME, as gputop runs it
    from . import common
else:  # python workloads/NAME.py: its folder is on sys.path
    import common  # type: ignore[no-redef]

import torch
import torch.nn as nn
import torch.nn.functional as F

IN_FEATURES, CLASSES = 28 * 28, 10


def build_model(hidden: int, layers: int) -> nn.Module:
    dims = [IN_FEATURES] + [hidden] * layers
    blocks: list[nn.Module] = []
    for a, b in zip(dims, dims[1:]):
        blocks += [nn.Linear(a, b), nn.ReLU()]
    return nn.Sequential(nn.Flatten(), *blocks, nn.Linear(dims[-1], CLASSES))


def main(argv: list[str] | None = None) -> int:
    parser = common.base_parser(
        __doc__.splitlines()[0],
        cpu_defaults=dict(steps=400, batch_size=256),
        cuda_defaults=dict(steps=2000, batch_size=8192),
    )
    parser.add_argument("--hidden", type=common.positive_int, default=1024, help="hidden width (default: 1024)")
    parser.add_argument("--layers", type=common.positive_int, default=2, help="hidden layers (default: 2)")
    args, device = common.parse(parser, argv)

    def make_batch(dev: torch.device, generator: torch.Generator | None = None):
        x = torch.rand(args.batch_size, 1, 28, 28, generator=generator, device="cpu" if generator else dev)
        y = torch.randint(0, CLASSES, (args.batch_size,), generator=generator, device="cpu" if generator else dev)
        return x.to(dev), y.to(dev)

    return common.train(
        "mlp",
        args,
        device,
        build_model=lambda: build_model(args.hidden, args.layers),
        make_batch=make_batch,
        loss_fn=lambda model, batch: F.cross_entropy(model(batch[0]), batch[1]),
        make_optimizer=lambda model: torch.optim.Adam(model.parameters(), lr=1e-3),
        unit="samples",
        hidden=args.hidden,
        layers=args.layers,
    )


if __name__ == "__main__":
    sys.exit(main())
