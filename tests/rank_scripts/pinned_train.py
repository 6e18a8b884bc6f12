"""DDP launched by torchrun, every rank doing the same host work a step (a preprocessing loop of
PREP_CPU_S of CPU time on its own thread); rank SLOW_RANK pins itself (and so its threads) to one
core that a busy spinner it starts occupies too, so it gets about half of that core."""

import os
import subprocess
import sys
import time

RANK = int(os.environ["RANK"])
SLOW = RANK == int(os.environ.get("SLOW_RANK", "1"))
if SLOW:  # before torch starts its threads: they inherit the affinity
    core = max(os.sched_getaffinity(0))
    os.sched_setaffinity(0, {core})
    spinner = subprocess.Popen([sys.executable, "-c", f"import os\nos.sched_setaffinity(0, {{{core}}})\nwhile True: pass"])

import torch  # noqa: E402
import torch.distributed as dist  # noqa: E402
from torch.utils.data import DataLoader, TensorDataset  # noqa: E402

STEPS = int(os.environ.get("STEPS", "100"))
PREP_CPU_S = float(os.environ.get("PREP_CPU_S", "0.02"))


def prepare():
    """The same host work on every rank: PREP_CPU_S of this thread's CPU time."""
    began = time.thread_time()
    while time.thread_time() - began < PREP_CPU_S:
        pass


def main():
    dist.init_process_group("gloo")
    model = torch.nn.parallel.DistributedDataParallel(torch.nn.Linear(8, 1))
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    loader = DataLoader(TensorDataset(torch.randn(STEPS * 4, 8), torch.randn(STEPS * 4, 1)), batch_size=4)
    steps = 0
    for x, y in loader:
        prepare()
        opt.zero_grad()
        torch.nn.functional.mse_loss(model(x), y).backward()
        opt.step()
        steps += 1
    print(f"rank {RANK} steps {steps} cuda initialized {torch.cuda.is_initialized()}", flush=True)
    dist.destroy_process_group()


try:
    main()
finally:
    if SLOW:
        spinner.kill()
        spinner.wait()
