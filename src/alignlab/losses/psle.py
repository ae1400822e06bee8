"""PSLE losses as pure tensor functions (SPEC §6: progressively selective label enhancement).

Each query x has two responses on the *plain* query: y ~ π(·|x) and y_p ~ π(·|principle ⊕ x),
with Δ = R(x, y_p) − R(x, y). Δ > τ makes the query a preference pair (y_p ≻ y) for a ranking
loss; otherwise both responses enter a reward-weighted SFT loss. τ decays as τ0·α^i.

Ranking loss (default `simpo`): −log σ(β·(mean-token logp_w − mean-token logp_l) − γ), which
needs no reference model; `dpo` uses `alignlab.losses.preference.dpo_loss` on summed log-probs
against a reference (the recipe uses the policy that sampled the iteration).
SFT weights: w = softmax(r / T) over the query's two rewards, so each response gets a weight
in (0, 1), the two sum to 1 and nothing generated is dropped.
"""

from __future__ import annotations

from typing import get_args

import torch
import torch.nn.functional as F

from alignlab.losses.preference import dpo_loss, log_ratios
from alignlab.method_settings import RankingLoss  # noqa: F401  (re-exported)
from alignlab.scoring import PairLogps, sequence_logps

RANKING_LOSSES: tuple[str, ...] = get_args(RankingLoss)


def threshold_schedule(tau0: float, alpha: float, iteration: int) -> float:
    """τ of 0-based `iteration`: τ0·α^iteration (the first iteration uses τ0 itself)."""
    if iteration < 0:
        raise ValueError(f"iteration must be >= 0, got {iteration}")
    return float(tau0 * alpha**iteration)


def split_by_threshold(delta: torch.Tensor, tau: float) -> tuple[torch.Tensor, torch.Tensor]:
    """(pair_mask, sft_mask): Δ > τ is a preference pair, everything else (Δ == τ included) is SFT."""
    if not torch.isfinite(delta).all():
        raise ValueError("delta has NaN/inf entries; rewards must be finite")
    pair = delta > tau
    return pair, ~pair


def sft_weights(r_a: torch.Tensor, r_b: torch.Tensor, temperature: float) -> torch.Tensor:
    """[N, 2] weights softmax([r_a, r_b] / T): each in (0, 1), rows summing to 1 (higher reward, more weight)."""
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    return torch.softmax(torch.stack([r_a, r_b], dim=-1).float() / temperature, dim=-1)


def ranking_loss(logp_w: torch.Tensor, logp_l: torch.Tensor, beta: float, margin: float = 0.0) -> torch.Tensor:
    """Per-pair −log σ(β·(logp_w − logp_l) − γ): a reference-free ranking loss (SimPO-style on mean-token logps)."""
    if beta <= 0:
        raise ValueError(f"beta must be > 0, got {beta}")
    return -F.logsigmoid(beta * (logp_w - logp_l) - margin)


def weighted_sft_loss(token_logps: torch.Tensor, mask: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """Σ_i w_i·NLL_i / Σ_i w_i with NLL_i the mean-token negative log-likelihood of response i.

    Mean-token NLL so long responses do not outweigh short ones; with PSLE's per-query weights
    summing to 1 the denominator is the number of SFT queries. Empty input gives 0.
    """
    if token_logps.shape[0] == 0:
        return token_logps.sum() * 0.0
    nll = -sequence_logps(token_logps, mask, average=True)
    w = weights.to(nll.dtype)
    return (w * nll).sum() / w.sum().clamp_min(torch.finfo(nll.dtype).tiny)


def psle_loss(
    logps: PairLogps,
    mask: PairLogps,
    pair_mask: torch.Tensor,
    weights: torch.Tensor,
    beta: float,
    sft_weight: float = 1.0,
    ranking: RankingLoss = "simpo",
    margin: float = 0.0,
    ref_logps: PairLogps | None = None,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Mean over queries of [pair] ranking loss + λ·[SFT] weighted NLL of both responses; plus parts.

    `logps`, `mask`: per-token [B, T] log-probs and masks with `chosen` = y_p and `rejected` = y
    of each query, on the plain query; `pair_mask`: [B] (Δ > τ); `weights`: [B, 2] SFT weights
    of (y_p, y); `ref_logps`: [B] summed reference log-probs of (y_p, y), needed by
    `ranking="dpo"`. Every query counts once: the total is
    (P·mean ranking + λ·S·weighted SFT) / B for P pairs and S SFT queries, so the share of
    ranking grows as τ decays. Returned parts: per-pair `ranking` losses [P], `sft_loss`
    (weighted mean NLL), `n_pairs`, `n_sft`, and `pair_accuracy` (policy ranks y_p above y).
    """
    if ranking not in RANKING_LOSSES:
        raise ValueError(f"unknown ranking loss {ranking!r}; choose one of {', '.join(RANKING_LOSSES)}")
    token_logps, mask = logps.stacked(), mask.stacked()  # [B, 2, T]: (y_p, y) of each query
    b = token_logps.shape[0]
    pair_mask = pair_mask.bool()
    sft_mask = ~pair_mask
    avg = ranking == "simpo"
    seq = sequence_logps(token_logps, mask, average=avg)  # [B, 2]
    pw, pl = seq[pair_mask, 0], seq[pair_mask, 1]
    if ranking == "dpo":
        if ref_logps is None:
            raise ValueError("ranking='dpo' needs ref_logps")
        ref = ref_logps.stacked().to(seq.dtype)
        per_pair = dpo_loss(log_ratios(pw, ref[pair_mask, 0]), log_ratios(pl, ref[pair_mask, 1]), beta)
        scores_w, scores_l = pw - ref[pair_mask, 0].detach(), pl - ref[pair_mask, 1].detach()
    else:
        per_pair = ranking_loss(pw, pl, beta, margin)
        scores_w, scores_l = pw, pl
    n_pairs = int(pair_mask.sum())
    n_sft = b - n_pairs
    sft = weighted_sft_loss(token_logps[sft_mask].flatten(0, 1), mask[sft_mask].flatten(0, 1),
                            weights[sft_mask].flatten())
    total = (per_pair.sum() + sft_weight * n_sft * sft) / max(1, b)
    acc = (scores_w > scores_l).float() + 0.5 * (scores_w == scores_l).float()
    parts = {"ranking": per_pair.detach(), "sft_loss": sft.detach(), "n_pairs": torch.tensor(float(n_pairs)),
             "n_sft": torch.tensor(float(n_sft)), "pair_accuracy": acc.detach()}
    return total, parts
