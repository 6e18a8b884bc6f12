"""GPT-style decoder-only transformer trained on synthetic tokens: next-token prediction.

Pre-norm blocks, causal F.scaled_dot_product_attention (flash / memory-efficient kernels where
the device has them), GELU MLP, learned positions, tied input/output embeddings. --size gpt2 is
GPT-2 small (124M parameters: 12 layers, 768 wide, 12 heads, 1024 context, 50257 vocabulary).
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

# size -> layers, dim, heads, context, vocabulary
SIZES = {
    "tiny": dict(layers=2, dim=64, heads=2, ctx=32, vocab=512),
    "small": dict(layers=4, dim=256, heads=4, ctx=128, vocab=8192),
    "gpt2": dict(layers=12, dim=768, heads=12, ctx=1024, vocab=50257),
}


class Block(nn.Module):
    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.ln1 = nn.LayerNorm(dim)
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        self.ln2 = nn.LayerNorm(dim)
        self.fc = nn.Linear(dim, 4 * dim)
        self.out = nn.Linear(4 * dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, t, d = x.shape
        q, k, v = self.qkv(self.ln1(x)).split(d, dim=2)
        q, k, v = (z.view(b, t, self.heads, d // self.heads).transpose(1, 2) for z in (q, k, v))
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        x = x + self.proj(y.transpose(1, 2).reshape(b, t, d))
        return x + self.out(F.gelu(self.fc(self.ln2(x)), approximate="tanh"))


class GPT(nn.Module):
    def __init__(self, layers: int, dim: int, heads: int, ctx: int, vocab: int) -> None:
        super().__init__()
        if dim % heads:
            raise ValueError(f"dim {dim} is not divisible by heads {heads}")
        self.tok = nn.Embedding(vocab, dim)
        self.pos = nn.Embedding(ctx, dim)
        self.blocks = nn.Sequential(*(Block(dim, heads) for _ in range(layers)))
        self.ln_f = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, vocab, bias=False)
        self.head.weight = self.tok.weight  # tied embeddings, as in GPT-2
        for m in self.modules():
            if isinstance(m, (nn.Linear, nn.Embedding)):
                nn.init.normal_(m.weight, std=0.02)
            if isinstance(m, nn.Linear) and m.bias is not None:
                nn.init.zeros_(m.bias)

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        pos = torch.arange(idx.shape[1], device=idx.device)
        return self.head(self.ln_f(self.blocks(self.tok(idx) + self.pos(pos))))


def main(argv: list[str] | None = None) -> int:
    parser = common.base_parser(
        __doc__.splitlines()[0],
        cpu_defaults=dict(steps=60, batch_size=8, size="small"),
        cuda_defaults=dict(steps=100, batch_size=16, size="gpt2"),
    )
    parser.add_argument(
        "--size",
        choices=tuple(SIZES),
        default=None,
        help="model size: " + "; ".join(f"{k}: {v}" for k, v in SIZES.items()) + " (default: small on cpu, gpt2 on cuda)",
    )
    for key in ("layers", "dim", "heads", "ctx", "vocab"):
        parser.add_argument(f"--{key}", type=common.positive_int, default=None, help=f"override the size's {key}")
    args, device = common.parse(parser, argv)
    shape = dict(SIZES[args.size])
    shape.update({k: getattr(args, k) for k in shape if getattr(args, k) is not None})
    if shape["dim"] % shape["heads"]:
        parser.error(f"--dim {shape['dim']} must be divisible by --heads {shape['heads']}")

    def make_batch(dev: torch.device, generator: torch.Generator | None = None):
        where = "cpu" if generator is not None else dev
        tokens = torch.randint(0, shape["vocab"], (args.batch_size, shape["ctx"] + 1), generator=generator, device=where)
        tokens = tokens.to(dev)
        return tokens[:, :-1], tokens[:, 1:]

    def loss_fn(model: nn.Module, batch) -> torch.Tensor:
        logits = model(batch[0])
        return F.cross_entropy(logits.flatten(0, 1), batch[1].flatten())

    def make_optimizer(model: nn.Module) -> torch.optim.Optimizer:
        return torch.optim.AdamW(model.parameters(), lr=3e-4, weight_decay=0.1, fused=device.type == "cuda")

    return common.train(
        "transformer",
        args,
        device,
        build_model=lambda: GPT(**shape),
        make_batch=make_batch,
        loss_fn=loss_fn,
        make_optimizer=make_optimizer,
        unit="sequences",
        tokens_per_sample=shape["ctx"],
        size=args.size,
        **shape,
    )


if __name__ == "__main__":
    sys.exit(main())
