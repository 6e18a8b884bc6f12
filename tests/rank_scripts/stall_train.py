"""Local SGD on gloo, launched by torchrun: each rank steps on its own and the ranks average their
weights every SYNC steps. Rank STALL_RANK's dataset hangs once, for STALL_S, at batch STALL_AT: the
other ranks step on to the next average and wait there for it."""

import os
import time

import torch
import torch.distributed as dist
from torch.utils.data import DataLoader, Dataset

STEPS = int(os.environ.get("STEPS", "400"))
SYNC = int(os.environ.get("SYNC", "200"))
STALL_RANK = int(os.environ.get("STALL_RANK", "1"))
STALL_AT = int(os.environ.get("STALL_AT", "10"))
STALL_S = float(os.environ.get("STALL_S", "60"))
BATCH = 4


class Data(Dataset):
    def __init__(self, rank):
        self.rank = rank

    def __len__(self):
        return STEPS * BATCH

    def __getitem__(self, i):
        if self.rank == STALL_RANK and i == STALL_AT * BATCH:
            time.sleep(STALL_S)  # a file system that stops answering
        time.sleep(0.002)
        return torch.randn(8), torch.randn(1)


def main():
    dist.init_process_group("gloo")
    rank, world = dist.get_rank(), dist.get_world_size()
    model = torch.nn.Linear(8, 1)
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    steps = 0
    for x, y in DataLoader(Data(rank), batch_size=BATCH):
        opt.zero_grad()
        torch.nn.functional.mse_loss(model(x), y).backward()
        opt.step()
        steps += 1
        if steps % SYNC == 0:
            with torch.no_grad():
                for p in model.parameters():
                    dist.all_reduce(p)
                    p /= world
    print(f"rank {rank} steps {steps}", flush=True)
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
