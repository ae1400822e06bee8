"""The packed Llama-family forward (alignlab.rl.fast_forward) against the transformers forward it
replaces in PPO's scoring and update: same response logits, hidden states and gradients on the
trained tiny Llama, a random Qwen2 with q/k/v biases and grouped-query attention, and a LoRA
Llama; and the transformers path whenever the fast one cannot be exact."""

from __future__ import annotations

import copy

import pytest
import torch

import alignlab.rl.row_packing as row_packing
from alignlab.rl.fast_forward import fast_forward_reason
from alignlab.rl.row_packing import pack_rollout_rows, response_token_logits
from alignlab.scoring import pack

PROMPTS = [[5, 17, 40, 41], [9], [100, 101, 102, 103, 104, 105, 106], [3, 4]]
RESPONSES = [[7, 8, 9], [11, 12, 13, 14, 15, 16], [20], [30, 31]]


@pytest.fixture(scope="module")
def models(tiny_dir):
    """name -> model: the trained tiny Llama, a random Qwen2 (biases, 4 heads on 2 kv heads), a LoRA Llama."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, Qwen2Config, Qwen2ForCausalLM

    llama = AutoModelForCausalLM.from_pretrained(tiny_dir)
    torch.manual_seed(1)
    qwen = Qwen2ForCausalLM(Qwen2Config(
        vocab_size=llama.config.vocab_size, hidden_size=64, intermediate_size=96, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=128, pad_token_id=0,
        attn_implementation="sdpa"))
    with torch.no_grad():
        for name, p in qwen.named_parameters():
            if name.endswith("bias"):
                p.normal_(0, 0.5)
    torch.manual_seed(2)
    lora = get_peft_model(AutoModelForCausalLM.from_pretrained(tiny_dir), LoraConfig(
        r=4, lora_alpha=8, init_lora_weights=False, target_modules=["q_proj", "v_proj", "o_proj", "up_proj"]))
    return {"llama": llama, "qwen2": qwen, "lora": lora}


def _outputs(model: torch.nn.Module, rows) -> tuple[torch.Tensor, torch.Tensor, dict[str, torch.Tensor]]:
    """(logits, hidden, gradients of a loss reading both) of one packed forward in train mode."""
    model.train()
    model.zero_grad()
    logits, hidden = response_token_logits(model, rows, hidden=True)
    (logits.logsumexp(-1).sum() + hidden.square().sum()).backward()
    grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    return logits.detach(), hidden.detach(), grads


@pytest.mark.parametrize("name", ["llama", "qwen2", "lora"])
def test_fast_packed_forward_equals_the_transformers_forward(models, name, monkeypatch):
    model = models[name]
    rows = pack_rollout_rows(pack(PROMPTS, RESPONSES, 0), attn_weight=0.0)  # several sequences per row
    assert rows.input_ids.shape[0] < len(PROMPTS)
    assert fast_forward_reason(model, rows.input_ids.shape[1]) is None
    fast = _outputs(model, rows)
    monkeypatch.setattr(row_packing, "fast_forward_reason", lambda m, w: "off for the test")
    slow = _outputs(model, rows)
    exact = _outputs(copy.deepcopy(model).double(), rows)  # the transformers forward in float64: the truth
    torch.testing.assert_close(fast[0], slow[0], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(fast[1], slow[1], atol=1e-5, rtol=1e-5)
    assert fast[2].keys() == slow[2].keys() == exact[2].keys() and len(fast[2]) > 0

    def err(grads: dict[str, torch.Tensor], n: str) -> float:
        return float((grads[n].double() - exact[2][n]).norm() / exact[2][n].norm().clamp_min(1e-12))

    # fp32 gradients as close to the float64 ones as transformers' own fp32 gradients, up to fp32
    # rounding: which of the two sums rounds better differs by CPU (fast 9e-6 vs 5e-6 on an AMD EPYC
    # for one LoRA matrix); a wrong mask or position gives errors of 1e-2 and more.
    for n in fast[2]:
        assert err(fast[2], n) <= 2 * err(slow[2], n) + 1e-5, (n, err(fast[2], n), err(slow[2], n))


def test_models_the_fast_forward_cannot_reproduce_are_named(models, tiny_dir):
    from transformers import AutoModelForCausalLM, GPT2Config, GPT2LMHeadModel

    llama = models["llama"]
    assert "model type" in fast_forward_reason(GPT2LMHeadModel(GPT2Config(n_layer=1, n_embd=32, n_head=2)), 16)
    handle = llama.model.layers[0].mlp.register_forward_hook(lambda m, a, o: o * 2)
    try:
        assert "hooks" in fast_forward_reason(llama, 16)
    finally:
        handle.remove()
    assert fast_forward_reason(llama, 16) is None
    fresh = AutoModelForCausalLM.from_pretrained(tiny_dir)
    fresh.gradient_checkpointing_enable()  # (transformers also hooks the embeddings for it)
    assert fast_forward_reason(fresh, 16) in ("gradient checkpointing", "forward hooks on the model (e.g. steering)")
