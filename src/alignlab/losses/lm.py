"""The language-modelling loss (SFT, pretraining the built-in models) as a pure function."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def causal_lm_loss(model: torch.nn.Module, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict]:
    """Mean next-token cross-entropy over tokens where batch['loss_mask'] is 1:
    L = Σ_t m_t · (−log p(x_t | x_<t)) / Σ_t m_t."""
    out = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], use_cache=False)
    logits = out.logits[:, :-1].float()
    labels = batch["input_ids"][:, 1:]
    mask = batch["loss_mask"][:, 1:].float()
    nll = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), labels.reshape(-1), reduction="none")
    loss = (nll * mask.reshape(-1)).sum() / mask.sum().clamp_min(1)
    return loss, {"tokens": mask.sum()}
