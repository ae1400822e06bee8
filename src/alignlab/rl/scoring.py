"""Score generated responses: pack prompt+response ids, then per-token log-probs (and values).

Layout: prompts are left-padded to a common length P and responses right-padded to R, so
every response starts at column P and response-aligned tensors are a plain slice [:, P-1:-1]
of the logits. Only the last R+1 positions' logits are computed (`logits_to_keep`), which
keeps memory low on large vocabularies.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from alignlab.logprobs import token_logprobs


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
