"""Log-probabilities of tokens and completions: the quantity every method is built on."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F


def token_logprobs(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """log p(label_t) for each position; logits [B,T,V], labels [B,T] (already shifted)."""
    logits = logits.float()
    picked = torch.gather(logits, -1, labels.clamp_min(0).unsqueeze(-1)).squeeze(-1)
    return picked - torch.logsumexp(logits, dim=-1)


def sequence_logps(token_logps: torch.Tensor, mask: torch.Tensor, average: bool = False) -> torch.Tensor:
    """Summed (or mean-token) log-probs per row of [N, T] token log-probs under a 0/1 mask."""
    mask = mask.to(token_logps.dtype)
    total = (token_logps * mask).sum(-1)
    return total / mask.sum(-1).clamp_min(1) if average else total


def sequence_logprobs(
    model: torch.nn.Module,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
    loss_mask: torch.Tensor,
    average: bool = False,
) -> torch.Tensor:
    """Sum (or mean) of log p over the tokens where `loss_mask` is 1 (response tokens).

    `loss_mask[b, t]` marks token t of the input as scored; position 0 is never scored.
    """
    out = model(input_ids=input_ids, attention_mask=attention_mask, use_cache=False)
    logits = out.logits[:, :-1]
    return sequence_logps(token_logprobs(logits, input_ids[:, 1:]), loss_mask[:, 1:], average)


def pad_batch(seqs: Sequence[Sequence[int]], pad_id: int, side: str = "right") -> tuple[torch.Tensor, torch.Tensor]:
    """Pad token lists into (ids, attention_mask) tensors."""
    n = max(len(s) for s in seqs)
    ids = torch.full((len(seqs), n), pad_id, dtype=torch.long)
    mask = torch.zeros((len(seqs), n), dtype=torch.long)
    for i, s in enumerate(seqs):
        if side == "right":
            ids[i, : len(s)] = torch.tensor(list(s), dtype=torch.long)
            mask[i, : len(s)] = 1
        else:
            ids[i, n - len(s) :] = torch.tensor(list(s), dtype=torch.long)
            mask[i, n - len(s) :] = 1
    return ids, mask


@torch.no_grad()
def score_completions(
    model: torch.nn.Module,
    tokenizer,
    prompts: Sequence[str],
    completions: Sequence[str],
    batch_size: int = 32,
    average: bool = False,
) -> list[float]:
    """log p(completion | prompt) for each pair (prompt and completion tokenized apart)."""
    model.eval()
    device = next(model.parameters()).device
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    out: list[float] = []
    for i in range(0, len(prompts), batch_size):
        seqs, masks = [], []
        for p, c in zip(prompts[i : i + batch_size], completions[i : i + batch_size]):
            pi = tokenizer(p, add_special_tokens=False)["input_ids"]
            ci = tokenizer(c, add_special_tokens=False)["input_ids"]
            seqs.append(pi + ci)
            masks.append([0] * len(pi) + [1] * len(ci))
        ids, attn = pad_batch(seqs, pad)
        lm, _ = pad_batch(masks, 0)
        lp = sequence_logprobs(model, ids.to(device), attn.to(device), lm.to(device), average=average)
        out.extend(lp.tolist())
    return out


def causal_lm_loss(model: torch.nn.Module, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict]:
    """Mean next-token cross-entropy over tokens where batch['loss_mask'] is 1."""
    out = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], use_cache=False)
    logits = out.logits[:, :-1].float()
    labels = batch["input_ids"][:, 1:]
    mask = batch["loss_mask"][:, 1:].float()
    nll = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), labels.reshape(-1), reduction="none")
    loss = (nll * mask.reshape(-1)).sum() / mask.sum().clamp_min(1)
    return loss, {"tokens": mask.sum()}
