"""What keeps a run's checkpoints good: a finiteness check of tensors and a divergence watch
on the loss (both used by `alignlab.train.loop.Trainer`)."""

from __future__ import annotations

import statistics
from collections import deque
from collections.abc import Iterable
from typing import Any

import torch

from alignlab.config import TrainSettings


def non_finite(named: Iterable[tuple[str, torch.Tensor]]) -> list[str]:
    """Names of the floating-point tensors in `named` holding a NaN or an infinity (one sync)."""
    names, flags = [], []
    for name, t in named:
        if t.is_floating_point():
            names.append(name)
            flags.append(torch.isfinite(t.detach()).all())
    if not flags:
        return []
    ok = torch.stack([f.to(flags[0].device) for f in flags]).tolist()
    return [n for n, good in zip(names, ok) if not good]


class DivergenceWatch:
    """Stops a run whose loss stays above k x its running median for m steps in a row.

    k is `train.divergence_factor` (0 = off) and m `train.divergence_patience` (read from the
    settings each step). The median and the scale (median of |loss|, so losses of either sign
    work: for positive losses the bar is exactly k x median) come from the last `window` calm
    steps; spikes never enter the window. Checking starts after `min_history` calm steps.
    """

    window = 100
    min_history = 10

    def __init__(self, cfg: TrainSettings):
        self.cfg = cfg
        self.history: deque[float] = deque(maxlen=self.window)
        self.streak = 0  # consecutive steps above the bar
        self.first_step = 0  # where the current streak began

    @property
    def factor(self) -> float:
        return float(self.cfg.divergence_factor)

    @property
    def patience(self) -> int:
        return int(self.cfg.divergence_patience)

    def bar(self) -> float | None:
        """The loss above which a step counts as a spike (None: off, or too little history)."""
        if self.factor <= 0 or len(self.history) < self.min_history:
            return None
        median = statistics.median(self.history)
        scale = statistics.median(abs(x) for x in self.history)
        return median + (self.factor - 1.0) * max(scale, 1e-12)

    def update(self, loss: float, step: int) -> str:
        """Record step `step`'s loss; returns why the run must stop ('' to go on)."""
        bar = self.bar()
        if bar is None or loss <= bar:
            self.streak = 0
            self.history.append(loss)
            return ""
        if self.streak == 0:
            self.first_step = step
        self.streak += 1
        if self.streak < self.patience:
            return ""
        return (f"loss diverged: above {self.factor:g}x its running median "
                f"({statistics.median(self.history):.4g}; bar {bar:.4g}) for {self.streak} steps in a row "
                f"(steps {self.first_step}-{step}, last {loss:.4g})")

    @property
    def suspect(self) -> str:
        """Why a checkpoint taken now would not be good ('' when the loss is calm)."""
        return f"loss above the divergence bar since step {self.first_step}" if self.streak else ""

    def state_dict(self) -> dict[str, Any]:
        return {"history": list(self.history), "streak": self.streak, "first_step": self.first_step}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.history = deque(state["history"], maxlen=self.window)
        self.streak, self.first_step = int(state["streak"]), int(state["first_step"])
