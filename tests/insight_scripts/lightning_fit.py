"""A Lightning Trainer.fit, as its docs write one: AdamW, a DataLoader with 2 workers, 3 epochs
of 40 batches (120 optimizer steps)."""

import lightning as L
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset


class Model(L.LightningModule):
    def __init__(self):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(32, 64), nn.ReLU(), nn.Linear(64, 1))

    def training_step(self, batch, batch_idx):
        x, y = batch
        loss = nn.functional.mse_loss(self.net(x), y)
        self.log("loss", loss)
        return loss

    def configure_optimizers(self):
        return torch.optim.AdamW(self.parameters(), lr=1e-3)


if __name__ == "__main__":
    x = torch.randn(640, 32)
    y = torch.randn(640, 1)
    loader = DataLoader(TensorDataset(x, y), batch_size=16, num_workers=2)
    trainer = L.Trainer(
        max_epochs=3, accelerator="cpu", logger=False, enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False
    )
    trainer.fit(Model(), loader)
    print("global_step", trainer.global_step)
