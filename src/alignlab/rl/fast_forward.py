"""A Llama-family forward over packed rollout rows that returns only what PPO reads: the final
hidden states at the positions predicting response tokens (the LM head's and value head's input).

It calls the model's own submodules (embed_tokens, the norms, q/k/v/o projections, mlp, so
PEFT/LoRA layers are honoured) like `alignlab.decode.FastDecoder`, but for whole packed rows with
gradients:

    h = embed(ids);  cos, sin = rotary(position_ids)            # positions restart per sequence
    per layer:  x = rms(h);  q, k, v = proj(x);  q, k = rope(q), rope(k)
                a = SDPA(q, k, v, block-diagonal causal mask)
                last layer only: h, a = h[src], a[src]          # keys/values need every position,
                h += o_proj(a);  h += mlp(rms(h))               # the rest only the read ones
    out = rms_final(h)

Same arithmetic as the transformers forward (RoPE as a roll, RMSNorm with a closed-form gradient),
without its per-call work (mask preparation, output dataclasses, kwargs plumbing, output
capturing) and without the last layer's o_proj, MLP and final norm at positions nobody reads
(the prompt's and the last token's: ~30 % of a student rollout's positions, ~17 % of a 10M's). `fast_forward_reason` says why a model cannot take it (then
the caller uses the transformers forward): the fast decoder's conditions (architecture, hooks,
wrappers, RoPE type), gradient checkpointing, or attention dropout while training.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from alignlab.decode import (
    RMS_NORMS,
    base_causal_lm,
    fast_decoder_reason,
    rms_norm,
    rope,
    rope_tables,
)


class _RMSNorm(torch.autograd.Function):
    """y = x·r·w with r = 1/sqrt(mean(x²) + ε) over the last dim, and its gradient in closed form:

        ∂w = Σ_rows g·x̂,   ∂x = r·(g·w − x̂·mean(g·w·x̂)),   x̂ = x·r

    (8 elementwise passes instead of autograd's ~20 through pow/mean/rsqrt/mul; same forward values
    as `F.rms_norm`, gradients equal to float rounding)."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, weight: torch.Tensor, eps: float) -> torch.Tensor:
        r = torch.rsqrt(x.square().mean(-1, keepdim=True).add_(eps))
        xn = x * r
        ctx.save_for_backward(xn, r, weight)
        return xn * weight

    @staticmethod
    def backward(ctx, g: torch.Tensor) -> tuple[torch.Tensor | None, torch.Tensor | None, None]:
        xn, r, weight = ctx.saved_tensors
        gw = (g * xn).reshape(-1, xn.shape[-1]).sum(0) if ctx.needs_input_grad[1] else None
        gxn = g * weight
        gx = (gxn - xn * (gxn * xn).mean(-1, keepdim=True)).mul_(r) if ctx.needs_input_grad[0] else None
        return gx, gw, None


def _norm(module: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """The model's RMSNorm: with gradients in fp32 through `_RMSNorm`, otherwise `alignlab.decode.rms_norm`."""
    if torch.is_grad_enabled() and x.dtype == torch.float32 and type(module).__name__ in RMS_NORMS:
        return _RMSNorm.apply(x, module.weight, module.variance_epsilon)
    return rms_norm(module, x)


def fast_forward_reason(model: nn.Module, width: int) -> str | None:
    """Why `packed_head_inputs` cannot run `model` on rows `width` wide; None when it can."""
    reason = fast_decoder_reason(model, width)
    if reason is not None:
        return reason
    base = base_causal_lm(model)
    name = "is_activation_checkpointing" if hasattr(type(base), "is_activation_checkpointing") else \
        "is_gradient_checkpointing"  # transformers 5.x renamed it
    if getattr(base, name, False):
        return "gradient checkpointing"
    if model.training and float(getattr(base.config, "attention_dropout", 0.0) or 0.0) > 0:
        return "attention dropout while training"
    return None


def packed_head_inputs(model: nn.Module, input_ids: torch.Tensor, position_ids: torch.Tensor,
                       attention_mask: torch.Tensor, src_row: torch.Tensor, src_col: torch.Tensor) -> torch.Tensor:
    """Final-normed hidden states [N, d] at (src_row, src_col) of packed rows [n, W].

    `attention_mask` [n, 1, W, W] bool (True = may attend), `position_ids` [n, W] restarting per
    sequence. Differentiable; equals the transformers forward's `lm_head` input at those positions.
    """
    base = base_causal_lm(model)
    inner = base.model
    n, w = input_ids.shape
    h = inner.embed_tokens(input_ids)
    cos, signed_sin = rope_tables(inner, h, position_ids)  # [n, W, D]
    cos, signed_sin = cos[:, None], signed_sin[:, None]  # broadcast over heads
    layers = inner.layers[: base.config.num_hidden_layers]
    for i, layer in enumerate(layers):
        att = layer.self_attn
        x = _norm(layer.input_layernorm, h)
        q = att.q_proj(x).view(n, w, -1, att.head_dim).transpose(1, 2)  # [n, H, W, D]
        k = att.k_proj(x).view(n, w, -1, att.head_dim).transpose(1, 2)
        v = att.v_proj(x).view(n, w, -1, att.head_dim).transpose(1, 2)
        q, k = rope(q, cos, signed_sin), rope(k, cos, signed_sin)
        gqa = k.shape[1] != q.shape[1]
        a = F.scaled_dot_product_attention(q, k, v, attn_mask=attention_mask, scale=att.scaling, enable_gqa=gqa)
        a = a.transpose(1, 2).reshape(n, w, -1)
        if i == len(layers) - 1:  # nothing reads the other positions of the last layer: o_proj + MLP where read
            h, a = h[src_row, src_col], a[src_row, src_col]
        h = h + att.o_proj(a)
        h = h + layer.mlp(_norm(layer.post_attention_layernorm, h))
    return _norm(inner.norm, h)

