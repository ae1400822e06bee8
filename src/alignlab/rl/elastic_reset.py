"""Elastic Reset (Noukhovitch et al., 2023) on top of unchanged PPO (SPEC §3).

    θ ← θ0 ; θ̄ ← θ0
    every update:      θ̄ ← η θ̄ + (1 − η) θ
    every n updates:   θ ← θ̄ ;  θ̄ ← θ0

An "update" is the unit chosen by `ema_update`: each optimiser step, each PPO epoch over
a rollout batch, or each rollout batch; the reset period `reset_every` counts the same
unit, so after exactly n updates the online weights equal the EMA and the EMA is θ0.
The tracked weights are the trainable parameters (with LoRA: the adapters and the value
head; frozen base weights never move).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch

from alignlab.errors import ConfigError
from alignlab.method_settings import EMA_UNITS, ElasticResetSettings, EmaUnit  # noqa: F401  (re-exported)
from alignlab.train.loop import Callback, Trainer


@torch.no_grad()
def ema_update_(ema: dict[str, torch.Tensor], online: dict[str, torch.Tensor], decay: float) -> None:
    """In place: ema ← decay · ema + (1 − decay) · online, for every named tensor."""
    for name, e in ema.items():
        e.mul_(decay).add_(online[name].detach().to(e.dtype), alpha=1.0 - decay)


class ElasticReset:
    """EMA of the trainable weights with periodic reset of the online model to it.

    `params` are the live (name, parameter) pairs of the model being trained; names
    starting with `value_prefix` belong to the value head and follow `reset_value_head`.
    """

    def __init__(self, params: Iterable[tuple[str, torch.nn.Parameter]], settings: ElasticResetSettings,
                 value_prefix: str = "value_head."):
        settings.validate()
        self.settings = settings
        self.value_prefix = value_prefix
        self.params = dict(params)
        if not self.params:
            raise ConfigError("elastic reset: the model has no trainable parameters to track")
        self.initial = {n: p.detach().clone() for n, p in self.params.items()}
        self.ema = {n: p.detach().clone() for n, p in self.params.items()}
        self.updates = 0
        self.resets = 0

    def tick(self, unit: str) -> bool:
        """Call at the end of every optimiser step / PPO epoch / rollout batch.

        Updates the EMA when `unit` is the configured one; returns True when this update
        triggered a reset.
        """
        if unit not in EMA_UNITS:
            raise ValueError(f"unknown update unit '{unit}'")
        if unit != self.settings.ema_update:
            return False
        return self.update()

    def update(self) -> bool:
        """One EMA update; resets when the update count reaches a multiple of n."""
        ema_update_(self.ema, self.params, self.settings.decay)
        self.updates += 1
        if self.updates % self.settings.reset_every == 0:
            self.reset()
            return True
        return False

    @torch.no_grad()
    def reset(self) -> None:
        """θ ← θ̄ (value head per `reset_value_head`), then θ̄ ← θ0."""
        for name, p in self.params.items():
            if name.startswith(self.value_prefix):
                mode = self.settings.reset_value_head
                if mode == "ema":
                    p.copy_(self.ema[name])
                elif mode == "initial":
                    p.copy_(self.initial[name])
            else:
                p.copy_(self.ema[name])
            self.ema[name].copy_(self.initial[name])
        self.resets += 1

    def ema_state(self, prefix: str = "", strip: bool = True) -> dict[str, torch.Tensor]:
        """EMA tensors whose names start with `prefix` (prefix removed when `strip`)."""
        return {(n[len(prefix):] if strip else n): t for n, t in self.ema.items() if n.startswith(prefix)}

    def state_dict(self) -> dict[str, Any]:
        return {"ema": {n: t.clone() for n, t in self.ema.items()}, "updates": self.updates, "resets": self.resets}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        missing = set(self.ema) - set(state["ema"])
        if missing:
            raise ConfigError(f"elastic reset state lacks EMA weights for {sorted(missing)[:3]}")
        with torch.no_grad():
            for n, t in self.ema.items():
                t.copy_(state["ema"][n])
        self.updates, self.resets = int(state["updates"]), int(state["resets"])


class ElasticResetCallback(Callback):
    """Elastic Reset subscribed to the online loop: ticks after each step, epoch and iteration;
    at a reset optionally clears the optimiser moments and logs an `elastic_reset` event."""

    def __init__(self, elastic: ElasticReset):
        self.elastic = elastic

    def _tick(self, trainer: Trainer, iteration: int, unit: str) -> None:
        if not self.elastic.tick(unit):
            return
        if self.elastic.settings.reset_optimizer:
            getattr(trainer.optimizer, "optimizer", trainer.optimizer).state.clear()
        trainer.run.log({"step": trainer.step_count, "iteration": iteration, "event": "elastic_reset",
                         "resets": self.elastic.resets})

    def on_step(self, trainer: Trainer, iteration: int) -> None:
        self._tick(trainer, iteration, "step")

    def on_epoch(self, trainer: Trainer, iteration: int) -> None:
        self._tick(trainer, iteration, "epoch")

    def on_iteration(self, trainer: Trainer, iteration: int) -> None:
        self._tick(trainer, iteration, "rollout")
