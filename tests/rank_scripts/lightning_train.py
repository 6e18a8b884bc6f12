"""Lightning DDP on gloo on this CPU: strategy "ddp" (Lightning re-launches this script for rank 1)
or "ddp_spawn" (STRATEGY=ddp_spawn). Rank SLOW_RANK's dataset is slow; each rank measures itself."""

import os
import time

import lightning as L
import torch
from torch.utils.data import DataLoader, Dataset

STEPS = int(os.environ.get("STEPS", "30"))
BATCH = 4
WARMUP = 2


class Data(Dataset):
    def __len__(self):
        return STEPS * BATCH * 2  # two ranks: the sampler gives each half

    def __getitem__(self, i):
        if int(os.environ.get("LOCAL_RANK", "0")) == int(os.environ.get("SLOW_RANK", "1")):
            time.sleep(float(os.environ.get("SLOW_S", "0.004")))  # a slow disk
        return torch.randn(8), torch.randn(1)


class TimedLoader(DataLoader):
    """The loader, its every batch timed as this rank waits for it (Lightning fetches the batches)."""

    waited = 0.0

    def __iter__(self):
        batches = super().__iter__()
        while True:
            t0 = time.perf_counter()
            try:
                batch = next(batches)
            except StopIteration:
                return
            TimedLoader.waited += time.perf_counter() - t0
            yield batch


class Model(L.LightningModule):
    def __init__(self):
        super().__init__()
        self.layer = torch.nn.Linear(8, 1)
        self.steps = self.samples = 0
        self.wait = 0.0
        self.last = None

    def training_step(self, batch, i):
        x, y = batch
        return torch.nn.functional.mse_loss(self.layer(x), y)

    def on_train_batch_start(self, batch, i):
        self.samples += len(batch[0])

    def on_train_batch_end(self, out, batch, i):
        self.steps += 1
        self.last = time.perf_counter()
        if self.steps == WARMUP:  # its share of waiting is measured after warm-up
            self.begin, TimedLoader.waited = self.last, 0.0
        self.wait = TimedLoader.waited

    def on_train_end(self):
        total = self.last - self.begin
        print(f"rank {self.global_rank} steps {self.steps} samples {self.samples} wait {self.wait / total:.4f}", flush=True)

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.01)


if __name__ == "__main__":
    trainer = L.Trainer(
        accelerator="cpu",
        devices=2,
        strategy=os.environ.get("STRATEGY", "ddp"),
        max_epochs=1,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    trainer.fit(Model(), TimedLoader(Data(), batch_size=BATCH, num_workers=0))
