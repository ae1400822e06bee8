"""The sampling backend setting (vLLM refused cleanly where it is not installed) and PolicyWithValue.save
with gathered weights (what the trainer passes under FSDP2 / ZeRO-3)."""

from __future__ import annotations

import importlib.util

import pytest
import torch
from safetensors.torch import load_file

from alignlab.config import check_config
from alignlab.errors import ConfigError
from alignlab.method_settings import SamplingSettings


@pytest.mark.skipif(importlib.util.find_spec("vllm") is not None, reason="vllm is installed here")
def test_vllm_backend_without_the_package_is_a_config_error_naming_the_key():
    with pytest.raises(ConfigError, match=r"generation\.backend: 'vllm' needs the vllm package"):
        check_config(SamplingSettings(backend="vllm"), "generation")
    check_config(SamplingSettings(backend="hf"), "generation")  # the others need nothing


def test_vllm_outside_ppo_is_refused_by_sample(tiny):
    from alignlab.generation import sample

    model, tok = tiny
    with pytest.raises(ConfigError, match="ppo rollouts only"):
        sample(model, tok, ["hello"], max_new_tokens=2, backend="vllm")


def test_policy_save_uses_gathered_weights(tiny, tmp_path):
    from transformers import AutoModelForCausalLM

    from alignlab.rl.policy import VALUE_HEAD_FILE, PolicyWithValue

    model, _ = tiny
    policy = PolicyWithValue(model)
    gathered = {k: torch.full_like(v, 0.5) for k, v in policy.state_dict().items()}
    policy.save(tmp_path / "g", state_dict=gathered)
    saved = AutoModelForCausalLM.from_pretrained(tmp_path / "g")
    assert all(torch.equal(p, torch.full_like(p, 0.5)) for p in saved.parameters())
    head = load_file(str(tmp_path / "g" / VALUE_HEAD_FILE))
    assert torch.equal(head["weight"], torch.full_like(policy.value_head.weight, 0.5))
    policy.save(tmp_path / "own")  # without gathered weights: its own
    own = AutoModelForCausalLM.from_pretrained(tmp_path / "own")
    ref = dict(model.named_parameters())
    assert all(torch.equal(p, ref[n]) for n, p in own.named_parameters())
