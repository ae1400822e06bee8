"""Drift of a fine-tuned policy from its start, measured, not assumed (SPEC §3, §8):
KL(π‖π0) estimated on responses sampled from π, and perplexity of held-out reference text.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

from alignlab.data.jsonl import iter_jsonl, iter_text_lines
from alignlab.errors import DataError
from alignlab.generation import sample
from alignlab.losses.rl import sequence_kl
from alignlab.scoring import pack, pad_batch, response_logprobs


@dataclass
class SampledKL:
    """KL(π‖π0) estimates on sampled responses, with the samples themselves."""

    prompts: list[str]
    texts: list[str]
    kl_k1: torch.Tensor  # per sequence: Σ_t log π − log π0 (unbiased)
    kl_k3: torch.Tensor  # per sequence: Σ_t (e^r − 1 − r), r = log π0 − log π (unbiased, ≥ 0)

    @property
    def kl(self) -> float:
        return float(self.kl_k1.mean())


@torch.no_grad()
def sampled_kl(
    policy: torch.nn.Module,
    reference: torch.nn.Module,
    tokenizer,
    prompts: Sequence[str],
    max_new_tokens: int = 24,
    batch_size: int = 64,
    generator: torch.Generator | None = None,
) -> SampledKL:
    """Sample y ~ π(·|x) (temperature 1, no top-p, so the estimate is unbiased) and estimate
    the sequence-level KL(π‖π0) from log π(y|x) − log π0(y|x)."""
    device = next(policy.parameters()).device
    s = sample(policy, tokenizer, prompts, max_new_tokens=max_new_tokens, temperature=1.0, top_p=1.0,
               batch_size=batch_size, generator=generator)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    k1s, k3s = [], []
    for i in range(0, len(prompts), batch_size):
        packed = pack(s.prompt_ids[i : i + batch_size], s.response_ids[i : i + batch_size], pad).to(device)
        lp = response_logprobs(policy, packed)
        ref = response_logprobs(reference, packed)
        k1s.append(sequence_kl(lp, ref, packed.response_mask, "k1"))
        k3s.append(sequence_kl(lp, ref, packed.response_mask, "k3"))
    return SampledKL(list(prompts), s.texts, torch.cat(k1s).cpu(), torch.cat(k3s).cpu())


@torch.no_grad()
def perplexity(model: torch.nn.Module, tokenizer, texts: Sequence[str], batch_size: int = 32,
               add_eos: bool = True) -> float:
    """exp(mean next-token NLL) over all tokens of `texts` (each text scored on its own)."""
    if not texts:
        raise DataError("perplexity: no reference texts")
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    eos = tokenizer.eos_token_id
    seqs = []
    for t in texts:
        ids = tokenizer(t, add_special_tokens=False)["input_ids"]
        if add_eos and eos is not None:
            ids = ids + [eos]
        if len(ids) >= 2:
            seqs.append(ids)
    if not seqs:
        raise DataError("perplexity: every reference text is shorter than two tokens")
    total_nll, total_tokens = 0.0, 0
    for i in range(0, len(seqs), batch_size):
        ids, attn = pad_batch(seqs[i : i + batch_size], pad)
        ids, attn = ids.to(device), attn.to(device)
        logits = model(input_ids=ids, attention_mask=attn, use_cache=False).logits[:, :-1].float()
        nll = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), ids[:, 1:].reshape(-1), reduction="none")
        mask = attn[:, 1:].reshape(-1).float()
        total_nll += float((nll * mask).sum())
        total_tokens += int(mask.sum())
    model.train(was_training)
    return math.exp(total_nll / total_tokens)


def read_reference_texts(path: str | Path) -> list[str]:
    """Reference texts from a file: JSONL rows (.jsonl / .jsonl.gz) with a "text" field, or one
    text per line; an unreadable line is a DataError naming file:line, an empty file one too."""
    p = Path(path)
    out = []
    if p.name.endswith((".jsonl", ".jsonl.gz")):
        for where, row in iter_jsonl(p, "reference text file"):
            if not isinstance(row.get("text"), str):
                raise DataError(f"{where}: each line needs a string field 'text'")
            out.append(row["text"])
    else:
        out = [line for _, line in iter_text_lines(p, "reference text file") if line.strip()]
    if not out:
        raise DataError(f"{p}: no reference texts (the file is empty)")
    return out


