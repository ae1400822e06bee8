"""One shared training loop (`loop.Trainer`) plus a thin module per method."""

from alignlab.train.loop import Trainer, TrainResult

__all__ = ["Trainer", "TrainResult"]
