"""The optional vLLM rollout backend on CUDA (skipped without a CUDA device or without vllm): greedy
vLLM tokens equal alignlab's own sampler on the same fp32 weights; after the policy changes, vLLM
keeps the old weights until `sync_weights`, then follows the new ones (also a LoRA policy, merged);
seeded sampling repeats. Never run yet: neither machine of this project had vllm installed."""

from __future__ import annotations

import pytest
import torch

pytestmark = pytest.mark.gpu
vllm = pytest.importorskip("vllm", reason="vllm is not installed (pip install 'alignlab[vllm]')")
if not torch.cuda.is_available():
    pytest.skip("vLLM needs a CUDA device", allow_module_level=True)

PROMPTS = ["review : the food was", "review : the staff", "question : what is the", "the room"]
NEW = 8


@pytest.fixture(scope="module")
def engine(tiny_models):
    """(model on CUDA in fp32, tokenizer, sampler) for the tiny random Llama."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from alignlab.vllm_backend import VLLMSampler

    folder = tiny_models["llama"]
    model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32).cuda().eval()
    tok = AutoTokenizer.from_pretrained(folder)
    sampler = VLLMSampler(model, tok, max_model_len=128, dtype="float32", gpu_memory_utilization=0.2)
    return model, tok, sampler


def greedy(fn, model, tok) -> list[list[int]]:
    return fn(model, tok, PROMPTS, max_new_tokens=NEW, temperature=0.0).response_ids


def test_greedy_vllm_equals_alignlabs_sampler_and_follows_synced_weights(engine):
    from alignlab.generation import sample

    model, tok, sampler = engine
    assert greedy(sampler, model, tok) == greedy(sample, model, tok)
    old = greedy(sample, model, tok)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    new = greedy(sample, model, tok)
    assert new != old  # the perturbation changed what the policy says
    assert greedy(sampler, model, tok) == old  # the engine still holds the old weights
    sampler.sync_weights(model)
    assert greedy(sampler, model, tok) == new


def test_a_lora_policy_is_synced_merged(engine):
    from peft import LoraConfig, get_peft_model

    from alignlab.generation import sample

    model, tok, sampler = engine
    lm = get_peft_model(model, LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"]))
    for n, p in lm.named_parameters():
        if "lora_B" in n:
            p.data.normal_(std=0.2)
    sampler.sync_weights(lm)
    assert greedy(sampler, lm, tok) == greedy(sample, lm, tok)


def test_seeded_sampling_repeats_and_keeps_to_the_length(engine):
    model, tok, sampler = engine
    draw = [sampler(model, tok, PROMPTS, max_new_tokens=NEW, generator=torch.Generator().manual_seed(5))
            for _ in range(2)]
    assert draw[0].response_ids == draw[1].response_ids
    assert all(1 <= len(r) <= NEW for r in draw[0].response_ids) and len(draw[0].texts) == len(PROMPTS)
