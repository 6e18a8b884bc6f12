import builtins
import os
import sys

import torch

print(builtins.USER_SITE_MARK)
print("PYTHONPATH=" + os.environ.get("PYTHONPATH", ""))
print("inject on sys.path:", any("inject" in p for p in sys.path))
model = torch.nn.Linear(2, 1)
opt = torch.optim.SGD(model.parameters(), lr=0.1)
for _ in range(3):
    opt.zero_grad()
    model(torch.ones(4, 2)).sum().backward()
    opt.step()
