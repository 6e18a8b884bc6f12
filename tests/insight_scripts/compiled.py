import torch

model = torch.nn.Sequential(torch.nn.Linear(8, 8), torch.nn.ReLU(), torch.nn.Linear(8, 1))
opt = torch.optim.SGD(model.parameters(), lr=0.01)
# aot_eager: dynamo and AOT autograd (a compiled forward and backward graph) without a C++
# toolchain; inductor's CPU backend needs one and minutes on a small machine
compiled = torch.compile(model, backend="aot_eager")
x, y = torch.randn(16, 8), torch.randn(16, 1)
for _ in range(4):
    opt.zero_grad()
    torch.nn.functional.mse_loss(compiled(x), y).backward()
    opt.step()
print("compiled: 4 steps")
