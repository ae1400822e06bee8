"""The fast static-cache decoder (alignlab.decode) against the HF forward it replaces: same logits,
hence the same tokens from `sample`, on Llama, a Qwen2 with q/k/v biases and grouped-query
attention, and a LoRA-wrapped Llama; and the generic loop whenever the fast one cannot be exact."""

from __future__ import annotations

import pytest
import torch

from alignlab.decode import FastDecoder, fast_decoder_reason
from alignlab.errors import ConfigError
from alignlab.generation import HFDecoder, make_decoder, sample, sample_categorical
from alignlab.interventions.hooks import Hooks
from alignlab.scoring import pad_batch

PROMPTS = [[5, 17, 40, 41], [9], [100, 101, 102, 103, 104, 105, 106], [3, 4], [200, 7, 7], [50, 60, 70, 80, 90]]


def assert_same_logits(a: torch.Tensor, b: torch.Tensor, atol: float = 1e-5) -> None:
    """Equal to float32 rounding (the logits here reach ~30)."""
    torch.testing.assert_close(a, b, atol=atol, rtol=1e-5)


def _peaky(model: torch.nn.Module, scale: float = 8.0) -> torch.nn.Module:
    """Random weights scaled up (and every bias set) so logits are far from uniform, as in a trained model."""
    torch.manual_seed(1)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("bias"):
                p.normal_(0, 0.5)
            elif "norm" not in name:
                p.normal_(0, scale / p.shape[-1] ** 0.5)
    return model.eval()


@pytest.fixture(scope="module")
def tok(tiny_dir):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tiny_dir)


@pytest.fixture(scope="module")
def models(tiny_dir, tok):
    """name -> model: the trained tiny Llama, a random Qwen2 (biases, 4 heads on 2 kv heads), a LoRA Llama."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, Qwen2Config, Qwen2ForCausalLM

    llama = AutoModelForCausalLM.from_pretrained(tiny_dir).eval()
    qwen = _peaky(Qwen2ForCausalLM(Qwen2Config(
        vocab_size=len(tok), hidden_size=64, intermediate_size=96, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=2, max_position_embeddings=128, pad_token_id=tok.pad_token_id)))
    torch.manual_seed(2)
    lora = get_peft_model(AutoModelForCausalLM.from_pretrained(tiny_dir), LoraConfig(
        r=4, lora_alpha=8, init_lora_weights=False,
        target_modules=["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"])).eval()
    return {"llama": llama, "qwen2": qwen, "lora": lora}


@pytest.mark.parametrize("name", ["llama", "qwen2", "lora"])
def test_prefill_and_steps_give_the_hf_logits(models, name):
    model = models[name]
    assert fast_decoder_reason(model, 64) is None
    ids, mask = pad_batch(PROMPTS, 0, side="left")
    fast, hf = FastDecoder(model), HFDecoder(model)
    with torch.no_grad():
        a, b = fast.prefill(ids, mask, 6), hf.prefill(ids, mask, 6)
        assert_same_logits(a, b)
        for _ in range(5):
            tokens = b.argmax(-1)
            a, b = fast.step(tokens), hf.step(tokens)
            assert_same_logits(a, b)
    assert (b - b.mean(-1, keepdim=True)).abs().max() > 1  # the logits compared are not all alike


def test_keep_drops_rows_without_changing_the_others(models):
    model = models["qwen2"]
    ids, mask = pad_batch(PROMPTS, 0, side="left")
    full, part = FastDecoder(model), FastDecoder(model)
    rows = torch.tensor([0, 2, 5])
    with torch.no_grad():
        tokens = full.prefill(ids, mask, 4).argmax(-1)
        part.prefill(ids, mask, 4)
        part.keep(rows)
        kept, whole = part.step(tokens[rows]), full.step(tokens)[rows]
    assert_same_logits(kept, whole, atol=3e-5)  # a smaller batch may change the matmul blocking, nothing more


@pytest.mark.parametrize("name", ["llama", "qwen2", "lora"])
@pytest.mark.parametrize("settings", [
    {"temperature": 0.0},
    {"temperature": 1.0},
    {"temperature": 0.7, "top_p": 0.8},
])
def test_sample_gives_the_same_tokens_on_both_backends(models, tok, name, settings):
    """Stop tokens end rows at different steps (the fast decoder drops them), prompts span 3 chunks."""
    prompts = PROMPTS * 2
    free = sample(models[name], tok, prompts, max_new_tokens=10, backend="hf", stop_ids=[],
                  generator=torch.Generator().manual_seed(3), **settings).response_ids
    stops = sorted({r[2] for r in free[:4]})  # tokens some rows produce: they end rows at different steps
    out = {}
    for backend in ("hf", "fast"):
        out[backend] = sample(models[name], tok, prompts, max_new_tokens=10, batch_size=5, backend=backend,
                              generator=torch.Generator().manual_seed(3), stop_ids=stops, **settings)
    assert out["fast"].response_ids == out["hf"].response_ids
    assert out["fast"].texts == out["hf"].texts
    lengths = {len(r) for r in out["fast"].response_ids}
    assert len(lengths) > 1 and max(lengths) > 1  # rows ended at different steps


def test_auto_uses_the_fast_decoder_only_without_hooks(models, tok):
    model = models["llama"]
    assert isinstance(make_decoder(model, "auto", 32), FastDecoder)
    assert isinstance(make_decoder(model, "hf", 32), HFDecoder)
    plain = sample(model, tok, PROMPTS, max_new_tokens=6, temperature=0.0)
    with Hooks(model) as h:
        h.add("resid.0", torch.full((model.config.hidden_size,), 3.0))
        assert "hooks" in fast_decoder_reason(model, 32)
        assert isinstance(make_decoder(model, "auto", 32), HFDecoder)
        with pytest.raises(ConfigError, match="hooks"):
            make_decoder(model, "fast", 32)
        steered = sample(model, tok, PROMPTS, max_new_tokens=6, temperature=0.0)
    assert steered.response_ids != plain.response_ids  # the steering vector was applied (by the HF loop)
    assert isinstance(make_decoder(model, "auto", 32), FastDecoder)
    with pytest.raises(ConfigError, match="backend"):
        make_decoder(model, "vllm", 32)


def test_unsupported_models_fall_back(tok):
    from transformers import GPT2Config, GPT2LMHeadModel, MistralConfig, MistralForCausalLM

    gpt2 = GPT2LMHeadModel(GPT2Config(vocab_size=len(tok), n_embd=32, n_layer=1, n_head=2, n_positions=64)).eval()
    assert "model type 'gpt2'" in fast_decoder_reason(gpt2, 16)
    assert isinstance(make_decoder(gpt2, "auto", 16), HFDecoder)
    assert len(sample(gpt2, tok, PROMPTS, max_new_tokens=3).response_ids) == len(PROMPTS)
    mistral = MistralForCausalLM(MistralConfig(
        vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2,
        num_key_value_heads=1, sliding_window=8)).eval()
    assert fast_decoder_reason(mistral, 8) is None
    assert "sliding window" in fast_decoder_reason(mistral, 9)


def test_sample_categorical_inverts_the_cdf_and_never_draws_zero_probability_tokens():
    probs = torch.tensor([[0.0, 0.25, 0.0, 0.75, 0.0]]).expand(5, 5)
    u = torch.tensor([[0.0], [0.2499], [0.25], [0.9], [1 - 2**-53]], dtype=torch.float64)
    assert sample_categorical(probs, u).tolist() == [1, 1, 3, 3, 3]
    g = torch.Generator().manual_seed(0)
    p = torch.tensor([[0.1, 0.2, 0.3, 0.4]])
    draws = torch.cat([sample_categorical(p, torch.rand((1, 1), generator=g, dtype=torch.float64))
                       for _ in range(4000)])
    freq = torch.bincount(draws, minlength=4).float() / len(draws)
    torch.testing.assert_close(freq, p[0], atol=0.03, rtol=0)
    assert sample_categorical(torch.tensor([[float("nan"), 0.5]]), u[:1]).tolist() == [2]  # no token: reported


def test_sample_refuses_non_finite_logits(models, tok):
    model = models["llama"]
    handle = model.lm_head.register_forward_hook(lambda _m, _a, out: out * float("nan"))
    try:
        with pytest.raises(FloatingPointError, match="not finite"):
            sample(model, tok, PROMPTS, max_new_tokens=3, generator=torch.Generator().manual_seed(0))
    finally:
        handle.remove()
