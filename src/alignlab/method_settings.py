"""The torch-free settings blocks that recipe configs nest (sampling, preference and ranking losses, Elastic
Reset, embedding, reward-model heads), so a config and `alignlab CMD --help` load without torch.
Each is re-exported from the module that uses it (generation, rl.elastic_reset, ...), except
PreferenceLossSettings: calling it runs alignlab.losses.preference, so that module cannot import it back."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal, get_args

from alignlab.config import bounded, check_config

if TYPE_CHECKING:
    import torch


@dataclass
class SamplingSettings:
    """How responses are sampled (rollouts, self-labelling, code attempts): one settings block."""

    max_new_tokens: int = bounded(24, ge=1)
    temperature: float = bounded(1.0, ge=0)  # 0 = greedy
    top_p: float = bounded(1.0, gt=0, le=1)
    batch_size: int = bounded(64, ge=1)  # sequences per generation / scoring forward
    # decoder: auto = the static-KV-cache one where the model allows (alignlab.decode), else HF's forward
    # loop; vllm = a colocated vLLM engine (ppo rollouts only; pip install 'alignlab[vllm]', CUDA)
    backend: Literal["auto", "fast", "hf", "vllm"] = "auto"

    def check(self, where: str) -> None:
        """vLLM is only selectable where its package is installed."""
        import importlib.util

        if self.backend == "vllm" and importlib.util.find_spec("vllm") is None:
            from alignlab.errors import ConfigError

            raise ConfigError(f"{where}.backend: 'vllm' needs the vllm package, which is not installed; "
                              "pip install 'alignlab[vllm]' (CUDA), or choose auto, fast or hf")


RankingLoss = Literal["simpo", "dpo"]  # PSLE's ranking objective (alignlab.losses.psle)


@dataclass
class PreferenceLossSettings:
    """The DPO-family objective shared by `prefs` and `akd`: which loss, β, Cal-DPO's calibration."""

    loss: Literal["dpo", "ipo", "cal_dpo"] = "dpo"
    beta: float = bounded(0.1, gt=0)
    calibration_weight: float = bounded(1.0, ge=0)  # Cal-DPO: weight of the squared calibration terms
    calibration_reduction: Literal["example", "batch_mean"] = "example"  # Cal-DPO (official script: batch_mean)

    def __call__(self, policy_chosen: torch.Tensor, policy_rejected: torch.Tensor, ref_chosen: torch.Tensor,
                 ref_rejected: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """`preference_loss` with these settings."""
        from alignlab.losses.preference import preference_loss

        return preference_loss(self.loss, policy_chosen, policy_rejected, ref_chosen, ref_rejected, self.beta,
                               self.calibration_weight, self.calibration_reduction)


EmaUnit = Literal["step", "epoch", "rollout"]
EMA_UNITS = get_args(EmaUnit)


@dataclass
class ElasticResetSettings:
    """Switches of Elastic Reset; `enabled: false` gives plain PPO."""

    enabled: bool = False
    decay: float = bounded(0.995, ge=0, lt=1)  # η, the EMA decay
    reset_every: int = bounded(50, ge=1)  # n, in EMA updates
    ema_update: EmaUnit = "step"  # when the EMA updates: each optimiser step, PPO epoch or rollout
    kl_anchor: Literal["initial", "ema"] = "initial"  # KL penalty reference: θ0 or θ̄
    reset_optimizer: bool = False  # clear the optimiser moments at each reset
    reset_value_head: Literal["keep", "ema", "initial"] = "keep"  # value head at a reset

    def validate(self) -> None:
        """The load-time range checks again, for settings built in code (ConfigError naming the field)."""
        check_config(self, "elastic_reset")


@dataclass(frozen=True)
class EmbedSettings:
    """How texts become vectors; every field but batch_size/chunk_size is part of the cache key."""

    pooling: Literal["auto", "last", "mean"] = "auto"  # last: causal LM; mean: sentence encoder; auto: by model
    layer: int = -1  # which hidden state (index into hidden_states: 0 = token embeddings, -1 = last layer)
    max_length: int = 512  # tokens kept per text; the start of the prompt is cut first
    template: Literal["concat", "chat", "response"] = "concat"  # prompt ids + response ids | chat template | response only
    normalize: bool | None = None  # L2-normalise vectors; default True for mean pooling
    padding_side: Literal["left", "right"] = "right"  # results do not depend on it (tested); kept for checks
    batch_size: int = 32
    chunk_size: int = 1024  # rows written (and resumable) at a time


@dataclass
class GBDTSettings:
    """Histogram gradient-boosted trees (scikit-learn) with early stopping on 10 % of rows."""

    max_iter: int = 200
    learning_rate: float = 0.1
    max_leaf_nodes: int = 31
    l2_regularization: float = 0.0
    early_stopping: bool = True
    seed: int = 0
    threads: int = 0  # OpenMP threads while training (0 = scikit-learn's default)


@dataclass
class MLPSettings:
    """MLP head training (SPEC: D → 1024 → 512 → 1, Adam 1e-3, ≤ 30 epochs, early stop)."""

    hidden: list[int] = field(default_factory=lambda: [1024, 512])
    lr: float = 1e-3
    epochs: int = 30
    batch_size: int = 512
    patience: int = 2  # evaluations without improvement before a head stops
    evals_per_epoch: int = 2
    val_frac: float = 0.1
    weight_decay: float = 0.0
    seed: int = 0
    threads: int = 0  # CPU threads while training (0 = torch's default)
