import torch

w = torch.randn(8, 1, requires_grad=True)
x, y = torch.randn(32, 8), torch.randn(32, 1)
for _ in range(6):
    loss = ((x @ w - y) ** 2).mean()
    loss.backward()
    with torch.no_grad():
        w -= 0.01 * w.grad
    w.grad = None
print("trained 6 steps by hand")
