"""Attention computed per packed segment equals the full block-mask attention at every scored
position, in values and gradients (pairs and SFT sequences), and falls back cleanly."""

from __future__ import annotations

import pytest
import torch

from alignlab import scoring
from alignlab.data.preference_batches import EncodedPair, collate_pairs_packed
from alignlab.models import segment_attention
from alignlab.models.segment_attention import NAME, segments_active, segments_supported

ITEMS = [EncodedPair([5, 6, 7, 8], [20, 21], [30]), EncodedPair([9], [40, 41, 42], [50, 51]),
         EncodedPair([3, 4], [60], [70, 71, 72, 73]), EncodedPair([11, 12, 13, 14, 15, 16], [17, 18], [19])]


def _logps_and_grads(model, batch, segments: bool, monkeypatch) -> tuple[torch.Tensor, torch.Tensor]:
    monkeypatch.setattr(segment_attention, "segments_supported", lambda m: segments)
    model.zero_grad()
    lp = scoring.pair_logps(model, batch)
    rows = torch.cat([lp.chosen, lp.rejected])
    (rows[:4] - 0.5 * rows[4:]).sum().backward()
    grads = torch.cat([p.grad.flatten() for p in model.parameters() if p.grad is not None])
    return rows.detach(), grads


def test_pairs_per_segment_equal_full_mask(tiny, monkeypatch):
    model, tok = tiny
    assert segments_supported(model)
    batch = collate_pairs_packed(ITEMS, tok.pad_token_id, attn_weight=0.0, max_width=64)
    spans = sorted(batch["segments"].tolist(), key=lambda s: s[1])
    assert batch["input_ids"].shape == (1, 29) and spans[0][1] == 0 and spans[-1][2] == 29  # all pairs in one row
    assert all(a[2] == b[1] for a, b in zip(spans, spans[1:])) and len(spans) == 4
    seg_lp, seg_g = _logps_and_grads(model, batch, True, monkeypatch)
    full_lp, full_g = _logps_and_grads(model, batch, False, monkeypatch)
    assert torch.allclose(seg_lp, full_lp, atol=1e-5)
    assert torch.allclose(seg_g, full_g, atol=1e-5)
    assert model.config._attn_implementation == "sdpa"  # switched back after the call


def test_padding_between_rows_and_the_lm_loss(tiny, monkeypatch):
    """Several rows with padding at their ends; the SFT packed loss takes the same path."""
    from alignlab.data.chat import Encoded
    from alignlab.losses.lm import packed_lm_loss
    from alignlab.recipes.sft import collate_packed

    model, tok = tiny
    items = [Encoded(list(range(5, 5 + n)), [0] * 2 + [1] * (n - 2)) for n in (9, 4, 7, 3)]
    batch = collate_packed(items, tok.pad_token_id, attn_weight=None)  # rows as wide as the longest: padded
    assert batch["input_ids"].shape[0] > 1
    losses = []
    for on in (True, False):
        monkeypatch.setattr(segment_attention, "segments_supported", lambda m, on=on: on)
        model.zero_grad()
        loss, _ = packed_lm_loss(model, batch)
        loss.backward()
        losses.append((loss.detach(), model.model.layers[0].self_attn.q_proj.weight.grad.clone()))
    assert torch.allclose(losses[0][0], losses[1][0], atol=1e-6)
    assert torch.allclose(losses[0][1], losses[1][1], atol=1e-5)


def test_no_segments_or_unsupported_model_changes_nothing(tiny):
    model, _ = tiny
    with segments_active(model, None) as extra:
        assert extra == {} and model.config._attn_implementation == "sdpa"
    with segments_active(model, torch.tensor([[0, 0, 3]])) as extra:
        assert extra == {"alignlab_segments": [(0, 0, 3)]} and model.config._attn_implementation == NAME
    model.config._attn_implementation = "eager"
    assert not segments_supported(model)
    with segments_active(model, torch.tensor([[0, 0, 3]])) as extra:
        assert extra == {}


def test_fallback_without_segments_is_plain_sdpa(tiny):
    model, _ = tiny
    x = torch.tensor([[5, 6, 7, 8, 9]])
    with torch.no_grad():
        want = model(input_ids=x).logits
        model.config._attn_implementation = NAME
        got = model(input_ids=x).logits
    assert torch.allclose(want, got, atol=1e-6)


@pytest.mark.parametrize("pad", [0, 2])
def test_outputs_outside_segments_are_zero(pad):
    q = torch.randn(1, 2, 6 + pad, 4)
    mask = torch.ones(1, 1, 6 + pad, 6 + pad, dtype=torch.bool).tril()
    module = torch.nn.Module()
    out, _ = segment_attention.segment_sdpa_forward(module, q, q, q, mask, scaling=0.5,
                                                    alignlab_segments=[(0, 0, 2), (0, 2, 6)])
    assert out.shape == (1, 6 + pad, 2, 4)
    assert (out[0, 6:] == 0).all()
    want = torch.nn.functional.scaled_dot_product_attention(q[:, :, 2:6], q[:, :, 2:6], q[:, :, 2:6], scale=0.5,
                                                            is_causal=True)
    assert torch.allclose(out[0, 2:6], want[0].transpose(0, 1), atol=1e-6)


def test_row_layout_follows_the_attention_kernel(tiny):
    """Per-segment attention: rows filled up to 1024 (no width penalty); eager: the W×W trade-off."""
    model, _ = tiny
    assert scoring.packed_row_layout(model) == (0.0, 1024)
    model.config._attn_implementation = "eager"
    weight, width = scoring.packed_row_layout(model)
    assert width == 2048 and weight == pytest.approx(scoring.packing_attn_weight(model)) and weight > 0
