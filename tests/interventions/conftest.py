"""Tiny random-weight decoder models of four families (built from configs, no downloads)."""

from __future__ import annotations

import pytest
import torch


def tiny_family_model(family: str):
    """A 2-layer random model of `family` with hidden 32 and 4 heads (eval mode)."""
    from transformers import (
        AutoModelForCausalLM,
        GPT2Config,
        GPTNeoXConfig,
        LlamaConfig,
        Qwen2Config,
    )

    common = dict(vocab_size=64, pad_token_id=0, eos_token_id=1, bos_token_id=None)
    cfgs = {
        "llama": lambda: LlamaConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                     num_attention_heads=4, num_key_value_heads=2, **common),
        "qwen2": lambda: Qwen2Config(hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                     num_attention_heads=4, num_key_value_heads=2, **common),
        "gpt2": lambda: GPT2Config(n_embd=32, n_layer=2, n_head=4, n_positions=64, **common),
        "gpt_neox": lambda: GPTNeoXConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                          num_attention_heads=4, **common),
    }
    torch.manual_seed(0)
    return AutoModelForCausalLM.from_config(cfgs[family]()).eval()


FAMILIES = ["llama", "qwen2", "gpt2", "gpt_neox"]


_CACHE: dict = {}


@pytest.fixture(params=FAMILIES)
def family_model(request):
    """(family, model), built once per session; tests must not modify it (deepcopy first)."""
    if request.param not in _CACHE:
        _CACHE[request.param] = tiny_family_model(request.param)
    return request.param, _CACHE[request.param]


@pytest.fixture
def make_family_model():
    """The factory itself, for tests that pick families explicitly."""
    return tiny_family_model


@pytest.fixture(autouse=True)
def _one_thread():
    """Tiny models run faster on one thread (and far faster when the 2 cores are shared)."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)
