"""One process, a DataLoader with 3 workers, the last one slow: the batches come in turn from
each, so two steps of ~1 ms come before one of ~64 ms (a median of per-step rates lands on the
fast ones). The script measures its own samples/s: the samples of its steps after the
first over the time from the first step's end to the last's."""

import time

import torch
import torch.utils.data
from torch.utils.data import DataLoader, Dataset

STEPS, BATCH = 30, 16


class Slow(Dataset):
    def __len__(self):
        return STEPS * BATCH

    def __getitem__(self, i):
        if torch.utils.data.get_worker_info().id == 2:
            time.sleep(0.004)
        return torch.randn(8), torch.randn(1)


if __name__ == "__main__":
    model = torch.nn.Linear(8, 1)
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    samples, first_end = 0, None
    for step, (x, y) in enumerate(DataLoader(Slow(), batch_size=BATCH, num_workers=3), 1):
        opt.zero_grad()
        torch.nn.functional.mse_loss(model(x), y).backward()
        opt.step()
        if step == 1:
            first_end = time.perf_counter()
        else:
            samples += len(x)
            last_end = time.perf_counter()
    print(f"own samples/s {samples / (last_end - first_end):.2f}", flush=True)
