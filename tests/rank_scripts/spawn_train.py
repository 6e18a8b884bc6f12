"""DDP on gloo started with torch.multiprocessing.spawn (the spawn start method), or with
start_processes(start_method="fork") where START_METHOD=fork; each rank with a DataLoader worker of
its own."""

import os
import socket

import torch.distributed as dist
import torch.multiprocessing as mp
from ddp_train import train


def run(rank, world):
    dist.init_process_group("gloo", rank=rank, world_size=world)
    train(rank, workers=1)
    dist.destroy_process_group()


if __name__ == "__main__":
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    os.environ["MASTER_ADDR"], os.environ["MASTER_PORT"] = "127.0.0.1", str(port)
    if os.environ.get("START_METHOD") == "fork":
        mp.start_processes(run, args=(2,), nprocs=2, start_method="fork")
    else:
        mp.spawn(run, args=(2,), nprocs=2)
