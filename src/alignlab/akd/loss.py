"""AKD's student loss as a pure function: a DPO-family loss on (teacher ≻ student) pairs plus
λ × distillation (mean-token NLL of passing teacher solutions).

`L = pref(pairs) + λ · mean_i NLL_i(distill)`, each term the mean over its own items in the
micro-batch (a term is 0 when the micro-batch has none). `pref` is
`alignlab.losses.preference.preference_loss` (dpo | ipo | cal_dpo) on summed response log-probs
against the reference (the student at the start of the round).
"""

from __future__ import annotations

import torch

from alignlab.logprobs import sequence_logps
from alignlab.losses.preference import preference_loss


def sequence_nll(token_logps: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean-token negative log-likelihood per row of [N, T] token log-probs under a 0/1 mask."""
    return -sequence_logps(token_logps, mask, average=True)


def akd_loss(policy_pairs: torch.Tensor | None, ref_pairs: torch.Tensor | None, distill_nll: torch.Tensor | None,
             loss: str, beta: float, distill_weight: float, calibration_weight: float = 1.0
             ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Combined loss and metrics; `policy_pairs`/`ref_pairs` are [P, 2] (chosen, rejected) summed logps."""
    has_pairs = policy_pairs is not None and policy_pairs.numel() > 0
    has_distill = distill_nll is not None and distill_nll.numel() > 0
    if not has_pairs and not has_distill:
        raise ValueError("akd_loss: a micro-batch needs at least one pair or one distillation example")
    if distill_weight < 0:
        raise ValueError(f"distill_weight must be >= 0, got {distill_weight}")
    metrics: dict[str, torch.Tensor] = {}
    total = None
    if has_pairs:
        if ref_pairs is None or ref_pairs.shape != policy_pairs.shape:
            raise ValueError("akd_loss: reference log-probs must match the pairs' shape [P, 2]")
        ref = ref_pairs.to(policy_pairs.dtype)
        pref, m = preference_loss(loss, policy_pairs[:, 0], policy_pairs[:, 1], ref[:, 0], ref[:, 1], beta,
                                  calibration_weight)
        total = pref
        metrics.update({k: v for k, v in m.items() if not k.startswith("logps")})
        metrics["pref_loss"] = pref.detach()
    if has_distill:
        sft = distill_nll.mean()
        total = distill_weight * sft if total is None else total + distill_weight * sft
        metrics["distill_nll"] = sft.detach()
    return total, metrics
