"""Rollout sequences packed into rows for scoring and the PPO update: no padding columns.

A rollout's `Packed` batch is [left-padded prompt | right-padded response], as wide as the
longest prompt plus the longest response; with responses of 7–21 tokens a third of its columns
is padding that every matmul of the forward and backward still pays for. Here each
[prompt | response] sequence is laid out once, several per row (first-fit decreasing, row width
chosen like the packed preference batches), positions restart at 0 per sequence and a
block-diagonal causal mask keeps sequences apart, so every token is computed exactly as in its
own unpadded sequence. The LM head runs only at the positions that predict response tokens
(`alignlab.scoring.head_only_at`), and results come back response-aligned [B, R] (`scatter`).
Needs a model whose attention takes a custom 4D mask (`alignlab.scoring.packing_supported`).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from alignlab.rl.fast_forward import fast_forward_reason, packed_head_inputs
from alignlab.scoring import (
    Packed,
    chunked_response_logprobs,
    core_module,
    head_only_at,
    packing_attn_weight,
    packing_supported,
    score_in_chunks,
    token_logprobs,
)


@dataclass
class RowPacking:
    """Sequences of a `Packed` batch laid out several per row, with where each response token is read."""

    input_ids: torch.Tensor  # [n, W]
    position_ids: torch.Tensor  # [n, W], 0.. per sequence
    attention_mask: torch.Tensor  # [n, 1, W, W] bool: same sequence and causal (and each position itself)
    src_row: torch.Tensor  # [N]: row and column of the hidden state that predicts response token k
    src_col: torch.Tensor
    dst_row: torch.Tensor  # [N]: that token's (sequence b, response position t)
    dst_col: torch.Tensor
    targets: torch.Tensor  # [N]: the response token ids
    shape: tuple[int, int]  # (B, R) of the response-aligned layout

    def scatter(self, flat: torch.Tensor) -> torch.Tensor:
        """Per-token values [N] → response-aligned [B, R], 0 on padding (differentiable)."""
        out = flat.new_zeros(self.shape)
        return out.index_put((self.dst_row, self.dst_col), flat)


def pack_rollout_rows(packed: Packed, attn_weight: float | None = None) -> RowPacking:
    """Lay out the real tokens of `packed` several sequences per row (no Python loop over tokens).

    Sequence b has p_b prompt and r_b response tokens; placed at column o_b of row j_b, its k-th
    token goes to (j_b, o_b + k) with position k, and response token t is predicted by the hidden
    state at (j_b, o_b + p_b − 1 + t). `attn_weight` picks the row width (see
    `alignlab.data.preference_batches.pack_rows`; None: as wide as the longest sequence).
    """
    from alignlab.data.preference_batches import pack_rows

    device = packed.input_ids.device
    attn = packed.attention_mask.bool()
    lengths = attn.sum(-1)
    prompt_lens = attn[:, : packed.prompt_len].sum(-1)
    groups, width = pack_rows(lengths.tolist(), attn_weight)
    order = torch.tensor([b for g in groups for b in g], dtype=torch.long, device=device)
    sizes = torch.tensor([len(g) for g in groups], dtype=torch.long, device=device)
    row_of = torch.empty_like(order)
    row_of[order] = torch.repeat_interleave(torch.arange(len(groups), device=device), sizes)
    ends = lengths[order].cumsum(0)
    starts = ends - lengths[order]  # start of each sequence in the concatenation of all rows
    row_first = torch.repeat_interleave(starts[sizes.cumsum(0) - sizes], sizes)  # its row's first start
    offset = torch.empty_like(order)
    offset[order] = starts - row_first
    # every real token: (b, c) in the padded layout → (row_of[b], offset[b] + position)
    b, c = attn.nonzero(as_tuple=True)
    pos = packed.position_ids[b, c]
    rows, cols = row_of[b], offset[b] + pos
    n = len(groups)
    ids = torch.zeros((n, width), dtype=packed.input_ids.dtype, device=device)
    ids[rows, cols] = packed.input_ids[b, c]
    positions = torch.zeros((n, width), dtype=torch.long, device=device)
    positions[rows, cols] = pos
    seq = torch.full((n, width), -1, dtype=torch.long, device=device)
    seq[rows, cols] = b
    same = (seq[:, :, None] == seq[:, None, :]) & (seq[:, None, :] >= 0)
    causal = torch.ones(width, width, dtype=torch.bool, device=device).tril()
    mask = (same & causal) | torch.eye(width, dtype=torch.bool, device=device)  # empty columns see themselves
    # response tokens: (b, t) is predicted at column offset + p_b − 1 + t of b's row
    rb, rt = packed.response_mask.bool().nonzero(as_tuple=True)
    return RowPacking(ids, positions, mask[:, None], row_of[rb], offset[rb] + prompt_lens[rb] - 1 + rt, rb, rt,
                      packed.response_ids[rb, rt], tuple(packed.response_ids.shape))


def response_token_logits(model: torch.nn.Module, rows: RowPacking,
                          hidden: bool = False) -> tuple[torch.Tensor, torch.Tensor | None]:
    """(logits [N, V] predicting each response token, last hidden states [N, d] there or None).

    Llama-family models run `alignlab.rl.fast_forward` (the same arithmetic without transformers'
    per-call work). Otherwise the hidden states are the LM head's input, caught by a pre-hook on
    it while it runs, rather than `output_hidden_states=True`: that makes transformers install
    permanent output-capturing hooks on the layers, which in turn keep the fast sampler
    (`alignlab.decode`) off the model.
    """
    if fast_forward_reason(model, rows.input_ids.shape[1]) is None:
        h = packed_head_inputs(model, rows.input_ids, rows.position_ids, rows.attention_mask, rows.src_row,
                               rows.src_col)
        return core_module(model).get_output_embeddings()(h), h if hidden else None
    caught: list[torch.Tensor] = []
    with head_only_at(model, rows.src_row, rows.src_col) as gathered:
        handle = None
        if gathered and hidden:
            head = core_module(model).get_output_embeddings()
            handle = head.register_forward_pre_hook(lambda _m, args: caught.append(args[0][0]))
        try:
            out = model(input_ids=rows.input_ids, attention_mask=rows.attention_mask,
                        position_ids=rows.position_ids, use_cache=False, output_hidden_states=hidden and not gathered)
        finally:
            if handle is not None:
                handle.remove()
    if not gathered:
        logits = out.logits[rows.src_row, rows.src_col]
        return logits, out.hidden_states[-1][rows.src_row, rows.src_col] if hidden else None
    return out.logits[0], caught[0] if hidden else None


def fixed_response_logprobs(model: torch.nn.Module, packed: Packed, temperature: float = 1.0,
                            batch_size: int = 64, rows: RowPacking | None = None) -> torch.Tensor:
    """log π(response token) [B, R] of a model taken as fixed (the KL anchor), no gradient, eval
    mode, `batch_size` sequences at a time: packed into rows when the model allows
    (`packing_supported`; `rows`: the packing of all of `packed`, made once by the caller),
    else `alignlab.scoring.chunked_response_logprobs`."""
    if not packing_supported(model):
        return chunked_response_logprobs(model, packed, temperature, batch_size)
    weight = packing_attn_weight(model)

    def score(m: torch.nn.Module, chunk: Packed) -> list[torch.Tensor]:
        layout = rows if rows is not None and len(chunk) == len(packed) else pack_rollout_rows(chunk, weight)
        logits, _ = response_token_logits(m, layout)
        if temperature > 0 and temperature != 1.0:
            logits = logits / temperature
        return [layout.scatter(token_logprobs(logits, layout.targets))]  # no entropy: nobody reads it

    return score_in_chunks(model, packed, score, batch_size)[0]


def rollout_rows(model: torch.nn.Module, packed: Packed) -> RowPacking | None:
    """The row packing of `packed` for `model`, or None when its attention takes no block mask."""
    return pack_rollout_rows(packed, packing_attn_weight(model)) if packing_supported(model) else None
