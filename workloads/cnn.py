"""ResNet-style CNN (BasicBlock / Bottleneck) trained on synthetic images: convolution-heavy.

Written here from the ResNet paper (He et al., 2015); torchvision is not needed. Small images
(up to 64 px) get a CIFAR-style stem (3x3 conv, no max-pool), larger ones the ImageNet stem
(7x7 stride-2 conv and max-pool).
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


class BasicBlock(nn.Module):
    expansion = 1

    def __init__(self, c_in: int, width: int, stride: int = 1) -> None:
        super().__init__()
        c_out = width * self.expansion
        self.conv1 = nn.Conv2d(c_in, width, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = nn.Conv2d(width, c_out, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.shortcut = _shortcut(c_in, c_out, stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.shortcut(x))


class Bottleneck(nn.Module):
    expansion = 4

    def __init__(self, c_in: int, width: int, stride: int = 1) -> None:
        super().__init__()
        c_out = width * self.expansion
        self.conv1 = nn.Conv2d(c_in, width, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = nn.Conv2d(width, width, 3, stride, 1, bias=False)  # stride on the 3x3 (v1.5)
        self.bn2 = nn.BatchNorm2d(width)
        self.conv3 = nn.Conv2d(width, c_out, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(c_out)
        self.shortcut = _shortcut(c_in, c_out, stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = F.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return F.relu(out + self.shortcut(x))


def _shortcut(c_in: int, c_out: int, stride: int) -> nn.Module:
    if stride == 1 and c_in == c_out:
        return nn.Identity()
    return nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride, bias=False), nn.BatchNorm2d(c_out))


# depth -> (block, blocks per stage, base width)
DEPTHS = {
    "tiny": (BasicBlock, (1, 1, 1, 1), 16),
    "18": (BasicBlock, (2, 2, 2, 2), 64),
    "50": (Bottleneck, (3, 4, 6, 3), 64),
}


class ResNet(nn.Module):
    def __init__(self, depth: str = "18", classes: int = 10, image_size: int = 32) -> None:
        super().__init__()
        block, counts, base = DEPTHS[depth]
        if image_size <= 64:
            self.stem = nn.Sequential(nn.Conv2d(3, base, 3, 1, 1, bias=False), nn.BatchNorm2d(base), nn.ReLU())
        else:
            self.stem = nn.Sequential(nn.Conv2d(3, base, 7, 2, 3, bias=False), nn.BatchNorm2d(base), nn.ReLU(), nn.MaxPool2d(3, 2, 1))
        stages, c_in = [], base
        for i, n in enumerate(counts):
            width = base * 2**i
            for j in range(n):
                stages.append(block(c_in, width, stride=2 if (i > 0 and j == 0) else 1))
                c_in = width * block.expansion
        self.stages = nn.Sequential(*stages)
        self.head = nn.Linear(c_in, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stages(self.stem(x))
        return self.head(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1))


def main(argv: list[str] | None = None) -> int:
    parser = common.base_parser(
        __doc__.splitlines()[0],
        cpu_defaults=dict(steps=30, batch_size=32, depth="18", image_size=32),
        cuda_defaults=dict(steps=200, batch_size=256, depth="50", image_size=224),
    )
    parser.add_argument(
        "--depth", choices=tuple(DEPTHS), default=None, help="tiny (4 basic blocks, width 16), 18 or 50 (default: 18 on cpu, 50 on cuda)"
    )
    parser.add_argument(
        "--image-size", type=common.positive_int, default=None, help="square image side in pixels (default: 32 on cpu, 224 on cuda)"
    )
    parser.add_argument(
        "--classes", type=common.positive_int, default=None, help="output classes (default: 10 for images up to 64 px, else 1000)"
    )
    args, device = common.parse(parser, argv)
    if args.classes is None:
        args.classes = 10 if args.image_size <= 64 else 1000

    def make_batch(dev: torch.device, generator: torch.Generator | None = None):
        where = "cpu" if generator is not None else dev
        x = torch.randn(args.batch_size, 3, args.image_size, args.image_size, generator=generator, device=where)
        y = torch.randint(0, args.classes, (args.batch_size,), generator=generator, device=where)
        return x.to(dev), y.to(dev)

    return common.train(
        "cnn",
        args,
        device,
        build_model=lambda: ResNet(args.depth, args.classes, args.image_size),
        make_batch=make_batch,
        loss_fn=lambda model, batch: F.cross_entropy(model(batch[0]), batch[1]),
        make_optimizer=lambda model: torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=5e-5),
        channels_last=device.type == "cuda",
        unit="images",
        depth=args.depth,
        image_size=args.image_size,
    )


if __name__ == "__main__":
    sys.exit(main())
