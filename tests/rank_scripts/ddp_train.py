"""DDP launched by torchrun (RANK, WORLD_SIZE, MASTER_ADDR/PORT in the environment): gloo on the CPU, NCCL where a GPU is visible."""

import os
import time

import torch
import torch.distributed as dist
from torch.utils.data import DataLoader, Dataset

STEPS = int(os.environ.get("STEPS", "30"))
BATCH = 4
WARMUP = 2


class Data(Dataset):
    def __init__(self, slow):
        self.slow = slow

    def __len__(self):
        return STEPS * BATCH

    def __getitem__(self, i):
        hang = os.environ.get("HANG_AFTER")  # (unset: never; a dataset of more items reads them all)
        if self.slow and hang is not None and i >= int(hang) * BATCH:
            time.sleep(3600)  # a stuck read: the other ranks wait for it at the next all-reduce
        if self.slow:
            time.sleep(float(os.environ.get("SLOW_S", "0.004")))  # a slow disk
        return torch.randn(8), torch.randn(1)


def train(rank, workers=0, device="cpu", built=None):
    """``built``: a (model, optimizer) the parent made and passed to the rank (pickled by spawn)."""
    layer, opt = built if built is not None else (torch.nn.Linear(8, 1).to(device), None)
    model = torch.nn.parallel.DistributedDataParallel(layer)
    opt = opt if opt is not None else torch.optim.SGD(model.parameters(), lr=0.01)
    slow = rank == int(os.environ.get("SLOW_RANK", "1"))
    busy = float(os.environ.get("SLOW_COMPUTE_S", "0")) if slow else 0.0  # its own work, not its data
    loader = DataLoader(Data(slow and not busy), batch_size=BATCH, num_workers=workers)

    def step(x, y):
        x, y = x.to(device), y.to(device)
        opt.zero_grad()
        if busy:
            time.sleep(busy)  # a slow host thread (preprocessing on the rank's own thread)
        torch.nn.functional.mse_loss(model(x), y).backward()
        opt.step()

    measure(rank, loader, step)


def measure(rank, loader, step):
    """Train over ``loader`` with ``step(x, y)``, timing its own waits for batches."""
    steps = samples = 0
    wait = 0.0
    batches = iter(loader)
    while True:
        if steps == WARMUP:  # its share of waiting is measured after warm-up (loader workers starting)
            begin, wait = time.perf_counter(), 0.0
        t0 = time.perf_counter()
        try:
            x, y = next(batches)
        except StopIteration:
            break
        wait += time.perf_counter() - t0
        step(x, y)
        steps += 1
        samples += len(x)
        end = time.perf_counter()  # the last step's end (not the loader's shutting down)
    total = end - begin
    print(f"rank {rank} steps {steps} samples {samples} wait {wait / total:.4f}", flush=True)
    if os.environ.get("RATE_DIR"):  # its own samples/s after warm-up, for a metrics file
        with open(os.path.join(os.environ["RATE_DIR"], f"rank{rank}"), "a") as f:
            f.write(f"{BATCH * (steps - WARMUP) / total}\n")


if __name__ == "__main__":
    # the backend and device picked the usual way: NCCL and this rank's GPU where there is one
    cuda = torch.cuda.is_available()
    dist.init_process_group("nccl" if cuda else "gloo")
    train(dist.get_rank(), device=f"cuda:{os.environ['LOCAL_RANK']}" if cuda else "cpu")
    dist.destroy_process_group()
