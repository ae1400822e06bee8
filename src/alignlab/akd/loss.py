"""AKD's student loss: a DPO-family loss on (teacher ≻ student) pairs plus λ × distillation
(mean-token NLL of passing teacher solutions).

`L = pref(pairs) + λ · mean_i NLL_i(distill)`, each term the mean over its own items in the
micro-batch (a term is 0 when the micro-batch has none). `pref` is the shared
`PreferenceLossSettings` block (dpo | ipo | cal_dpo) on summed response log-probs against the
reference (the student at the start of the round). `akd_loss_fn` is the `Trainer.step` loss: it
reports sums and counts, from which `round_means` gives exact round means.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch

from alignlab.method_settings import PreferenceLossSettings
from alignlab.scoring import (
    PairLogps,
    pair_masks,
    pair_response_logprobs,
    response_logprobs,
    sequence_logps,
)

PAIR_METRICS = ("pref_loss", "chosen_reward", "rejected_reward", "margin", "accuracy")


def sequence_nll(token_logps: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean-token negative log-likelihood per row of [N, T] token log-probs under a 0/1 mask."""
    return -sequence_logps(token_logps, mask, average=True)


def akd_loss(policy: PairLogps | None, ref: PairLogps | None, distill_nll: torch.Tensor | None,
             preference: PreferenceLossSettings, distill_weight: float) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Combined loss and metrics; `policy` / `ref` are the pairs' summed log-probs."""
    has_pairs = policy is not None and len(policy) > 0
    has_distill = distill_nll is not None and distill_nll.numel() > 0
    if not has_pairs and not has_distill:
        raise ValueError("akd_loss: a micro-batch needs at least one pair or one distillation example")
    if distill_weight < 0:
        raise ValueError(f"distill_weight must be >= 0, got {distill_weight}")
    metrics: dict[str, torch.Tensor] = {}
    total = None
    if has_pairs:
        if ref is None or ref.chosen.shape != policy.chosen.shape or ref.rejected.shape != policy.rejected.shape:
            raise ValueError("akd_loss: reference log-probs must match the pairs' shape")
        pref, m = preference(policy.chosen, policy.rejected, ref.chosen, ref.rejected)
        total = pref
        metrics.update({k: v for k, v in m.items() if not k.startswith("logps")})
        metrics["pref_loss"] = pref.detach()
    if has_distill:
        sft = distill_nll.mean()
        total = distill_weight * sft if total is None else total + distill_weight * sft
        metrics["distill_nll"] = sft.detach()
    return total, metrics


def akd_loss_fn(preference: PreferenceLossSettings, distill_weight: float
                ) -> Callable[[torch.nn.Module, dict[str, Any]], tuple[torch.Tensor, dict[str, Any]]]:
    """loss_fn(model, micro-batch) for `Trainer.step` on a `RoundBuffer` micro-batch: `akd_loss`,
    with metrics as sums over the micro-batch's pairs / distillation examples plus their counts."""

    def loss_fn(model: torch.nn.Module, mb: dict[str, Any]) -> tuple[torch.Tensor, dict[str, Any]]:
        pol = nll = None
        if "pairs" in mb:
            pol = pair_response_logprobs(model, mb["pairs"]).sequence(pair_masks(mb["pairs"]))
        if "distill" in mb:
            nll = sequence_nll(response_logprobs(model, mb["distill"]), mb["distill"].response_mask)
        loss, m = akd_loss(pol, mb.get("ref"), nll, preference, distill_weight)
        n_p, n_d = (0 if pol is None else len(pol)), (0 if nll is None else len(nll))
        sums: dict[str, Any] = {"n_pairs": float(n_p), "n_distill": float(n_d),
                                "distill_nll_sum": m["distill_nll"] * n_d if n_d else 0.0}
        sums.update({f"{k}_sum": m[k] * n_p if n_p else 0.0 for k in PAIR_METRICS})
        return loss, sums

    return loss_fn


def round_means(step_metrics: Sequence[dict[str, float]], step_sizes: Sequence[int]) -> dict[str, float]:
    """Exact round means from `Trainer.step` metrics, each a mean over its step's micro-batches
    (`step_sizes[s]` of them): loss per micro-batch, pair metrics per pair, distill_nll per
    distillation example, grad_norm per step."""
    if not step_metrics:
        return {}
    if len(step_sizes) != len(step_metrics):
        raise ValueError(f"{len(step_metrics)} steps but {len(step_sizes)} step sizes")

    def total(key: str) -> float:
        return sum(m.get(key, 0.0) * n for m, n in zip(step_metrics, step_sizes))

    n_p, n_d = total("n_pairs"), total("n_distill")
    out = {"loss": total("loss") / sum(step_sizes)}
    if n_p > 0:
        out.update({k: total(f"{k}_sum") / n_p for k in PAIR_METRICS})
    if n_d > 0:
        out["distill_nll"] = total("distill_nll_sum") / n_d
    norms = [m["grad_norm"] for m in step_metrics if "grad_norm" in m]
    if norms:
        out["grad_norm"] = sum(norms) / len(norms)
    return out


def step_sizes(epoch_sizes: Sequence[int], grad_accum: int) -> list[int]:
    """Micro-batches per optimiser step when each epoch's micro-batches go `grad_accum` at a time."""
    return [min(grad_accum, n - s) for n in epoch_sizes for s in range(0, n, grad_accum)]
