"""Log-probabilities of responses given prompts: the one scoring module every method uses.

Layouts:
- `Packed`: prompts left-padded to P, responses right-padded to R, so response-aligned tensors
  are a plain slice of the logits (PPO rollouts, PSLE, AKD, drift). Pairs are packed as two
  halves, all chosen rows then all rejected rows (`pack_pairs`), and scored into a typed
  `PairLogps` — never interleaved rows.
- preference batches (`alignlab.data.preference_batches`): padded (`collate_pairs`) or packed
  with a block mask (`collate_pairs_packed`), scored by `pair_logps`.
- plain right-padded sequences with a loss mask: `sequence_logprobs`.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

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


# --- the [left-padded prompt | right-padded response] layout --------------------------------


@dataclass
class Packed:
    """Prompt+response token ids in the [left-padded prompt | right-padded response] layout."""

    input_ids: torch.Tensor  # [B, P+R]
    attention_mask: torch.Tensor  # [B, P+R]
    position_ids: torch.Tensor  # [B, P+R]
    response_ids: torch.Tensor  # [B, R]
    response_mask: torch.Tensor  # [B, R] float, 1 on real response tokens
    prompt_len: int  # P

    def to(self, device: torch.device | str) -> Packed:
        return Packed(self.input_ids.to(device), self.attention_mask.to(device), self.position_ids.to(device),
                      self.response_ids.to(device), self.response_mask.to(device), self.prompt_len)

    def select(self, rows: torch.Tensor) -> Packed:
        """The packed rows `rows`, with response columns trimmed to their longest response."""
        resp_mask = self.response_mask[rows]
        r = max(1, int(resp_mask.sum(-1).max()))
        end = self.prompt_len + r
        return Packed(self.input_ids[rows, :end], self.attention_mask[rows, :end], self.position_ids[rows, :end],
                      self.response_ids[rows, :r], resp_mask[:, :r], self.prompt_len)

    def __len__(self) -> int:
        return self.input_ids.shape[0]


def pack(prompt_ids: Sequence[Sequence[int]], response_ids: Sequence[Sequence[int]], pad_id: int) -> Packed:
    """Pack token-id lists; every prompt and every response needs at least one token."""
    if len(prompt_ids) != len(response_ids) or not prompt_ids:
        raise ValueError(f"pack: {len(prompt_ids)} prompts vs {len(response_ids)} responses")
    for i, (p, r) in enumerate(zip(prompt_ids, response_ids)):
        if not p:
            raise ValueError(f"pack: prompt {i} is empty (the first response token needs a context)")
        if not r:
            raise ValueError(f"pack: response {i} is empty")
    P = max(len(p) for p in prompt_ids)
    R = max(len(r) for r in response_ids)
    B = len(prompt_ids)
    ids = torch.full((B, P + R), pad_id, dtype=torch.long)
    attn = torch.zeros((B, P + R), dtype=torch.long)
    for i, (p, r) in enumerate(zip(prompt_ids, response_ids)):
        ids[i, P - len(p) : P] = torch.tensor(list(p), dtype=torch.long)
        ids[i, P : P + len(r)] = torch.tensor(list(r), dtype=torch.long)
        attn[i, P - len(p) : P + len(r)] = 1
    pos = (attn.cumsum(-1) - 1).clamp_min(0)
    resp_mask = attn[:, P:].float()
    return Packed(ids, attn, pos, ids[:, P:].clone(), resp_mask, P)


def response_logits(model: torch.nn.Module, packed: Packed, output_hidden_states: bool = False):
    """Model output whose `.logits` are [B, R, V]: the predictions of each response token."""
    R = packed.response_ids.shape[1]
    out = model(input_ids=packed.input_ids, attention_mask=packed.attention_mask,
                position_ids=packed.position_ids, use_cache=False, logits_to_keep=R + 1,
                output_hidden_states=output_hidden_states)
    out.logits = out.logits[:, :-1]
    return out


def response_logprobs(model: torch.nn.Module, packed: Packed, temperature: float = 1.0) -> torch.Tensor:
    """log π(response token t | prefix) for each response position, [B, R] (0 on padding).

    Logits are divided by `temperature` so the log-probs are those of the sampling
    distribution the responses came from.
    """
    logits = response_logits(model, packed).logits
    if temperature > 0 and temperature != 1.0:
        logits = logits / temperature
    return token_logprobs(logits, packed.response_ids) * packed.response_mask


@torch.no_grad()
def score_in_chunks(model: torch.nn.Module, packed: Packed,
                    score: Callable[[torch.nn.Module, Packed], Sequence[torch.Tensor]],
                    batch_size: int = 64) -> list[torch.Tensor]:
    """`score(model, chunk)` → response-aligned [b, r] tensors, for chunks of `batch_size` rows, in
    eval mode (restored afterwards), no gradient; each output padded back to [B, R]."""
    was_training = model.training
    model.eval()
    parts: list[list[torch.Tensor]] = []
    R = packed.response_ids.shape[1]
    for s in range(0, len(packed), batch_size):
        chunk = packed.select(torch.arange(s, min(s + batch_size, len(packed)), device=packed.input_ids.device))
        parts.append([F.pad(t, (0, R - t.shape[1])) for t in score(model, chunk)])
    model.train(was_training)
    return [torch.cat(col) for col in zip(*parts)]


def chunked_response_logprobs(model: torch.nn.Module, packed: Packed, temperature: float = 1.0,
                              batch_size: int = 64) -> torch.Tensor:
    """`response_logprobs` of a model taken as fixed (a KL anchor, θ0, a reference), in chunks of
    `batch_size` rows, in eval mode (restored afterwards), no gradient; [B, R]."""
    return score_in_chunks(model, packed, lambda m, c: [response_logprobs(m, c, temperature)], batch_size)[0]


# --- pairs -------------------------------------------------------------------------------------


@dataclass
class PairLogps:
    """Log-probs of chosen and rejected responses, one entry per pair (summed, mean or per token)."""

    chosen: torch.Tensor
    rejected: torch.Tensor

    def __len__(self) -> int:
        return self.chosen.shape[0]

    @classmethod
    def from_halves(cls, rows: torch.Tensor) -> PairLogps:
        """From rows laid out as [all chosen; all rejected] (the `pack_pairs` layout)."""
        chosen, rejected = rows.chunk(2)
        return cls(chosen, rejected)

    def stacked(self) -> torch.Tensor:
        """[N, 2] (chosen, rejected)."""
        return torch.stack([self.chosen, self.rejected], dim=1)

    def sequence(self, mask: PairLogps, average: bool = False) -> PairLogps:
        """Per-token log-probs reduced per response under `mask` (summed, or mean-token)."""
        return PairLogps(sequence_logps(self.chosen, mask.chosen, average),
                         sequence_logps(self.rejected, mask.rejected, average))


def pack_pairs(prompt_ids: Sequence[Sequence[int]], chosen_ids: Sequence[Sequence[int]],
               rejected_ids: Sequence[Sequence[int]], pad_id: int) -> Packed:
    """Pack N pairs as 2N rows: chosen responses first (rows 0..N-1), then rejected (N..2N-1)."""
    return pack(list(prompt_ids) * 2, list(chosen_ids) + list(rejected_ids), pad_id)


def pair_rows(pairs: torch.Tensor, n_pairs: int) -> torch.Tensor:
    """Row indices of pairs `pairs` in a `pack_pairs` layout of `n_pairs` pairs: chosen, then rejected."""
    return torch.cat([pairs, pairs + n_pairs])


def pair_response_logprobs(model: torch.nn.Module, packed: Packed, temperature: float = 1.0) -> PairLogps:
    """Per-token response log-probs [N, R] of chosen and rejected, from one forward of a `pack_pairs` batch."""
    return PairLogps.from_halves(response_logprobs(model, packed, temperature))


def pair_masks(packed: Packed) -> PairLogps:
    """The response masks of a `pack_pairs` batch, as a pair."""
    return PairLogps.from_halves(packed.response_mask)


# --- preference batches (padded or packed with a block mask) -----------------------------------


def core_module(model: torch.nn.Module) -> torch.nn.Module:
    """The model under DDP / PEFT wrappers (for signature checks and adapter switching)."""
    return getattr(model, "module", model)


def accepts_logits_to_keep(model: torch.nn.Module) -> bool:
    """Whether the model's forward takes `logits_to_keep` (cached on the model)."""
    m = core_module(model)
    if hasattr(m, "get_base_model"):
        m = m.get_base_model()
    cached = getattr(m, "_alignlab_ltk", None)
    if cached is None:
        cached = "logits_to_keep" in inspect.signature(m.forward).parameters
        try:
            m._alignlab_ltk = cached
        except AttributeError:
            pass
    return cached


def packing_supported(model: torch.nn.Module) -> bool:
    """Packed pairs need a custom 4D attention mask: the sdpa and eager attention paths take one."""
    cfg = getattr(core_module(model), "config", None)
    return getattr(cfg, "_attn_implementation", None) in ("sdpa", "eager")


def packing_attn_weight(model: torch.nn.Module) -> float | None:
    """Attention FLOPs per (query, key) pair over matmul FLOPs per position, 2·L·d_attn / N_body
    (N_body: parameters outside the embedding and LM head), for choosing packed row widths;
    None when the config does not say."""
    core = core_module(model)
    if hasattr(core, "get_base_model"):
        core = core.get_base_model()
    cfg = getattr(core, "config", None)
    try:
        layers, heads = int(cfg.num_hidden_layers), int(cfg.num_attention_heads)
        head_dim = getattr(cfg, "head_dim", None) or cfg.hidden_size // heads
        skip = {id(core.get_input_embeddings().weight), id(core.get_output_embeddings().weight)}
    except (AttributeError, TypeError):
        return None
    body = sum(p.numel() for p in {id(p): p for p in core.parameters()}.values() if id(p) not in skip)
    return 2.0 * layers * heads * head_dim / body if body else None


def packed_row_layout(model: torch.nn.Module) -> tuple[float | None, int]:
    """(attn_weight, max_width) for `pack_rows` of packed batches: with attention computed per
    segment (`alignlab.models.segment_attention`) its cost no longer grows with the row width, so
    rows are filled up to 1024 positions (weight 0: least padding); otherwise the width trades
    padding against the masked attention over W×W (`packing_attn_weight`), up to 2048."""
    from alignlab.models.segment_attention import segments_supported

    if segments_supported(model):
        return 0.0, 1024
    return packing_attn_weight(model), 2048


@contextmanager
def head_only_at(model: torch.nn.Module, rows: torch.Tensor, cols: torch.Tensor):
    """While active, the LM head sees only the hidden states at (rows, cols) (as one [1, n, d] row),
    so logits are computed at the scored positions only; cols count from the first hidden
    position the model hands its head. Yields False (and changes nothing) when the model has no
    findable output embedding."""
    core = core_module(model)
    head = core.get_output_embeddings() if hasattr(core, "get_output_embeddings") else None
    if not isinstance(head, torch.nn.Module):
        yield False
        return

    def gather(_module: torch.nn.Module, args: tuple[Any, ...]) -> tuple[Any, ...]:
        return (args[0][rows, cols][None], *args[1:])

    handle = head.register_forward_pre_hook(gather)
    try:
        yield True
    finally:
        handle.remove()


def _packed_pair_logps(model: torch.nn.Module, batch: dict[str, Any], length_normalize: bool) -> torch.Tensor:
    from alignlab.models.segment_attention import segments_active

    allowed = batch["attention_mask"]
    dtype = next(p for p in model.parameters() if p.is_floating_point()).dtype
    mask = torch.zeros(allowed.shape, dtype=dtype, device=allowed.device).masked_fill(~allowed, torch.finfo(dtype).min)
    width = batch["input_ids"].shape[1]
    src_row, src_col = batch["src_row"], batch["src_col"]
    kwargs: dict[str, Any] = {"input_ids": batch["input_ids"], "attention_mask": mask,
                              "position_ids": batch["position_ids"], "use_cache": False}
    offset = 0
    if accepts_logits_to_keep(model):
        offset = int(src_col.min())
        kwargs["logits_to_keep"] = width - offset  # the LM head runs only from the first scored position on
    with segments_active(model, batch.get("segments")) as seg, head_only_at(model, src_row, src_col - offset) as gathered:
        logits = model(**kwargs, **seg).logits
    picked = logits[0] if gathered else logits[src_row, src_col - offset]  # [tokens, V]
    lp = token_logprobs(picked[None], batch["target_ids"][None])[0]
    slot = batch["slot"]
    n = 2 * batch["n_pairs"]
    total = torch.zeros(n, dtype=lp.dtype, device=lp.device).index_add(0, slot, lp)
    if length_normalize:
        count = torch.zeros(n, dtype=lp.dtype, device=lp.device).index_add(0, slot, torch.ones_like(lp))
        return total / count.clamp_min(1)
    return total


def pair_logps(model: torch.nn.Module, batch: dict[str, Any], length_normalize: bool = False) -> PairLogps:
    """Summed (or mean-token) response log-probs of a `collate_pairs` or `collate_pairs_packed`
    batch (already on the model's device)."""
    if "slot" in batch:
        return PairLogps.from_halves(_packed_pair_logps(model, batch, length_normalize))
    resp = batch["response_ids"]
    r = resp.shape[1]
    kwargs: dict[str, Any] = {"input_ids": batch["input_ids"], "attention_mask": batch["attention_mask"],
                              "position_ids": batch["position_ids"], "use_cache": False}
    if accepts_logits_to_keep(model):
        kwargs["logits_to_keep"] = r + 1  # positions P-1 … P+R-1: those predicting response tokens (+1 spare)
    logits = model(**kwargs).logits[:, -(r + 1):-1]
    mask = batch["response_mask"].to(torch.float32)
    return PairLogps.from_halves(sequence_logps(token_logprobs(logits, resp), mask, length_normalize))
