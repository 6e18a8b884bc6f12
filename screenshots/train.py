"""A training script as users write it (it knows nothing of gputop), for the README's picture of
an unmodified script under `gputop --run`: a small model fed by a DataLoader whose samples take a
few milliseconds each to make, as decoding images from disk would."""

import argparse
import time

import torch
from torch.utils.data import DataLoader, Dataset


class Images(Dataset):
    def __len__(self):
        return 4096

    def __getitem__(self, i):
        time.sleep(0.03)  # reading and decoding one image
        return torch.randn(3, 32, 32), i % 10


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--epochs", type=int, default=100)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    device = "cuda" if torch.cuda.is_available() else "cpu"
    model = torch.nn.Sequential(
        torch.nn.Conv2d(3, 16, 3, padding=1),
        torch.nn.ReLU(),
        torch.nn.AdaptiveAvgPool2d(8),
        torch.nn.Flatten(),
        torch.nn.Linear(16 * 64, 10),
    ).to(device)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    loader = DataLoader(Images(), batch_size=32, shuffle=True, num_workers=args.workers)
    for epoch in range(args.epochs):
        for i, (x, y) in enumerate(loader):
            x, y = x.to(device), y.to(device)
            opt.zero_grad()
            loss = torch.nn.functional.cross_entropy(model(x), y)
            loss.backward()
            opt.step()
            if i % 20 == 0:
                print(f"epoch {epoch} batch {i} loss {loss.item():.3f}", flush=True)


if __name__ == "__main__":
    main()
