"""The vLLM rollout backend's parts that need no vLLM: the weights it would receive (LoRA merged,
plain Hugging Face names, the policy unmerged afterwards), its conversion of vLLM token ids to
alignlab's `Samples` (equal to `generation.sample`'s own), and the config error when it is chosen
but not installed. The engine itself is tested in tests/gpu/test_vllm_backend.py (CUDA + vllm)."""

from __future__ import annotations

import copy

import pytest
import torch

from alignlab.errors import ConfigError
from alignlab.vllm_backend import (
    hf_weights,
    merged,
    require_vllm,
    to_samples,
    vllm_available,
    vllm_name,
)


def test_choosing_vllm_without_the_package_is_a_config_error_naming_key_and_extra():
    if vllm_available():
        pytest.skip("vllm is installed here")
    with pytest.raises(ConfigError, match=r"generation.backend: 'vllm' needs the vllm package.*alignlab\[vllm\]"):
        require_vllm()


@pytest.mark.parametrize("name, hf", [
    ("base_model.model.model.layers.0.self_attn.q_proj.base_layer.weight", "model.layers.0.self_attn.q_proj.weight"),
    ("base_model.model.model.layers.0.self_attn.q_proj.lora_A.default.weight", None),
    ("base_model.model.lm_head.modules_to_save.default.weight", "lm_head.weight"),
    ("base_model.model.lm_head.original_module.weight", None),
    ("value_head.weight", None),
    ("model.layers.1._checkpoint_wrapped_module.mlp.up_proj.weight", "model.layers.1.mlp.up_proj.weight"),
    ("model.norm.weight", "model.norm.weight"),
])
def test_vllm_names(name, hf):
    assert vllm_name(name) == hf


def _tiny_llama():
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    return LlamaForCausalLM(LlamaConfig(vocab_size=40, hidden_size=16, intermediate_size=32, num_hidden_layers=2,
                                        num_attention_heads=2, num_key_value_heads=1, tie_word_embeddings=False,
                                        pad_token_id=0, bos_token_id=None, eos_token_id=None))


def test_a_lora_policy_is_pushed_merged_under_hf_names_and_left_unmerged():
    from peft import LoraConfig, get_peft_model

    from alignlab.rl.policy import PolicyWithValue

    lm = get_peft_model(_tiny_llama(), LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"]))
    for n, p in lm.named_parameters():
        if "lora_B" in n:
            p.data.normal_(generator=torch.Generator().manual_seed(len(n)))
    policy = PolicyWithValue(lm)
    x = torch.arange(1, 9).unsqueeze(0)
    before = lm(input_ids=x).logits.detach()
    reference = {n: p.detach() for n, p in copy.deepcopy(lm).merge_and_unload().named_parameters()}
    with merged(lm):
        pushed = {n: t.clone() for n, t in hf_weights(policy)}
    assert pushed.keys() == reference.keys()  # every base weight once, no LoRA factor, no value head
    assert all(torch.allclose(pushed[n], reference[n], atol=1e-6) for n in reference)
    base = dict(_tiny_llama().named_parameters())
    assert not torch.allclose(pushed["model.layers.0.self_attn.q_proj.weight"],
                              base["model.layers.0.self_attn.q_proj.weight"])  # the adapter is in it
    from peft.tuners.lora import LoraLayer

    assert not any(m.merged for m in lm.modules() if isinstance(m, LoraLayer))  # unmerged again
    assert torch.allclose(lm(input_ids=x).logits.detach(), before, atol=1e-6)


def test_vllm_token_ids_become_the_samples_generation_sample_returns(tiny):
    from alignlab.generation import sample, stop_token_ids

    model, tok = tiny
    prompts = ["review : the food was", "review : the staff", "question : what is"]
    ours = sample(model, tok, prompts, max_new_tokens=12, temperature=1.0,
                  generator=torch.Generator().manual_seed(3), backend="hf")
    stops = stop_token_ids(tok)
    # vLLM's outputs for the same draws: ids up to and including the stop token
    converted = to_samples(ours.prompt_ids, ours.response_ids, tok, stops, 12)
    assert converted == ours
    assert any(r and r[-1] in stops for r in ours.response_ids)  # a stop token was drawn and kept


def test_to_samples_cuts_after_the_first_stop_and_at_the_length():
    class Tok:
        def batch_decode(self, rows, skip_special_tokens):
            return [" ".join(map(str, r)) for r in rows]

    s = to_samples([[1], [2]], [[5, 9, 6, 9], [5, 6, 7, 8]], Tok(), stops=[9], max_new_tokens=3)
    assert s.response_ids == [[5, 9], [5, 6, 7]] and s.texts == ["5", "5 6 7"] and s.prompt_ids == [[1], [2]]
