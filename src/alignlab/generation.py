"""Batched sampling with a KV cache, returning token ids ready for log-prob scoring.

A hand-written loop (left padding, explicit position ids, one cached forward per new
token) rather than `generate()`: it is what PPO, best-of-N and steering evaluation need,
has less per-token overhead on small models, and works with any HF causal LM.
"""

from __future__ import annotations

import inspect
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch

from alignlab.method_settings import SamplingSettings  # noqa: F401  (re-exported: configs import it light)
from alignlab.scoring import pad_batch


@dataclass
class Samples:
    """Generated responses: token ids (no padding) and decoded texts, per prompt."""

    prompt_ids: list[list[int]]
    response_ids: list[list[int]]
    texts: list[str]


def cache_arg_name(model: torch.nn.Module) -> str:
    """The forward() keyword for the KV cache: `cache` (transformers >= 5.2x) or `past_key_values`."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    base = getattr(base, "module", base)
    return "cache" if "cache" in inspect.signature(base.forward).parameters else "past_key_values"


def cache_of(out: Any) -> Any:
    """The KV cache of a forward output, whatever the transformers version calls it."""
    c = out.get("cache") if hasattr(out, "get") else None
    return c if c is not None else out.past_key_values


def _filter_top_p(logits: torch.Tensor, top_p: float) -> torch.Tensor:
    if top_p >= 1.0:
        return logits
    sorted_logits, idx = torch.sort(logits, descending=True)
    probs = sorted_logits.softmax(-1)
    cum = probs.cumsum(-1)
    remove = cum - probs > top_p
    sorted_logits = sorted_logits.masked_fill(remove, float("-inf"))
    return torch.full_like(logits, float("-inf")).scatter(-1, idx, sorted_logits)


def stop_token_ids(tokenizer) -> list[int]:
    """EOS (and an end-of-turn token if the tokenizer has one)."""
    ids = set()
    if tokenizer.eos_token_id is not None:
        ids.add(int(tokenizer.eos_token_id))
    for tok in ("<|end|>", "<|im_end|>", "<|eot_id|>"):
        tid = tokenizer.convert_tokens_to_ids(tok) if tok in tokenizer.get_vocab() else None
        if tid is not None:
            ids.add(int(tid))
    return sorted(ids)


@torch.no_grad()
def sample(
    model: torch.nn.Module,
    tokenizer,
    prompts: Sequence[str] | Sequence[Sequence[int]],
    max_new_tokens: int = 32,
    temperature: float = 1.0,
    top_p: float = 1.0,
    batch_size: int = 64,
    generator: torch.Generator | None = None,
    stop_ids: Sequence[int] | None = None,
) -> Samples:
    """Sample one response per prompt; temperature 0 means greedy.

    `generator` may live on any device: one on another device than the model seeds a fresh
    generator on the model's device from its stream (so CUDA sampling works with CPU seeds).
    """
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    if generator is not None and generator.device != torch.device(device):
        seed = int(torch.randint(2**62, (1,), generator=generator))
        generator = torch.Generator(device=device).manual_seed(seed)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    stops = torch.tensor(list(stop_ids if stop_ids is not None else stop_token_ids(tokenizer)), device=device)
    all_prompt_ids = [
        list(p) if not isinstance(p, str) else tokenizer(p, add_special_tokens=False)["input_ids"] for p in prompts
    ]
    responses: list[list[int]] = []
    cache_name = cache_arg_name(model)
    for s in range(0, len(all_prompt_ids), batch_size):
        chunk = all_prompt_ids[s : s + batch_size]
        ids, mask = pad_batch(chunk, pad, side="left")
        ids, mask = ids.to(device), mask.to(device)
        pos = (mask.cumsum(-1) - 1).clamp_min(0)
        out = model(input_ids=ids, attention_mask=mask, position_ids=pos, use_cache=True)
        past = cache_of(out)
        logits = out.logits[:, -1]
        done = torch.zeros(len(chunk), dtype=torch.bool, device=device)
        gen = torch.full((len(chunk), max_new_tokens), pad, dtype=torch.long, device=device)
        lengths = torch.zeros(len(chunk), dtype=torch.long, device=device)
        next_pos = pos[:, -1:] + 1
        for t in range(max_new_tokens):
            if temperature <= 0:
                tok = logits.argmax(-1)
            else:
                probs = _filter_top_p(logits.float() / temperature, top_p).softmax(-1)
                tok = torch.multinomial(probs, 1, generator=generator).squeeze(-1)
            tok = torch.where(done, torch.full_like(tok, pad), tok)
            gen[:, t] = tok
            lengths += (~done).long()
            done = done | torch.isin(tok, stops)
            if bool(done.all()) or t == max_new_tokens - 1:
                break
            mask = torch.cat([mask, torch.ones_like(mask[:, :1])], dim=-1)
            out = model(
                input_ids=tok.unsqueeze(-1), attention_mask=mask, position_ids=next_pos,
                use_cache=True, **{cache_name: past},
            )
            past = cache_of(out)
            logits = out.logits[:, -1]
            next_pos = next_pos + 1
        for i in range(len(chunk)):
            responses.append(gen[i, : int(lengths[i])].tolist())
    if was_training:
        model.train()
    texts = tokenizer.batch_decode(
        [[t for t in r if t not in set(stops.tolist())] for r in responses], skip_special_tokens=True
    )
    return Samples(all_prompt_ids, responses, texts)
