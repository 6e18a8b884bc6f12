import torch

model = torch.nn.Linear(4, 1)
opt = torch.optim.LBFGS(model.parameters(), max_iter=20)
x, y = torch.randn(64, 4), torch.randn(64, 1)
calls = 0


def closure():
    global calls
    calls += 1
    opt.zero_grad()
    loss = torch.nn.functional.mse_loss(model(x), y)
    loss.backward()
    return loss


for _ in range(3):
    opt.step(closure)
print(f"closure calls {calls}")
