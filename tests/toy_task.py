"""A toy regression task (40 examples of 4 features, targets 0/1/2) that the trainer tests share."""

from __future__ import annotations

import torch

DATA = [(torch.randn(4, generator=torch.Generator().manual_seed(i)), float(i % 3)) for i in range(40)]


def collate(items):
    return torch.stack([x for x, _ in items]), torch.tensor([y for _, y in items])


def mse(model, batch):
    x, y = batch
    return ((model(x).squeeze(-1) - y) ** 2).mean(), {"y": y.mean()}
