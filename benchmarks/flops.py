"""Counted model FLOPs and a measured fp32 GEMM peak, so a benchmark can say how close to the
machine's matmul limit a training or scoring loop runs (a ratio that carries across machines).

Counting (per token, dense decoder, matmul work only — norms, softmax, optimiser are not counted):

    forward  = 2·N_body + 2·N_head·[token reaches the LM head] + 4·L·d_attn·k
    trained  = 3 × forward   (full fine-tune: forward + input gradients + weight gradients)

- N_body: every parameter except the input embedding and the LM head (decoder layers + final
  norm); N_head = V·d, the LM head's matmul, counted even when tied to the embedding, and only at
  the positions whose logits are computed (a loop that runs the head only at scored positions is
  credited only for those).
- attention: 4·d_attn FLOPs per layer per (query, allowed key) pair (QKᵀ and AV, 2·d_attn each),
  d_attn = heads·head_dim; k = the keys the query may attend (causal: its position + 1; block
  masks: the mask's allowed entries). Masked-out work a kernel does anyway is not credited.
- frozen weights (LoRA base, a frozen head) need no weight gradient: trained = forward +
  input gradients (2·N) + weight gradients (2·N_trainable) for the matmuls, 3× for attention.
  With every weight trainable this is the usual 6·N per trained token.

`gemm_peak` times fp32 square matmuls of the model's own widths on this process's thread count
(best of a few) — the fraction of it is the efficiency column.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class ModelShape:
    """The sizes that set a decoder's FLOPs per token."""

    body_params: int  # decoder layers + final norm (no input embedding, no LM head)
    head_params: int  # LM head matmul V·d (counted even when tied)
    n_layers: int
    attn_dim: int  # query heads · head_dim
    trainable_body: int  # of body_params, the ones that get a weight gradient
    trainable_head: int  # of head_params, likewise
    widths: tuple[int, ...] = ()  # hidden / intermediate sizes, for sizing the GEMM peak

    @property
    def n_params(self) -> int:
        """N = non-embedding parameters + LM head."""
        return self.body_params + self.head_params

    def forward_flops(self, tokens: float, head_tokens: float, attended: float) -> float:
        """2·N_body·tokens + 2·N_head·head_tokens + 4·L·d_attn·attended (forward only)."""
        return (2.0 * self.body_params * tokens + 2.0 * self.head_params * head_tokens
                + 4.0 * self.n_layers * self.attn_dim * attended)

    def train_flops(self, tokens: float, head_tokens: float, attended: float) -> float:
        """Forward + backward: (4·N_body + 2·N_body,trainable)·tokens + same for the head·head_tokens
        + 3·4·L·d_attn·attended; = 3 × forward_flops when every weight is trainable."""
        body = (4.0 * self.body_params + 2.0 * self.trainable_body) * tokens
        head = (4.0 * self.head_params + 2.0 * self.trainable_head) * head_tokens
        return body + head + 12.0 * self.n_layers * self.attn_dim * attended


def model_shape(model: Any) -> ModelShape:
    """ModelShape of a Hugging Face causal LM (PEFT-wrapped too): parameters by role, trainable counts."""
    core = model.get_base_model() if hasattr(model, "get_base_model") else model
    cfg = core.config
    emb = core.get_input_embeddings().weight
    head = core.get_output_embeddings().weight
    body = trainable = 0
    seen = {id(emb), id(head)}
    for p in core.parameters():
        if id(p) in seen:
            continue
        seen.add(id(p))
        body += p.numel()
        trainable += p.numel() if p.requires_grad else 0
    heads = cfg.num_attention_heads
    head_dim = getattr(cfg, "head_dim", None) or cfg.hidden_size // heads
    widths = tuple(sorted({int(cfg.hidden_size), int(getattr(cfg, "intermediate_size", cfg.hidden_size))}))
    return ModelShape(body, head.numel(), int(cfg.num_hidden_layers), heads * head_dim, trainable,
                      head.numel() if head.requires_grad else 0, widths)


def causal_attended(lengths: Iterable[int]) -> int:
    """Allowed (query, key) pairs of causal sequences: Σ n(n+1)/2."""
    return sum(n * (n + 1) // 2 for n in lengths)


def prompt_pair_attended(prompt: int, chosen: int, rejected: int) -> int:
    """Allowed (query, key) pairs of one [prompt, chosen, rejected] block layout: the prompt causal,
    each response causal over itself after the whole prompt."""
    return causal_attended([prompt]) + sum(r * prompt + r * (r + 1) // 2 for r in (chosen, rejected))


@dataclass(frozen=True)
class GemmPeak:
    """Best fp32 GEMM rate measured on this process's threads."""

    gflops: float
    size: int  # the square matmul size that reached it
    threads: int


def gemm_peak(sizes: Sequence[int] = (256, 512, 1024), repeats: int = 5, seconds: float = 0.15) -> GemmPeak:
    """Best-of-`repeats` GFLOP/s of fp32 n×n @ n×n for each n in `sizes` (each timing ≈ `seconds`),
    on torch's current thread count; 2·n³ FLOPs per matmul."""
    import torch

    best = GemmPeak(0.0, 0, torch.get_num_threads())
    with torch.no_grad():
        for n in sizes:
            a, b = torch.randn(n, n), torch.randn(n, n)
            out = torch.empty(n, n)
            torch.mm(a, b, out=out)  # warm-up
            reps = max(1, int(seconds * 40e9 / (2 * n**3)))
            for _ in range(repeats):
                t = time.perf_counter()
                for _ in range(reps):
                    torch.mm(a, b, out=out)
                rate = 2 * n**3 * reps / (time.perf_counter() - t) / 1e9
                if rate > best.gflops:
                    best = GemmPeak(rate, n, best.threads)
    return best


def model_gemm_sizes(shape: ModelShape) -> tuple[int, ...]:
    """Square GEMM sizes like the model's matmuls: its hidden and intermediate widths."""
    return shape.widths or (512,)


def efficiency(flops: float, seconds: float, peak_gflops: float) -> tuple[float, float]:
    """(achieved GFLOP/s, fraction of the measured peak) for `flops` done in `seconds`."""
    achieved = flops / seconds / 1e9
    return achieved, achieved / peak_gflops if peak_gflops > 0 else float("nan")
