import torch

torch.manual_seed(0)
model = torch.nn.Sequential(*[torch.nn.Linear(256, 256) for _ in range(2)])
opt = torch.optim.SGD(model.parameters(), lr=1e-4)
x = torch.randn(256, 256)
for _ in range(200):
    opt.zero_grad()
    model(x).square().mean().backward()
    opt.step()
print("200 steps of matmuls")
