"""Batched sampling with a KV cache, returning token ids ready for log-prob scoring.

A hand-written loop (left padding, explicit position ids, one decoder step per new token,
early exit when every row has stopped) rather than `generate()`: it is what PPO, best-of-N
and steering evaluation need, and has far less per-token overhead on small models. The
decoder is either the static-cache fast path (alignlab.decode: Llama/Qwen2/Mistral) or the
HF model's own forward with its cache (any causal LM, hooks honoured).
"""

from __future__ import annotations

import inspect
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import torch

from alignlab.decode import FastDecoder, fast_decoder_reason
from alignlab.errors import ConfigError
from alignlab.method_settings import SamplingSettings  # noqa: F401  (re-exported: configs import it light)
from alignlab.scoring import accepts_logits_to_keep, pad_batch


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


def sample_categorical(probs: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
    """One draw per row of `probs` [B, V] by inverse CDF: i = min{i : C_i > u·C_V}, C = cumsum(p), u [B, 1] ~ U[0, 1).

    The same distribution as `torch.multinomial(probs, 1)`, which draws V exponentials per row
    (most of a tiny model's sampling step); this uses one uniform per row. The cumulative sum
    runs in u's dtype (float64) and u·C_V stays below C_V, so zero-probability tokens (top-p) are
    never drawn. A row with a NaN probability gets V (no token), which `sample` reports.
    """
    cum = probs.cumsum(-1, dtype=u.dtype)  # the cast inside the sum: no [B, V] float64 copy
    total = cum[:, -1:]
    x = torch.minimum(u * total, torch.nextafter(total, torch.zeros_like(total)))
    return torch.searchsorted(cum, x, right=True).squeeze(-1)


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


class HFDecoder:
    """The generic decoder: the HF model's forward with its own (dynamic) KV cache, any causal LM."""

    def __init__(self, model: torch.nn.Module) -> None:
        self.model = model
        self.cache_name = cache_arg_name(model)
        self.last_only = {"logits_to_keep": 1} if accepts_logits_to_keep(model) else {}

    def prefill(self, ids: torch.Tensor, mask: torch.Tensor, max_new_tokens: int) -> torch.Tensor:
        """Run the left-padded prompts [B, T] and return the last position's logits [B, V]."""
        pos = (mask.cumsum(-1) - 1).clamp_min(0)
        out = self.model(input_ids=ids, attention_mask=mask, position_ids=pos, use_cache=True, **self.last_only)
        self.past, self.mask, self.pos = cache_of(out), mask, pos[:, -1:]
        return out.logits[:, -1]

    def step(self, tokens: torch.Tensor) -> torch.Tensor:
        """Feed one new token per row [B]; return the next logits [B, V]."""
        self.mask = torch.cat([self.mask, torch.ones_like(self.mask[:, :1])], dim=-1)
        self.pos = self.pos + 1
        out = self.model(input_ids=tokens.unsqueeze(-1), attention_mask=self.mask, position_ids=self.pos,
                         use_cache=True, **{self.cache_name: self.past})
        self.past = cache_of(out)
        return out.logits[:, -1]


Backend = Literal["auto", "fast", "hf"]
SHRINK_AT = 0.75  # the fast decoder drops finished rows once at most this share of its rows is still running


def make_decoder(model: torch.nn.Module, backend: Backend, max_len: int) -> HFDecoder | FastDecoder:
    """The decoder for `backend`: auto = the fast static-cache one when the model allows it (see decode.py)."""
    if backend == "vllm":
        raise ConfigError("generation.backend: 'vllm' drives ppo rollouts only; choose auto, fast or hf here")
    if backend not in ("auto", "fast", "hf"):
        raise ConfigError(f"generation backend {backend!r} is not one of auto, fast, hf")
    if backend == "hf":
        return HFDecoder(model)
    reason = fast_decoder_reason(model, max_len)
    if reason is None:
        return FastDecoder(model)
    if backend == "fast":
        raise ConfigError(f"generation backend 'fast' cannot run this model: {reason}")
    return HFDecoder(model)


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
    backend: Backend = "auto",
) -> Samples:
    """Sample one response per prompt; temperature 0 means greedy.

    `generator` may live on any device: one on another device than the model seeds a fresh
    generator on the model's device from its stream (so CUDA sampling works with CPU seeds).
    `backend`: "fast" (static KV cache, Llama/Qwen2/Mistral without hooks; alignlab.decode),
    "hf" (the model's forward with its cache, any causal LM), "auto" = fast when it can run.
    Both give the same logits (to float rounding), hence the same tokens for the same generator.
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
    max_len = max((len(p) for p in all_prompt_ids), default=0) + max_new_tokens
    decoder = make_decoder(model, backend, max_len)
    wide = torch.float32 if device.type == "mps" else torch.float64  # MPS has no float64
    responses: list[list[int]] = []
    for s in range(0, len(all_prompt_ids), batch_size):
        chunk = all_prompt_ids[s : s + batch_size]
        ids, mask = pad_batch(chunk, pad, side="left")
        logits = decoder.prefill(ids.to(device), mask.to(device), max_new_tokens)
        n = len(chunk)
        held: torch.Tensor | None = None  # chunk rows the decoder still runs (None: all of them)
        done = torch.zeros(n, dtype=torch.bool, device=device)
        gen = torch.full((n, max_new_tokens), pad, dtype=torch.long, device=device)
        lengths = torch.zeros(n, dtype=torch.long, device=device)
        for t in range(max_new_tokens):
            if temperature <= 0:
                tok = logits.argmax(-1)
            else:
                scaled = logits.float() if temperature == 1.0 else logits.float() / temperature
                probs = _filter_top_p(scaled, top_p).softmax(-1)
                u = torch.rand((n, 1), generator=generator, device=device, dtype=wide)  # one per row, held or not
                tok = sample_categorical(probs, u if held is None else u[held])
            if held is not None:
                tok = torch.full((n,), pad, dtype=torch.long, device=device).index_copy_(0, held, tok)
            tok = torch.where(done, torch.full_like(tok, pad), tok)
            gen[:, t] = tok
            lengths += (~done).long()
            done = done | torch.isin(tok, stops)
            live, top = torch.stack([(~done).sum(), tok.max()]).tolist()  # the one device sync per token
            if top >= logits.shape[-1]:  # sample_categorical's "no token": NaN probabilities in a running row
                raise FloatingPointError("sampling: the model's logits are not finite (NaN or inf)")
            if t == max_new_tokens - 1 or live == 0:
                break
            n_held = n if held is None else len(held)
            if isinstance(decoder, FastDecoder) and live <= SHRINK_AT * n_held:
                decoder.keep((~done if held is None else ~done[held]).nonzero().squeeze(-1))
                held = (~done).nonzero().squeeze(-1)
            logits = decoder.step(tok if held is None else tok[held])
        responses += [row[:k] for row, k in zip(gen.tolist(), lengths.tolist(), strict=True)]
    if was_training:
        model.train()
    texts = tokenizer.batch_decode(
        [[t for t in r if t not in set(stops.tolist())] for r in responses], skip_special_tokens=True
    )
    return Samples(all_prompt_ids, responses, texts)
