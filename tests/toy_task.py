"""A toy regression task (40 examples of 4 features, targets 0/1/2) that the trainer tests share."""

from __future__ import annotations

import torch

DATA = [(torch.randn(4, generator=torch.Generator().manual_seed(i)), float(i % 3)) for i in range(40)]


def collate(items):
    return torch.stack([x for x, _ in items]), torch.tensor([y for _, y in items])


def mse(model, batch):
    x, y = batch
    return ((model(x).squeeze(-1) - y) ** 2).mean(), {"y": y.mean()}


def mse_interrupted_at(call: int):
    """`mse` that raises KeyboardInterrupt on its `call`-th call: a crash mid-run, for resume tests."""
    calls = {"n": 0}

    def crashing(model, batch):
        calls["n"] += 1
        if calls["n"] == call:
            raise KeyboardInterrupt
        return mse(model, batch)

    return crashing
