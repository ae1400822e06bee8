"""benchmarks/flops.py: FLOP counts against hand values and a real model's parameter roles."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

_spec = importlib.util.spec_from_file_location("bench_flops", Path(__file__).resolve().parents[2] / "benchmarks" / "flops.py")
flops = importlib.util.module_from_spec(_spec)
sys.modules["bench_flops"] = flops  # dataclasses look their module up
_spec.loader.exec_module(flops)


def test_counts_match_hand_values():
    s = flops.ModelShape(body_params=1000, head_params=200, n_layers=2, attn_dim=8, trainable_body=1000,
                         trainable_head=200)
    # forward: 2·1000·10 + 2·200·4 + 4·2·8·55 = 20000 + 1600 + 3520
    assert s.forward_flops(10, 4, 55) == 25120
    assert s.train_flops(10, 4, 55) == 3 * 25120  # all trainable: 6·N per trained token
    frozen = flops.ModelShape(1000, 200, 2, 8, trainable_body=100, trainable_head=0)
    # (4·1000 + 2·100)·10 + 4·200·4 + 12·2·8·55
    assert frozen.train_flops(10, 4, 55) == 42000 + 3200 + 10560


def test_attended_pairs():
    assert flops.causal_attended([1, 3, 4]) == 1 + 6 + 10
    # prompt 2 (3 pairs), chosen 3 after it (3·2 + 6), rejected 1 (1·2 + 1)
    assert flops.prompt_pair_attended(2, 3, 1) == 3 + 12 + 3


def test_model_shape_of_a_llama():
    torch = pytest.importorskip("torch")
    from transformers import LlamaConfig, LlamaForCausalLM

    cfg = LlamaConfig(vocab_size=50, hidden_size=16, intermediate_size=40, num_hidden_layers=2, num_attention_heads=4,
                      num_key_value_heads=2, tie_word_embeddings=True)
    torch.manual_seed(0)
    m = LlamaForCausalLM(cfg)
    s = flops.model_shape(m)
    per_layer = 16 * 16 * 2 + 16 * 8 * 2 + 3 * 16 * 40 + 2 * 16  # q,o + k,v (2 kv heads of 4 dims) + mlp + 2 norms
    assert s.body_params == 2 * per_layer + 16
    assert s.head_params == 50 * 16 and s.trainable_head == s.head_params
    assert (s.n_layers, s.attn_dim, s.widths) == (2, 16, (16, 40))
    m.model.layers.requires_grad_(False)
    assert flops.model_shape(m).trainable_body == 16


def test_efficiency_and_peak():
    assert flops.efficiency(4e9, 2.0, 4.0) == (2.0, 0.5)
    peak = flops.gemm_peak(sizes=(64,), repeats=2, seconds=0.01)
    assert peak.gflops > 0 and peak.size == 64
