"""Sequence rewards for RLHF: a learned reward model, the finiteness check, and the
normalisation/clipping applied before rewards enter PPO. A NaN/inf reward stops the run.
Reward names (`gold:sentiment`, a folder) resolve in `alignlab.resolve.reward_fn`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch

from alignlab.errors import ConfigError, TrainingError

RewardFn = Callable[[Sequence[str], Sequence[str]], Sequence[float]]
REWARD_NORMS = ("none", "batch", "running")


def learned_reward_fn(path: str | Path, batch_size: int = 32, max_length: int = 512) -> RewardFn:
    """Reward from a saved scalar reward model (full model or LoRA adapter), as the
    reward-model recipe trained it (`alignlab.models.reward.RewardModel`)."""
    from alignlab.models.reward import RewardModel

    folder = Path(path)
    if not (folder / "config.json").exists() and not (folder / "adapter_config.json").exists():
        raise ConfigError(f"reward model folder {folder} has no config.json or adapter_config.json")
    return RewardModel.load(folder, max_length=max_length, batch_size=batch_size)


def check_finite_rewards(scores: Sequence[float], prompts: Sequence[str], responses: Sequence[str],
                         where: str = "") -> torch.Tensor:
    """Scores as a float tensor; a NaN/inf score raises TrainingError naming the sample."""
    if len(scores) != len(responses):
        raise TrainingError(f"reward function returned {len(scores)} scores for {len(responses)} responses{where}")
    for i, s in enumerate(scores):
        if not isinstance(s, (int, float)) or not math.isfinite(float(s)):
            raise TrainingError(
                f"reward function returned {s!r} for sample {i}{where} "
                f"(prompt {prompts[i]!r}, response {responses[i][:80]!r}); stopped"
            )
    return torch.tensor([float(s) for s in scores], dtype=torch.float32)


class RewardProcessor:
    """Normalise ('none' | 'batch' | 'running' mean/std) then clip sequence rewards to ±clip."""

    def __init__(self, norm: str = "none", clip: float = 0.0, eps: float = 1e-8):
        if norm not in REWARD_NORMS:
            raise ConfigError(f"ppo.reward_norm: '{norm}' is not one of {list(REWARD_NORMS)}")
        self.norm, self.clip, self.eps = norm, clip, eps
        self.count, self.mean, self.m2 = 0, 0.0, 0.0

    def update_stats(self, scores: torch.Tensor) -> None:
        """Fold a batch into the running mean/variance (Chan et al. parallel update)."""
        n = scores.numel()
        b_mean = float(scores.mean())
        b_m2 = float(((scores - b_mean) ** 2).sum())
        total = self.count + n
        delta = b_mean - self.mean
        self.mean += delta * n / total
        self.m2 += b_m2 + delta**2 * self.count * n / total
        self.count = total

    @property
    def std(self) -> float:
        return math.sqrt(self.m2 / max(1, self.count - 1)) if self.count > 1 else 1.0

    def __call__(self, scores: torch.Tensor) -> torch.Tensor:
        """Processed scores (the raw ones are left untouched)."""
        out = scores.float()
        if self.norm == "batch" and out.numel() > 1:
            out = (out - out.mean()) / (out.std() + self.eps)
        elif self.norm == "running":
            self.update_stats(out)
            out = (out - self.mean) / (self.std + self.eps)
        if self.clip > 0:
            out = out.clamp(-self.clip, self.clip)
        return out

    def state_dict(self) -> dict[str, Any]:
        return {"count": self.count, "mean": self.mean, "m2": self.m2}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.count, self.mean, self.m2 = int(state["count"]), float(state["mean"]), float(state["m2"])
