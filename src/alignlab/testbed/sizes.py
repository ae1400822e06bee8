"""The testbed's model sizes (torch-free, so `alignlab testbed --help` can list them quickly)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ModelSize:
    """Architecture and pretraining budget of one testbed model size."""

    hidden: int
    layers: int
    heads: int
    intermediate: int
    steps: int
    batch_size: int
    lr: float
    seq_len: int = 128


SIZES: dict[str, ModelSize] = {
    "tiny": ModelSize(hidden=64, layers=2, heads=4, intermediate=192, steps=120, batch_size=16, lr=3e-3),
    # batch 16 with twice the updates per token: the student learns the instructions in one epoch
    # (at batch 32 it needs twice the tokens); about 1.3M tokens each, ≈ 2 min on 2 quiet cores
    "student": ModelSize(hidden=128, layers=4, heads=4, intermediate=384, steps=640, batch_size=16, lr=3e-3),
    "teacher": ModelSize(hidden=256, layers=6, heads=8, intermediate=768, steps=960, batch_size=16, lr=2e-3),
}
