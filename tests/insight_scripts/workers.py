import multiprocessing as mp

import torch


def train(n):
    model = torch.nn.Linear(2, 1)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    for _ in range(n):
        opt.zero_grad()
        model(torch.ones(4, 2)).sum().backward()
        opt.step()


if __name__ == "__main__":
    train(2)  # before the workers
    child = mp.get_context("fork").Process(target=train, args=(5,))
    child.start()
    child.join()
    train(2)  # after
    print("main trained 4 steps; its forked worker trained 5, exit", child.exitcode)
