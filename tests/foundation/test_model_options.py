"""ModelSettings' speed switches on the tiny model: the attention kernel (eager / sdpa give the same
logits; FlashAttention 2 without its package is a ConfigError naming the key), gradient
checkpointing (same loss and gradients, layers really recomputed) and the decoder compile switch."""

from __future__ import annotations

import importlib.util

import pytest
import torch

from alignlab.config import LoraSettings, ModelSettings, load_config
from alignlab.data.chat import collate, encode_pair
from alignlab.errors import ConfigError
from alignlab.losses.lm import causal_lm_loss
from alignlab.models import load_model
from alignlab.models.loading import decoder_of

PAIRS = [("how was the food ?", "the food was great ."),
         ("how was the room ?", "the room was awful and the staff was rude ."),
         ("review :", "the view was lovely .")]


def _batch(tok) -> dict[str, torch.Tensor]:
    """Three prompt/response pairs of different lengths: padding and the loss mask both matter."""
    return collate([encode_pair(tok, p, r, 64) for p, r in PAIRS], tok.pad_token_id)


def _settings(tiny_dir, **kw) -> ModelSettings:
    return ModelSettings(name_or_path=str(tiny_dir), **kw)


@pytest.mark.parametrize("kernel", ["eager", "sdpa"])
def test_attention_kernels_load_and_give_the_default_logits(tiny_dir, kernel):
    default, tok = load_model(_settings(tiny_dir), trainable=False)
    model, _ = load_model(_settings(tiny_dir, attn_implementation=kernel), trainable=False)
    assert model.config._attn_implementation == kernel
    batch = _batch(tok)
    with torch.no_grad():
        ours = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
        ref = default(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    keep = batch["attention_mask"].bool()  # padded positions are not compared
    assert torch.allclose(ours[keep], ref[keep], atol=1e-5, rtol=1e-5)


def test_eager_and_sdpa_agree_with_each_other(tiny_dir):
    eager, tok = load_model(_settings(tiny_dir, attn_implementation="eager"), trainable=False)
    sdpa, _ = load_model(_settings(tiny_dir, attn_implementation="sdpa"), trainable=False)
    assert sdpa.config._attn_implementation == "sdpa" and eager.config._attn_implementation == "eager"
    batch = _batch(tok)
    with torch.no_grad():
        a = eager(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
        b = sdpa(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    keep = batch["attention_mask"].bool()
    assert torch.allclose(a[keep], b[keep], atol=1e-5, rtol=1e-5)


def _loss_and_grads(model, batch) -> tuple[float, dict[str, torch.Tensor]]:
    model.train()
    loss, _ = causal_lm_loss(model, batch)
    loss.backward()
    return float(loss.detach()), {n: p.grad.clone() for n, p in model.named_parameters() if p.requires_grad}


def _count_layer_calls(model) -> list[int]:
    """Counts runs of layer 0's MLP (a wrapped `forward`: hooks do not fire in a checkpoint's recompute)."""
    calls = [0]
    mlp = decoder_of(model).layers[0].mlp
    inner = mlp.forward

    def counted(*args, **kwargs):
        calls[0] += 1
        return inner(*args, **kwargs)

    mlp.forward = counted
    return calls


@pytest.mark.parametrize("lora", [False, True])
def test_gradient_checkpointing_gives_the_same_loss_and_gradients(tiny_dir, lora):
    lora_settings = LoraSettings(enabled=lora, r=4)
    plain, tok = load_model(_settings(tiny_dir, lora=lora_settings))
    ckpt, _ = load_model(_settings(tiny_dir, lora=lora_settings, gradient_checkpointing=True))
    if lora:  # same adapter in both (A is drawn at random; B starts at zero: move it so it counts)
        with torch.no_grad():
            for n, p in plain.named_parameters():
                if "lora_B" in n:
                    p.copy_(torch.linspace(-0.1, 0.1, p.numel()).view_as(p))
        ckpt.load_state_dict(plain.state_dict())
    assert ckpt.config.use_cache is False and plain.config.use_cache is not False
    batch = _batch(tok)
    calls_plain, calls_ckpt = _count_layer_calls(plain), _count_layer_calls(ckpt)
    loss_a, grads_a = _loss_and_grads(plain, batch)
    loss_b, grads_b = _loss_and_grads(ckpt, batch)
    assert calls_plain[0] == 1 and calls_ckpt[0] == 2  # the checkpointed layer ran again in backward
    assert loss_a == pytest.approx(loss_b, abs=1e-6)
    assert grads_a.keys() == grads_b.keys() and grads_a
    assert any(float(g.abs().sum()) > 0 for g in grads_b.values())
    for n in grads_a:
        assert torch.allclose(grads_a[n], grads_b[n], atol=1e-6, rtol=1e-5), n


def test_frozen_models_ignore_the_training_switches(tiny_dir):
    model, _ = load_model(_settings(tiny_dir, gradient_checkpointing=True, compile=True), trainable=False)
    assert not model.is_activation_checkpointing
    assert getattr(decoder_of(model), "_compiled_call_impl", None) is None


@pytest.mark.parametrize("lora", [False, True])
def test_compile_switch_compiles_the_decoder_in_place(tiny_dir, lora):
    """No forward is run (compiling on a CPU takes minutes): the decoder is marked compiled and the
    weights keep their names, so checkpoints and save_pretrained are unchanged."""
    plain, _ = load_model(_settings(tiny_dir, lora=LoraSettings(enabled=lora, r=4)))
    model, _ = load_model(_settings(tiny_dir, lora=LoraSettings(enabled=lora, r=4), compile=True))
    assert getattr(decoder_of(model), "_compiled_call_impl", None) is not None
    assert getattr(decoder_of(plain), "_compiled_call_impl", None) is None
    assert list(model.state_dict()) == list(plain.state_dict())


@pytest.mark.skipif(importlib.util.find_spec("flash_attn") is not None, reason="flash-attn is installed here")
def test_flash_attention_without_the_package_is_a_config_error_naming_the_key(tiny_dir):
    with pytest.raises(ConfigError, match=r"^model\.attn_implementation: 'flash_attention_2' needs the flash-attn"):
        load_model(_settings(tiny_dir, attn_implementation="flash_attention_2"))
    from alignlab.recipes.prefs import PrefsConfig

    with pytest.raises(ConfigError, match=r"config\.model\.attn_implementation: 'flash_attention_2' needs"):
        load_config(PrefsConfig, None, ["model.attn_implementation=flash_attention_2"])
    with pytest.raises(ConfigError, match=r"model\.attn_implementation: 'flash' is not one of"):
        load_config(PrefsConfig, None, ["model.attn_implementation=flash"])


def test_attention_setting_round_trips_through_yaml(tmp_path):
    from alignlab.config import save_config
    from alignlab.recipes.sft import SFTConfig

    cfg = load_config(SFTConfig, None, ["model.attn_implementation=eager", "model.gradient_checkpointing=true",
                                        "model.compile=true"])
    save_config(cfg, tmp_path / "c.yaml")
    again = load_config(SFTConfig, tmp_path / "c.yaml")
    assert (again.model.attn_implementation, again.model.gradient_checkpointing, again.model.compile) == \
        ("eager", True, True)
    assert load_config(SFTConfig, None, ["model.attn_implementation=null"]).model.attn_implementation is None
    assert load_config(SFTConfig, None, []).model.attn_implementation is None
