"""Pure functions of RLHF with PPO (SPEC §3): KL estimators and penalties, GAE,
whitening, clipped policy and value losses, and the KL coefficient controllers.

Tensors are response-aligned: shape [B, T] where column t is the t-th generated token and
`mask[b, t]` is 1 for real tokens (responses are right-padded, so a row's ones come first).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

KL_ESTIMATORS = ("k1", "k2", "k3")


# --- masked statistics ----------------------------------------------------------------
def masked_sum(x: torch.Tensor, mask: torch.Tensor, dim: int | None = None) -> torch.Tensor:
    """Sum of x where mask is 1 (over all elements, or along `dim`)."""
    m = mask.to(x.dtype)
    return (x * m).sum() if dim is None else (x * m).sum(dim)


def masked_mean(x: torch.Tensor, mask: torch.Tensor, dim: int | None = None) -> torch.Tensor:
    """Mean of x over the positions where mask is 1 (0 when the mask is empty)."""
    m = mask.to(x.dtype)
    if dim is None:
        return (x * m).sum() / m.sum().clamp_min(1.0)
    return (x * m).sum(dim) / m.sum(dim).clamp_min(1.0)


def masked_var(x: torch.Tensor, mask: torch.Tensor, unbiased: bool = True) -> torch.Tensor:
    """Variance of x over masked positions (Bessel-corrected by default)."""
    mean = masked_mean(x, mask)
    n = mask.to(x.dtype).sum()
    var = masked_mean((x - mean) ** 2, mask)
    if unbiased and n > 1:
        var = var * n / (n - 1)
    return var


def whiten(x: torch.Tensor, mask: torch.Tensor, shift_mean: bool = True, eps: float = 1e-8) -> torch.Tensor:
    """(x - mean) / std over masked positions; masked-out positions become 0.

    With `shift_mean=False` only the scale changes (the mean is added back), as used for
    rewards whose sign carries meaning.
    """
    mean, var = masked_mean(x, mask), masked_var(x, mask)
    out = (x - mean) * torch.rsqrt(var + eps)
    if not shift_mean:
        out = out + mean
    return out * mask.to(x.dtype)


# --- KL -------------------------------------------------------------------------------
def kl_estimate(logp: torch.Tensor, ref_logp: torch.Tensor, kind: str = "k1") -> torch.Tensor:
    """Per-token estimate of KL(π‖π_ref) from log-probs of tokens sampled from π.

    With r = log π_ref(a) − log π(a):  k1 = −r (unbiased, can be negative),
    k2 = r²/2 (biased, low variance), k3 = (eʳ − 1) − r (unbiased, always ≥ 0).
    """
    if kind not in KL_ESTIMATORS:
        raise ValueError(f"KL estimator '{kind}' is not one of {list(KL_ESTIMATORS)}")
    log_ratio = ref_logp - logp
    if kind == "k1":
        return -log_ratio
    if kind == "k2":
        return 0.5 * log_ratio**2
    return torch.expm1(log_ratio) - log_ratio


def sequence_kl(logp: torch.Tensor, ref_logp: torch.Tensor, mask: torch.Tensor, kind: str = "k1") -> torch.Tensor:
    """Per-sequence KL estimate [B]: the per-token estimates summed over response tokens."""
    return masked_sum(kl_estimate(logp, ref_logp, kind), mask, dim=-1)


def last_token_index(mask: torch.Tensor) -> torch.Tensor:
    """Column of each row's last real token (rows must be right-padded and non-empty)."""
    lengths = mask.long().sum(-1)
    if bool((lengths == 0).any()):
        raise ValueError("a response has no tokens; cannot place its sequence reward")
    return lengths - 1


def kl_penalty_rewards(
    logp: torch.Tensor,
    ref_logp: torch.Tensor,
    scores: torch.Tensor,
    mask: torch.Tensor,
    kl_coef: float,
    kind: str = "k1",
) -> tuple[torch.Tensor, torch.Tensor]:
    """Token rewards r_t = −β·KL_t, plus the sequence score on the last real token.

    Returns (rewards [B,T], per-token KL [B,T]); both are 0 on padding.
    """
    kl = kl_estimate(logp, ref_logp, kind) * mask.to(logp.dtype)
    rewards = -kl_coef * kl
    last = last_token_index(mask)
    rows = torch.arange(rewards.shape[0], device=rewards.device)
    rewards = rewards.clone()
    rewards[rows, last] += scores.to(rewards.dtype)
    return rewards, kl


# --- advantages -----------------------------------------------------------------------
def gae(
    rewards: torch.Tensor, values: torch.Tensor, mask: torch.Tensor, gamma: float = 1.0, lam: float = 0.95
) -> tuple[torch.Tensor, torch.Tensor]:
    """Generalised advantage estimation; returns (advantages, returns), 0 on padding.

    δ_t = r_t + γ V_{t+1} − V_t, A_t = δ_t + γλ A_{t+1}; the value after a response's last
    token is 0 (the episode ends there). returns = A + V (the value targets).
    """
    m = mask.to(values.dtype)
    values = values * m
    rewards = rewards * m
    T = rewards.shape[-1]
    adv = torch.zeros_like(rewards)
    next_adv = torch.zeros_like(rewards[..., 0])
    next_value = torch.zeros_like(rewards[..., 0])
    for t in reversed(range(T)):
        delta = rewards[..., t] + gamma * next_value - values[..., t]
        a = delta + gamma * lam * next_adv
        adv[..., t] = a * m[..., t]
        next_adv = adv[..., t]
        next_value = values[..., t]
    return adv, (adv + values) * m


# --- PPO losses -----------------------------------------------------------------------
def clipped_policy_loss(
    logp: torch.Tensor, old_logp: torch.Tensor, advantages: torch.Tensor, mask: torch.Tensor, clip: float = 0.2
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """PPO surrogate: mean over tokens of max(−A·ρ, −A·clip(ρ, 1±ε)), ρ = π/π_old.

    Also returns clipfrac (share of tokens where the clipped branch is active) and
    approx_kl, the k3 estimate of KL(π_old‖π) over tokens sampled from π_old:
    mean of expm1(lr) − lr with lr = log π − log π_old (both detached).
    """
    log_ratio = logp - old_logp
    ratio = torch.exp(log_ratio)
    unclipped = -advantages * ratio
    clipped = -advantages * torch.clamp(ratio, 1.0 - clip, 1.0 + clip)
    loss = masked_mean(torch.maximum(unclipped, clipped), mask)
    with torch.no_grad():
        clipfrac = masked_mean((clipped > unclipped).to(logp.dtype), mask)
        approx_kl = masked_mean(kl_estimate(old_logp, logp, "k3"), mask)
    return loss, {"clipfrac": clipfrac, "approx_kl": approx_kl}


def clipped_value_loss(
    values: torch.Tensor, old_values: torch.Tensor, returns: torch.Tensor, mask: torch.Tensor, clip: float = 0.2
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """0.5 · mean over tokens of max((V−R)², (clip(V, V_old ± ε) − R)²)."""
    v_clipped = old_values + torch.clamp(values - old_values, -clip, clip)
    loss = 0.5 * masked_mean(torch.maximum((values - returns) ** 2, (v_clipped - returns) ** 2), mask)
    with torch.no_grad():
        clipfrac = masked_mean(((v_clipped - returns) ** 2 > (values - returns) ** 2).to(values.dtype), mask)
    return loss, {"vf_clipfrac": clipfrac}


def entropy_from_logits(logits: torch.Tensor) -> torch.Tensor:
    """Entropy of the softmax distribution at each position ([..., V] → [...])."""
    logits = logits.float()
    logz = torch.logsumexp(logits, dim=-1)
    probs = torch.softmax(logits, dim=-1)
    return logz - (probs * logits).sum(-1)


def logprobs_and_entropy(logits: torch.Tensor, targets: torch.Tensor, temperature: float = 1.0,
                         entropy_grad: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """(log p(target), entropy) per position from one log-softmax: ℓ = log_softmax(z / T),
    log p = ℓ[target], H = −Σ_v e^ℓ_v · ℓ_v. logits [..., V] → two [...] tensors; the
    entropy carries a gradient only when `entropy_grad` (one [.., V] pass fewer to keep)."""
    z = logits.float()
    if temperature > 0 and temperature != 1.0:
        z = z / temperature
    logp_all = torch.log_softmax(z, dim=-1)
    logp = logp_all.gather(-1, targets.unsqueeze(-1)).squeeze(-1)
    with torch.set_grad_enabled(entropy_grad and torch.is_grad_enabled()):
        entropy = -(logp_all.exp() * logp_all).sum(-1)
    return logp, entropy


# --- KL controllers -------------------------------------------------------------------
@dataclass
class FixedKLController:
    """A constant β_KL."""

    value: float

    def update(self, current_kl: float, n_steps: int) -> float:
        """No change; returns β."""
        return self.value

    def state_dict(self) -> dict[str, Any]:
        return {"value": self.value}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.value = float(state["value"])


@dataclass
class AdaptiveKLController:
    """Ziegler et al. (2019): β ← β · (1 + clip(KL/target − 1, ±0.2) · n_steps / horizon)."""

    value: float
    target: float
    horizon: float

    def __post_init__(self) -> None:
        if self.target <= 0 or self.horizon <= 0:
            raise ValueError(f"adaptive KL controller needs target > 0 and horizon > 0 (got {self.target}, {self.horizon})")

    def update(self, current_kl: float, n_steps: int) -> float:
        """Move β toward keeping the measured KL at `target`; returns the new β."""
        error = min(max(current_kl / self.target - 1.0, -0.2), 0.2)
        self.value *= 1.0 + error * n_steps / self.horizon
        return self.value

    def state_dict(self) -> dict[str, Any]:
        return {"value": self.value}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.value = float(state["value"])


def make_kl_controller(init: float, target: float | None = None, horizon: float = 10000.0) -> FixedKLController | AdaptiveKLController:
    """Fixed β when `target` is None (or ≤ 0), otherwise the adaptive controller."""
    if target is None or target <= 0:
        return FixedKLController(init)
    return AdaptiveKLController(init, target, horizon)
