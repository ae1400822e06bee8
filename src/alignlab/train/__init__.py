"""The engine: one training loop (`loop.Trainer`) that every recipe in `alignlab.recipes` shares."""

from alignlab.train.loop import Trainer, TrainResult

__all__ = ["Trainer", "TrainResult"]
