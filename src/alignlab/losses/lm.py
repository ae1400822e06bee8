"""The language-modelling loss (SFT, pretraining the built-in models) as a pure function."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from alignlab.scoring import head_only_at


def causal_lm_loss(model: torch.nn.Module, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict]:
    """Mean next-token cross-entropy over tokens where batch['loss_mask'] is 1:
    L = Σ_t m_t · (−log p(x_t | x_<t)) / Σ_t m_t. The LM head runs only at the positions that
    predict a loss token (the logits elsewhere would be thrown away)."""
    mask = batch["loss_mask"][:, 1:]
    rows, cols = mask.nonzero(as_tuple=True)  # position t predicts token t+1
    with head_only_at(model, rows, cols) as gathered:
        out = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], use_cache=False)
    if gathered:
        logits, labels = out.logits[0].float(), batch["input_ids"][rows, cols + 1]
        nll = F.cross_entropy(logits, labels, reduction="sum")
        return nll / max(1, labels.numel()), {"tokens": mask.sum()}
    logits = out.logits[:, :-1].float()
    labels = batch["input_ids"][:, 1:]
    m = mask.float()
    nll = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), labels.reshape(-1), reduction="none")
    loss = (nll * m.reshape(-1)).sum() / m.sum().clamp_min(1)
    return loss, {"tokens": m.sum()}


def packed_lm_loss(model: torch.nn.Module, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict]:
    """`causal_lm_loss` of a packed batch (`alignlab.recipes.sft.collate_packed`): several sequences
    per row, a block-diagonal causal mask and positions restarting per sequence, so each token's
    log-prob is that of its own unpadded sequence (attention computed per sequence where the model
    allows, `alignlab.models.segment_attention`); L = mean over the loss tokens of −log p."""
    from alignlab.models.segment_attention import segments_active

    allowed = batch["attention_mask"]
    dtype = next(p for p in model.parameters() if p.is_floating_point()).dtype
    mask = torch.zeros(allowed.shape, dtype=dtype, device=allowed.device).masked_fill(~allowed, torch.finfo(dtype).min)
    rows, cols, labels = batch["src_row"], batch["src_col"], batch["target_ids"]
    with segments_active(model, batch.get("segments")) as seg, head_only_at(model, rows, cols) as gathered:
        out = model(input_ids=batch["input_ids"], attention_mask=mask, position_ids=batch["position_ids"],
                    use_cache=False, **seg)
    logits = (out.logits[0] if gathered else out.logits[rows, cols]).float()
    nll = F.cross_entropy(logits, labels, reduction="sum")
    n = labels.numel()
    return nll / max(1, n), {"tokens": torch.tensor(float(n))}
