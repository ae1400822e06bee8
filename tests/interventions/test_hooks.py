"""Hook layer: sites, positions, removal, KV-cache generation — on four model families."""

from __future__ import annotations

import copy

import pytest
import torch

from alignlab.errors import ConfigError
from alignlab.interventions.hooks import (
    Hooks,
    Site,
    attention_out_proj,
    head_shape,
    head_to_residual,
    last_token_activations,
    position_mask,
)

IDS = torch.tensor([[5, 9, 3, 7, 11, 2], [4, 8, 8, 6, 13, 21]])

MLP_OUT = {"llama": "down_proj", "qwen2": "down_proj", "gpt2": "c_proj", "gpt_neox": "dense_4h_to_h"}


def logits(model, ids=IDS):
    with torch.no_grad():
        return model(input_ids=ids).logits


def test_outputs_bit_identical_after_removal(family_model):
    _, model = family_model
    before = logits(model)
    with Hooks(model) as h:
        h.read("resid.0").read("mlp.1").read("heads.1", positions="last")
        h.edit("resid.1", lambda x: x * 3.0).add("mlp.0", torch.ones(32), 2.0, positions=[1, 2])
        h.edit("heads.0", lambda x: x * 0.0)
        during = logits(model)
    assert not torch.equal(before, during)
    assert torch.equal(before, logits(model))


def test_hooks_removed_after_exception(family_model):
    _, model = family_model
    before = logits(model)
    with pytest.raises(RuntimeError, match="boom"):
        with Hooks(model) as h:
            h.edit("resid.0", lambda x: x + 100.0)
            logits(model)
            raise RuntimeError("boom")
    assert torch.equal(before, logits(model))


def test_resid_read_matches_hidden_states(family_model):
    _, model = family_model
    with torch.no_grad(), Hooks(model) as h:
        h.read("resid.0")
        hs = model(input_ids=IDS, output_hidden_states=True).hidden_states
    assert torch.allclose(h.stacked("resid.0"), hs[1], atol=1e-6)


def test_zeroing_one_head_equals_weight_surgery(family_model):
    """Editing head 2 of block 1 to zero == zeroing that head's slice of the out-projection."""
    family, model = family_model
    n_heads, hd = head_shape(model)
    assert (n_heads, hd) == (4, 8)

    def zero_head(x):
        x = x.clone()
        x[..., 2, :] = 0
        return x

    with Hooks(model) as h:
        h.edit("heads.1", zero_head)
        hooked = logits(model)
    surgery = copy.deepcopy(model)
    proj = attention_out_proj(surgery, 1)
    with torch.no_grad():
        if family == "gpt2":  # Conv1D weight is [in, out]
            proj.weight[2 * hd : 3 * hd, :] = 0
        else:
            proj.weight[:, 2 * hd : 3 * hd] = 0
    assert torch.allclose(hooked, logits(surgery), atol=1e-5)
    assert not torch.allclose(hooked, logits(model), atol=1e-5)


def test_zeroing_mlp_equals_weight_surgery(family_model):
    family, model = family_model
    with Hooks(model) as h:
        h.edit("mlp.0", torch.zeros_like)
        hooked = logits(model)
    surgery = copy.deepcopy(model)
    for name, p in surgery.named_parameters():
        if ".0." in name and f"mlp.{MLP_OUT[family]}" in name:
            p.data.zero_()
    assert torch.allclose(hooked, logits(surgery), atol=1e-5)


def test_head_to_residual_is_the_projection_without_bias(family_model):
    _, model = family_model
    v = torch.randn(8)
    out = head_to_residual(model, 0, 1, v)
    proj = attention_out_proj(model, 0)
    x = torch.zeros(1, 32)
    x[0, 8:16] = v
    bias = proj(torch.zeros(1, 32))
    assert torch.allclose(out, (proj(x) - bias)[0], atol=1e-6)


def test_positions_limit_the_edit(family_model):
    """An edit at positions [3] leaves the logits of tokens 0..2 untouched (causality)."""
    _, model = family_model
    base = logits(model)
    with Hooks(model) as h:
        h.add("resid.0", torch.ones(32), 5.0, positions=[3])
        out = logits(model)
    assert torch.equal(out[:, :3], base[:, :3])
    assert not torch.allclose(out[:, 3], base[:, 3])


def _greedy_no_cache(model, ids, steps, vec, start):
    """Reference: recompute the whole sequence each step, steering absolute positions >= start."""
    seq = ids.clone()
    for _ in range(steps):
        with Hooks(model) as h:
            h.add("resid.0", vec, 4.0, positions=slice(start, None))
            nxt = logits(model, seq)[:, -1].argmax(-1, keepdim=True)
        seq = torch.cat([seq, nxt], dim=1)
    return seq[:, ids.shape[1] :]


@pytest.mark.parametrize("family", ["llama", "gpt2"])
def test_kv_cache_generation_matches_full_recompute(family, make_family_model):
    model = make_family_model(family)
    torch.manual_seed(1)
    vec = torch.randn(32)
    ids = IDS[:1]
    ref = _greedy_no_cache(model, ids, 6, vec, start=ids.shape[1] - 1)
    with Hooks(model) as h:
        h.add("resid.0", vec, 4.0, positions="after_prompt")
        gen = model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=6, do_sample=False,
                             min_new_tokens=6, pad_token_id=0)
    assert torch.equal(gen[:, ids.shape[1] :], ref)
    unsteered = model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=6, do_sample=False,
                               min_new_tokens=6, pad_token_id=0)
    assert not torch.equal(unsteered[:, ids.shape[1] :], ref)


def test_position_mask_rules():
    dev = torch.device("cpu")
    assert position_mask("all", 4, 0, dev) is None
    assert position_mask("last", 4, 7, dev).tolist() == [False, False, False, True]
    assert position_mask("after_prompt", 4, 0, dev).tolist() == [False, False, False, True]
    assert position_mask("after_prompt", 1, 9, dev) is None
    assert position_mask([0, 5, -1], 3, 4, dev).tolist() == [False, True, True]
    assert position_mask(slice(5, None), 3, 4, dev).tolist() == [False, True, True]
    with pytest.raises(ConfigError):
        position_mask("middle", 3, 0, dev)


def test_site_parse_and_errors(family_model):
    _, model = family_model
    assert Site.parse("heads.1") == Site("heads", 1)
    with pytest.raises(ConfigError):
        Site.parse("attn.1")
    with pytest.raises(ConfigError):
        Site.parse("resid")
    with pytest.raises(ConfigError, match="2 layers"):
        Hooks(model).read("resid.5")


def test_last_token_activations_ignores_left_padding(family_model):
    """The last-token activation of a text is the same alone or batched with a longer one."""
    _, model = family_model

    class Tok:
        pad_token_id = 0

    seqs = [[5, 9, 3], [4, 8, 8, 6, 13, 21]]
    both = last_token_activations(model, Tok(), seqs, ["resid.1", "heads.0"])
    alone = last_token_activations(model, Tok(), seqs[:1], ["resid.1", "heads.0"])
    assert torch.allclose(both[Site("resid", 1)][0], alone[Site("resid", 1)][0], atol=1e-5)
    assert both[Site("heads", 0)].shape == (2, 4, 8)
