"""DDP on gloo under torchrun, with the trouble TROUBLE names (each rank prints its own steps):

- ``raise_once``: rank 1 raises at step 5 in the first attempt (TORCHELASTIC_RESTART_COUNT 0);
  with ``--max-restarts 1`` the job restarts and finishes;
- ``raise``: rank 1 raises at step 5 every time (the job fails);
- ``hang``: rank 1 trains, then hangs at the end (never exits);
- ``unequal``: no DDP, each rank its own model; rank R takes STEPS + 10 R steps, then a barrier.

With DUMP_ENV (a directory), each rank first writes its environment there as RANK.json.
"""

import json
import os
import time

import torch
import torch.distributed as dist

STEPS = int(os.environ.get("STEPS", "20"))
TROUBLE = os.environ.get("TROUBLE", "")


def main():
    if os.environ.get("DUMP_ENV"):
        with open(os.path.join(os.environ["DUMP_ENV"], os.environ["RANK"] + ".json"), "w") as f:
            json.dump(dict(os.environ), f)
    dist.init_process_group("gloo")
    rank = dist.get_rank()
    attempt = int(os.environ.get("TORCHELASTIC_RESTART_COUNT", "0"))
    layer = torch.nn.Linear(8, 1)
    model = layer if TROUBLE == "unequal" else torch.nn.parallel.DistributedDataParallel(layer)
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    steps = STEPS + 10 * rank if TROUBLE == "unequal" else STEPS
    for step in range(1, steps + 1):
        if rank == 1 and step == 5 and (TROUBLE == "raise" or (TROUBLE == "raise_once" and attempt == 0)):
            print(f"rank {rank} attempt {attempt} pid {os.getpid()} steps {step - 1} then raises", flush=True)
            raise RuntimeError("rank 1 fails at step 5")
        x, y = torch.randn(4, 8), torch.randn(4, 1)
        opt.zero_grad()
        torch.nn.functional.mse_loss(model(x), y).backward()
        opt.step()
        time.sleep(0.005)
    print(f"rank {rank} attempt {attempt} pid {os.getpid()} steps {steps}", flush=True)
    if TROUBLE == "hang" and rank == 1:
        time.sleep(3600)
    dist.barrier()
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
