import torch

print("a tensor, and no training:", torch.ones(3).sum().item())
