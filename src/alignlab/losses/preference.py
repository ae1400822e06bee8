"""Preference losses as pure tensor functions (SPEC §1 reward-model loss, §2 DPO / IPO / Cal-DPO).

Notation: `h_w = logp_π(y_w|x) − logp_ref(y_w|x)`, `h_l` likewise for the rejected response;
logps are sums over response tokens. Every loss returns one value per example; callers take
the mean. Implicit rewards are reported as `β·h` for every method.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

LOSSES = ("dpo", "ipo", "cal_dpo")
CALIBRATION_REDUCTIONS = ("example", "batch_mean")


def log_ratios(policy_logps: torch.Tensor, ref_logps: torch.Tensor) -> torch.Tensor:
    """h = logp_π − logp_ref (the reference side carries no gradient)."""
    return policy_logps - ref_logps.detach()


def dpo_loss(h_w: torch.Tensor, h_l: torch.Tensor, beta: float) -> torch.Tensor:
    """DPO: −log σ(β (h_w − h_l)), per example."""
    return -F.logsigmoid(beta * (h_w - h_l))


def ipo_loss(h_w: torch.Tensor, h_l: torch.Tensor, beta: float) -> torch.Tensor:
    """IPO: (h_w − h_l − 1/(2β))², per example."""
    return (h_w - h_l - 1.0 / (2.0 * beta)) ** 2


def cal_dpo_loss(
    h_w: torch.Tensor,
    h_l: torch.Tensor,
    beta: float,
    calibration_weight: float = 1.0,
    reduction: str = "example",
) -> torch.Tensor:
    """Cal-DPO: −log σ(h_w − h_l) + w·[(h_w − 1/(2β))² + (h_l + 1/(2β))²], per example.

    β is not inside the sigmoid; it sets the calibration targets ±1/(2β). `reduction`
    "example" squares each example's own error (SPEC); "batch_mean" adds the batch-mean
    squared error to every example, as the official UltraFeedback script does with
    `F.mse_loss` (use it with calibration_weight=0.5 to reproduce that script). Both give
    the same value once averaged over the batch; they differ per example.
    """
    if reduction not in CALIBRATION_REDUCTIONS:
        raise ValueError(f"calibration reduction must be one of {CALIBRATION_REDUCTIONS}, got {reduction!r}")
    target = 1.0 / (2.0 * beta)
    sq_w = (h_w - target) ** 2
    sq_l = (h_l + target) ** 2
    if reduction == "batch_mean":
        sq_w = sq_w.mean().expand_as(h_w)
        sq_l = sq_l.mean().expand_as(h_l)
    return -F.logsigmoid(h_w - h_l) + calibration_weight * (sq_w + sq_l)


def preference_loss(
    name: str,
    policy_chosen: torch.Tensor,
    policy_rejected: torch.Tensor,
    ref_chosen: torch.Tensor,
    ref_rejected: torch.Tensor,
    beta: float,
    calibration_weight: float = 1.0,
    calibration_reduction: str = "example",
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Mean loss of method `name` (dpo | ipo | cal_dpo) and its per-step metrics."""
    if beta <= 0:
        raise ValueError(f"beta must be > 0, got {beta}")
    h_w = log_ratios(policy_chosen, ref_chosen)
    h_l = log_ratios(policy_rejected, ref_rejected)
    if name == "dpo":
        losses = dpo_loss(h_w, h_l, beta)
    elif name == "ipo":
        losses = ipo_loss(h_w, h_l, beta)
    elif name == "cal_dpo":
        losses = cal_dpo_loss(h_w, h_l, beta, calibration_weight, calibration_reduction)
    else:
        raise ValueError(f"unknown preference loss {name!r}; choose one of {', '.join(LOSSES)}")
    metrics = implicit_reward_metrics(h_w.detach(), h_l.detach(), beta)
    metrics["logps_chosen"] = policy_chosen.detach().mean()
    metrics["logps_rejected"] = policy_rejected.detach().mean()
    return losses.mean(), metrics


def implicit_reward_metrics(h_w: torch.Tensor, h_l: torch.Tensor, beta: float) -> dict[str, torch.Tensor]:
    """Chosen / rejected implicit rewards (β·h), their margin, and accuracy (ties count ½)."""
    r_w, r_l = beta * h_w, beta * h_l
    diff = r_w - r_l
    acc = (diff > 0).float() + 0.5 * (diff == 0).float()
    return {
        "chosen_reward": r_w.mean(),
        "rejected_reward": r_l.mean(),
        "margin": diff.mean(),
        "accuracy": acc.mean(),
    }


def ranking_pairs(ranks: Sequence[int]) -> list[tuple[int, int]]:
    """All (i, j) with rank_i < rank_j: reply i is preferred to reply j."""
    n = len(ranks)
    return [(i, j) for i in range(n) for j in range(n) if ranks[i] < ranks[j]]


def reward_ranking_loss(
    scores: torch.Tensor,
    group_sizes: Sequence[int],
    ranks: Sequence[Sequence[int]] | None = None,
    penalty: float = 0.001,
) -> tuple[torch.Tensor, torch.Tensor]:
    """SPEC §1 reward-model loss: mean over ranking examples of the mean over their pairs of
    `−log σ(s_i − s_j) + λ·0.5 (s_i² + s_j²)`.

    `scores` holds every example's replies concatenated; `group_sizes[k]` replies belong to
    example k, best-first unless `ranks` gives each example's ranks (0 = best; equal ranks
    form no pair). Returns (mean loss, per-example losses).
    """
    if scores.dim() != 1 or scores.numel() != sum(group_sizes):
        raise ValueError(f"scores must be 1-D with sum(group_sizes)={sum(group_sizes)} entries, got {tuple(scores.shape)}")
    rows: list[int] = []
    cols: list[int] = []
    owner: list[int] = []
    start = 0
    for k, size in enumerate(group_sizes):
        rk = list(ranks[k]) if ranks is not None else list(range(size))
        if len(rk) != size:
            raise ValueError(f"example {k}: {len(rk)} ranks for {size} replies")
        pairs = ranking_pairs(rk)
        if not pairs:
            raise ValueError(f"example {k}: no ranked pair (needs two replies with different ranks)")
        for i, j in pairs:
            rows.append(start + i)
            cols.append(start + j)
            owner.append(k)
        start += size
    s_i, s_j = scores[rows], scores[cols]
    per_pair = -F.logsigmoid(s_i - s_j) + penalty * 0.5 * (s_i**2 + s_j**2)
    idx = torch.tensor(owner, device=scores.device)
    n_groups = len(group_sizes)
    sums = torch.zeros(n_groups, dtype=per_pair.dtype, device=scores.device).index_add(0, idx, per_pair)
    counts = torch.zeros(n_groups, dtype=per_pair.dtype, device=scores.device).index_add(
        0, idx, torch.ones_like(per_pair)
    )
    per_example = sums / counts
    return per_example.mean(), per_example
