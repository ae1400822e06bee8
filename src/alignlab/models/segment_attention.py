"""Attention over packed rows computed per segment, so the masked-out blocks between packed
sequences (or preference pairs) cost nothing.

A packed row holds several independent segments side by side (SFT sequences, or
[prompt, chosen, rejected] pairs) and a block mask keeps them apart. SDPA with that mask still
computes every (query, key) pair of the W×W row; a row of k segments of length n wastes about
(1 − 1/k) of it. Here each segment (row, start, end) runs its own SDPA on the diagonal block
mask[row, :, start:end, start:end] — the same softmax over the same allowed keys, so the outputs
at every position inside a segment are those of the full-mask call; positions outside every
segment (padding) get 0, and nothing inside a segment attends to them.

It is a transformers attention implementation (`NAME`, registered on import) that falls back to
plain `sdpa` when no segments are passed; `segments_active(model, segments)` switches a model to it
for one forward call and gives the keyword argument to pass.
"""

from __future__ import annotations

import inspect
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch
from transformers.integrations.sdpa_attention import sdpa_attention_forward
from transformers.masking_utils import AttentionMaskInterface, sdpa_mask
from transformers.modeling_utils import AttentionInterface

from alignlab.decode import base_causal_lm

NAME = "alignlab_sdpa_segments"
KWARG = "alignlab_segments"


def segment_sdpa_forward(module: torch.nn.Module, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
                         attention_mask: torch.Tensor | None, dropout: float = 0.0, scaling: float | None = None,
                         alignlab_segments: list[tuple[int, int, int]] | None = None,
                         **kwargs: Any) -> tuple[torch.Tensor, None]:
    """`sdpa_attention_forward` run on each segment (row, start, end) alone; q/k/v [B, H, W, D],
    mask [B, 1|H, W, W]; returns [B, W, H, D] with zeros outside every segment. Without segments:
    plain sdpa."""
    if alignlab_segments is None or attention_mask is None or attention_mask.dim() != 4:
        return sdpa_attention_forward(module, query, key, value, attention_mask, dropout=dropout, scaling=scaling,
                                      **kwargs)
    b, heads, width, dim = query.shape
    by_row: dict[int, list[tuple[int, int]]] = {}
    for row, start, end in alignlab_segments:
        by_row.setdefault(row, []).append((start, end))
    rows = []
    # split (not slice) rows and segments: split's backward is one cat, a slice's a full-size zero tensor each
    for r, (q, k, v) in enumerate(zip(query.split(1), key.split(1), value.split(1))):
        spans: list[tuple[int, int] | None] = []  # None: a gap (padding) outside every segment
        sizes, col = [], 0
        for start, end in sorted(by_row.get(r, [])):
            if start > col:
                spans.append(None)
                sizes.append(start - col)
            spans.append((start, end))
            sizes.append(end - start)
            col = end
        if col < width:
            spans.append(None)
            sizes.append(width - col)
        parts = []
        for span, qs, ks, vs in zip(spans, q.split(sizes, 2), k.split(sizes, 2), v.split(sizes, 2)):
            if span is None:
                parts.append(query.new_zeros(1, qs.shape[2], heads, dim))
                continue
            mask = attention_mask[r:r + 1, :, span[0]:span[1], span[0]:span[1]]
            out, _ = sdpa_attention_forward(module, qs, ks, vs, mask, dropout=dropout, scaling=scaling, **kwargs)
            parts.append(out)
        rows.append(torch.cat(parts, dim=1) if len(parts) > 1 else parts[0])
    return (torch.cat(rows) if b > 1 else rows[0]), None


AttentionInterface.register(NAME, segment_sdpa_forward)
AttentionMaskInterface.register(NAME, sdpa_mask)


def _core(model: torch.nn.Module) -> torch.nn.Module:
    """The transformers model under DDP and PEFT wrappers."""
    return base_causal_lm(getattr(model, "module", model))


def segments_supported(model: torch.nn.Module) -> bool:
    """Whether `model` can run segment attention: it uses `sdpa`, its forward passes extra keyword
    arguments on to the attention (transformers' attention interface), and its decoder is not compiled."""
    core = _core(model)
    cfg = getattr(core, "config", None)
    if getattr(cfg, "_attn_implementation", None) not in ("sdpa", NAME):
        return False
    decoder = core.get_decoder() if hasattr(core, "get_decoder") else None
    if decoder is not None and getattr(decoder, "_compiled_call_impl", None) is not None:
        return False
    params = inspect.signature(core.forward).parameters.values()
    return any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params)


@contextmanager
def segments_active(model: torch.nn.Module, segments: torch.Tensor | None) -> Iterator[dict[str, Any]]:
    """For one forward call: the model's attention runs per segment ([n, 3] rows of (row, start,
    end)); yields the keyword arguments to add to the call ({} when the model cannot, and then
    nothing changes: the full block mask alone gives the same result)."""
    if segments is None or not segments_supported(model):
        yield {}
        return
    cfg = _core(model).config
    before = cfg._attn_implementation
    cfg._attn_implementation = NAME
    try:
        yield {KWARG: [tuple(s) for s in segments.tolist()]}
    finally:
        cfg._attn_implementation = before
