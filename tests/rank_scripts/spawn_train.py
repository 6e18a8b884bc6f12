"""DDP on gloo started with torch.multiprocessing.spawn (the spawn start method), or with
start_processes(start_method="fork") where START_METHOD=fork; each rank with a DataLoader worker of
its own. With BUILT_IN_PARENT=1 the parent makes the model and its optimizer and passes them to the
ranks (spawn pickles them: an optimizer the rank never constructed)."""

import os
import socket

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from ddp_train import train


def run(rank, world, built=None):
    dist.init_process_group("gloo", rank=rank, world_size=world)
    train(rank, workers=1, built=built)
    dist.destroy_process_group()


if __name__ == "__main__":
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    os.environ["MASTER_ADDR"], os.environ["MASTER_PORT"] = "127.0.0.1", str(port)
    if os.environ.get("START_METHOD") == "fork":
        mp.start_processes(run, args=(2,), nprocs=2, start_method="fork")
    elif os.environ.get("BUILT_IN_PARENT"):
        layer = torch.nn.Linear(8, 1)
        mp.spawn(run, args=(2, (layer, torch.optim.SGD(layer.parameters(), lr=0.01))), nprocs=2)
    else:
        mp.spawn(run, args=(2,), nprocs=2)
