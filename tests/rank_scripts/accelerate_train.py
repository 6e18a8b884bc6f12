"""A plain loop prepared by Hugging Face accelerate, launched with
``accelerate launch --multi_gpu --num_processes 2`` (gloo on this CPU); the dataset, its slow rank
and the loop that measures itself as in ddp_train.py."""

import os

import torch
from accelerate import Accelerator
from ddp_train import BATCH, Data, measure
from torch.utils.data import DataLoader


class Both(Data):
    def __len__(self):
        return 2 * super().__len__()  # accelerate gives each of the 2 ranks half


def main():
    acc = Accelerator(cpu=True)
    rank = acc.process_index
    model = torch.nn.Linear(8, 1)
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    loader = DataLoader(Both(rank == int(os.environ.get("SLOW_RANK", "1"))), batch_size=BATCH)
    model, opt, loader = acc.prepare(model, opt, loader)

    def step(x, y):
        opt.zero_grad()
        acc.backward(torch.nn.functional.mse_loss(model(x), y))
        opt.step()

    measure(rank, loader, step)


if __name__ == "__main__":
    main()
