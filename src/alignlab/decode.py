"""A fast decoder for Llama-family causal LMs (Llama, Qwen2, Mistral): static KV cache, no HF per-token overhead.

`sample` (alignlab.generation) drives a decoder through `prefill(ids, mask) -> logits` and
`step(tokens) -> logits`. The generic decoder calls the HF model with a DynamicCache; this one
calls the model's own submodules (embed_tokens, the norms, q/k/v/o projections, mlp, lm_head, so
PEFT/LoRA-wrapped layers and Qwen2's q/k/v biases work) but does rotary, grouped-query attention
and the cache itself:

    cache  K, V: [layers, B, kv_heads, T_max, head_dim], allocated once per batch
    step t writes column c = T_prompt + t (left padding puts every row's new token in one column)
    attention(q, K[:, :, :c+1], V[:, :, :c+1], mask = prompt padding mask) via SDPA

so one new token costs one pass over the layers and nothing else: no mask building, no cache
concatenation, no output dataclasses; `keep(rows)` drops finished rows from the batch. On CPU
that saves HF's per-token overhead, 10-20 % of a step on a 1M-parameter model and nothing
measurable on models of 10M+ parameters, whose steps are matmul-bound (benchmarks/
RESULTS_generation.md); dropping finished rows saves in proportion to them.

Anything it cannot reproduce exactly (other architectures, forward hooks e.g. steering,
accelerate offload hooks, DDP or compiled wrappers, prompt-learning PEFT, sequence-length
dependent RoPE, an active sliding window) makes `fast_decoder_reason` say why, and `sample`
uses the generic loop. In fp32 on CPU its logits equal the HF forward's bit for bit (tested to 1e-5).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

FAST_MODEL_TYPES = ("llama", "qwen2", "mistral")
_STATIC_ROPE = ("default", "linear", "llama3", "yarn")  # inv_freq does not depend on the sequence length


def base_causal_lm(model: nn.Module) -> nn.Module:
    """The transformers model under a PEFT wrapper (LoRA layers stay in place inside it)."""
    get = getattr(model, "get_base_model", None)
    return get() if callable(get) else model


def _has_hooks(model: nn.Module) -> bool:
    """True when any forward (pre-)hook or accelerate hook could change what the submodules compute."""
    from torch.nn.modules import module as torch_module

    if torch_module._global_forward_hooks or torch_module._global_forward_pre_hooks:
        return True
    return any(m._forward_hooks or m._forward_pre_hooks or hasattr(m, "_hf_hook") for m in model.modules())


def fast_decoder_reason(model: nn.Module, max_len: int) -> str | None:
    """Why the fast decoder cannot run this model for sequences up to `max_len` tokens; None when it can."""
    if hasattr(model, "module") or hasattr(model, "_orig_mod"):
        return "wrapped model (DDP / torch.compile)"
    peft_config = getattr(model, "active_peft_config", None)
    if peft_config is not None and getattr(peft_config, "is_prompt_learning", False):
        return "prompt-learning PEFT adapter"
    base = base_causal_lm(model)
    config = getattr(base, "config", None)
    if getattr(config, "model_type", None) not in FAST_MODEL_TYPES:
        return f"model type {getattr(config, 'model_type', None)!r} is not one of {FAST_MODEL_TYPES}"
    inner = getattr(base, "model", None)
    if not all(hasattr(inner, a) for a in ("embed_tokens", "layers", "norm", "rotary_emb")) or not hasattr(
            base, "lm_head"):
        return "unexpected module layout"
    rope = (getattr(config, "rope_parameters", None) or getattr(config, "rope_scaling", None) or {})
    if rope.get("rope_type", rope.get("type", "default")) not in _STATIC_ROPE:
        return f"rope type {rope.get('rope_type')!r} depends on the sequence length"
    window = getattr(config, "sliding_window", None)
    if window is not None and max_len > window:
        return f"sliding window {window} < {max_len} tokens"
    if getattr(config, "final_logit_softcapping", None) or getattr(config, "attn_logit_softcapping", None):
        return "logit soft-capping"
    if _has_hooks(model):
        return "forward hooks on the model (e.g. steering)"
    return None


def rope(x: torch.Tensor, cos: torch.Tensor, signed_sin: torch.Tensor) -> torch.Tensor:
    """RoPE: x·cos + rotate_half(x)·sin with rotate_half(x) = [-x₂, x₁] (HF's convention).

    Computed as x·cos + roll(x, d/2)·[-sin₁, sin₂]: the same products bit for bit, in fewer ops.
    """
    return x * cos + x.roll(x.shape[-1] // 2, -1) * signed_sin


def rope_tables(inner: nn.Module, h: torch.Tensor, positions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(cos, signed sin) [..., head_dim] of the model's rotary embedding at `positions`, for `rope`:
    HF's own tables, with sin's first half negated (so rotate_half becomes a roll)."""
    cos, sin = inner.rotary_emb(h, positions)
    half = sin.shape[-1] // 2
    return cos, torch.cat([-sin[..., :half], sin[..., half:]], dim=-1)


RMS_NORMS = ("LlamaRMSNorm", "Qwen2RMSNorm", "MistralRMSNorm")


def rms_norm(module: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """The model's RMSNorm; in fp32 as one fused `F.rms_norm` (bit-identical there, one op instead of eight)."""
    if x.dtype == torch.float32 and type(module).__name__ in RMS_NORMS:
        return F.rms_norm(x, x.shape[-1:], module.weight, module.variance_epsilon)
    return module(x)


class FastDecoder:
    """Prefill + one-token decode steps over a preallocated KV cache for one left-padded batch."""

    def __init__(self, model: nn.Module) -> None:
        base = base_causal_lm(model)
        self.inner, self.lm_head = base.model, base.lm_head
        cfg = base.config
        self.layers = list(self.inner.layers[: cfg.num_hidden_layers])
        attn = self.layers[0].self_attn
        self.head_dim = attn.head_dim
        self.n_heads = cfg.num_attention_heads
        self.n_kv = cfg.num_key_value_heads
        self.scale = attn.scaling
        self.k_cache = self.v_cache = self.cos = self.signed_sin = self.key_mask = None
        self.pos: torch.Tensor | None = None
        self.col = 0

    def prefill(self, ids: torch.Tensor, mask: torch.Tensor, max_new_tokens: int) -> torch.Tensor:
        """Run the left-padded prompts [B, T], fill the cache, return the last position's logits [B, V]."""
        b, t = ids.shape
        t_max = t + max_new_tokens
        h = self.inner.embed_tokens(ids)
        positions = torch.arange(t_max, device=ids.device)[None]
        cos, signed_sin = rope_tables(self.inner, h, positions)  # HF's own tables: [1, T_max, head_dim]
        self.cos, self.signed_sin = cos[0], signed_sin[0]
        self.pos = (mask.long().cumsum(-1) - 1).clamp_min(0)
        self.key_mask = torch.cat([mask.bool(), mask.new_ones(b, max_new_tokens, dtype=torch.bool)], dim=-1)
        causal = torch.ones(t, t, dtype=torch.bool, device=ids.device).tril()
        # padded queries see themselves only, so no row is fully masked (SDPA would give NaN into the cache)
        attn_mask = (causal & self.key_mask[:, None, None, :t]) | torch.eye(t, dtype=torch.bool, device=ids.device)
        shape = (len(self.layers), b, self.n_kv, t_max, self.head_dim)
        self.k_cache = self.v_cache = None
        cos_p, sin_p = self.cos[self.pos][:, None], self.signed_sin[self.pos][:, None]  # [B, 1, T, D]
        for i, layer in enumerate(self.layers):
            att = layer.self_attn
            x = rms_norm(layer.input_layernorm, h)
            q = att.q_proj(x).view(b, t, -1, self.head_dim).transpose(1, 2)
            k = att.k_proj(x).view(b, t, -1, self.head_dim).transpose(1, 2)
            v = att.v_proj(x).view(b, t, -1, self.head_dim).transpose(1, 2)
            q, k = rope(q, cos_p, sin_p), rope(k, cos_p, sin_p)
            if self.k_cache is None:
                self.k_cache = k.new_empty(shape)
                self.v_cache = v.new_empty(shape)
            self.k_cache[i, :, :, :t] = k
            self.v_cache[i, :, :, :t] = v
            if self.n_kv != self.n_heads:
                rep = self.n_heads // self.n_kv
                k, v = k.repeat_interleave(rep, dim=1), v.repeat_interleave(rep, dim=1)
            a = F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask, scale=self.scale)
            h = h + att.o_proj(a.transpose(1, 2).reshape(b, t, -1))
            h = h + layer.mlp(rms_norm(layer.post_attention_layernorm, h))
        self.col = t
        self.pos = self.pos[:, -1]
        return self.lm_head(rms_norm(self.inner.norm, h[:, -1:]))[:, 0]

    def step(self, tokens: torch.Tensor) -> torch.Tensor:
        """Feed one new token per row [B] at the next column, return the next logits [B, V]."""
        b = tokens.shape[0]
        c = self.col
        self.pos = self.pos + 1
        cos, sin = self.cos[self.pos][:, None, None], self.signed_sin[self.pos][:, None, None]  # [B, 1, 1, D]
        rep = self.n_heads // self.n_kv
        h = self.inner.embed_tokens(tokens[:, None])
        for i, layer in enumerate(self.layers):
            att = layer.self_attn
            x = rms_norm(layer.input_layernorm, h)
            q = att.q_proj(x).view(b, -1, 1, self.head_dim)  # [B, H, 1, D]
            k = att.k_proj(x).view(b, -1, 1, self.head_dim)
            v = att.v_proj(x).view(b, -1, 1, self.head_dim)
            q, k = rope(q, cos, sin), rope(k, cos, sin)
            self.k_cache[i, :, :, c : c + 1] = k
            self.v_cache[i, :, :, c : c + 1] = v
            # grouped-query attention: the rep query heads of one kv head act as rep query positions
            q = q.view(b, self.n_kv, rep, self.head_dim)
            a = F.scaled_dot_product_attention(q, self.k_cache[i, :, :, : c + 1], self.v_cache[i, :, :, : c + 1],
                                               attn_mask=self.key_mask[:, None, None, : c + 1], scale=self.scale)
            h = h + att.o_proj(a.reshape(b, 1, -1))
            h = h + layer.mlp(rms_norm(layer.post_attention_layernorm, h))
        self.col = c + 1
        return self.lm_head(rms_norm(self.inner.norm, h))[:, 0]

    def keep(self, rows: torch.Tensor) -> None:
        """Keep only these rows of the batch (finished rows stop costing compute); rows: indices into it."""
        self.k_cache, self.v_cache = self.k_cache[:, rows], self.v_cache[:, rows]
        self.pos, self.key_mask = self.pos[rows], self.key_mask[rows]

