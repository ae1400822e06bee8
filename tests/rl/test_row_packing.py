"""Rollout row packing against hand layouts and against the padded scoring path; the one-pass
log-prob + entropy function against the two-pass reference functions."""

from __future__ import annotations

import pytest
import torch

import alignlab.rl.row_packing as row_packing
from alignlab.losses.rl import entropy_from_logits, logprobs_and_entropy
from alignlab.rl.policy import PolicyWithValue
from alignlab.rl.row_packing import fixed_response_logprobs, pack_rollout_rows
from alignlab.scoring import chunked_response_logprobs, pack


def test_logprobs_and_entropy_match_the_two_pass_functions_with_gradients():
    torch.manual_seed(0)
    logits = torch.randn(5, 7, requires_grad=True)
    targets = torch.tensor([0, 6, 3, 3, 1])
    for temperature in (1.0, 0.7):
        z = logits / temperature
        want_lp = torch.log_softmax(z, -1)[torch.arange(5), targets]
        want_h = entropy_from_logits(z)
        lp, h = logprobs_and_entropy(logits, targets, temperature, entropy_grad=True)
        assert torch.allclose(lp, want_lp, atol=1e-6) and torch.allclose(h, want_h, atol=1e-6)
        g_want = torch.autograd.grad((want_lp + want_h).sum(), logits)[0]
        g = torch.autograd.grad((lp + h).sum(), logits)[0]
        assert torch.allclose(g, g_want, atol=1e-6)
    # a uniform distribution over V has entropy log V; without entropy_grad it is a constant
    lp, h = logprobs_and_entropy(torch.zeros(2, 4, requires_grad=True), torch.tensor([1, 2]))
    assert torch.allclose(h, torch.full((2,), float(torch.log(torch.tensor(4.0)))))
    assert lp.requires_grad and not h.requires_grad


def test_pack_rollout_rows_hand_layout():
    # three sequences: prompt lengths 2, 1, 3 and response lengths 3, 1, 2 (lengths 5, 2, 5)
    packed = pack([[11, 12], [21], [31, 32, 33]], [[13, 14, 15], [22], [34, 35]], pad_id=0)
    rows = pack_rollout_rows(packed)  # rows as wide as the longest sequence (5): [s0], [s2], [s1]
    assert rows.input_ids.tolist() == [[11, 12, 13, 14, 15], [31, 32, 33, 34, 35], [21, 22, 0, 0, 0]]
    assert rows.position_ids.tolist() == [[0, 1, 2, 3, 4], [0, 1, 2, 3, 4], [0, 1, 0, 0, 0]]
    # response token (b, t) is predicted by the hidden state just before it
    assert list(zip(rows.dst_row.tolist(), rows.dst_col.tolist())) == [(0, 0), (0, 1), (0, 2), (1, 0), (2, 0), (2, 1)]
    assert list(zip(rows.src_row.tolist(), rows.src_col.tolist())) == [(0, 1), (0, 2), (0, 3), (2, 0), (1, 2), (1, 3)]
    assert rows.targets.tolist() == [13, 14, 15, 22, 34, 35]
    # with attention free, one row of width 12 holds all three, kept apart by the block mask
    wide = pack_rollout_rows(packed, attn_weight=0.0)
    assert wide.input_ids.shape == (1, 12)
    r, c = int(wide.src_row[3]), int(wide.src_col[3])  # the 1-token response of sequence 1
    seq_cols = (wide.input_ids[r] == 21).nonzero().item()
    allowed = wide.attention_mask[r, 0, c].nonzero().squeeze(-1).tolist()
    assert c == seq_cols and allowed == [seq_cols] and int(wide.position_ids[r, c]) == 0
    flat = torch.arange(6, dtype=torch.float32)
    assert rows.scatter(flat).tolist() == [[0, 1, 2], [3, 0, 0], [4, 5, 0]]


@pytest.fixture
def batch(tiny):
    model, tok = tiny
    ids = lambda texts: [tok(t, add_special_tokens=False)["input_ids"] for t in texts]  # noqa: E731
    prompts = ids(["review : the food was", "story : the", "q : what is the capital of", "review : ok"])
    responses = ids([" great .", " river runs past the mill . the lamp", " x", " bad service , slow ."])
    return model, pack(prompts, responses, tok.pad_token_id)


def test_packed_policy_forward_equals_the_padded_path(batch, monkeypatch):
    model, packed = batch
    torch.manual_seed(0)
    policy = PolicyWithValue(model)
    torch.nn.init.normal_(policy.value_head.weight, std=0.1)
    assert row_packing.packing_supported(model)
    packed_out = policy(packed, temperature=0.8, entropy_grad=True)
    (packed_out[0].sum() + packed_out[1].sum() + packed_out[2].sum()).backward()
    grads = {n: p.grad.clone() for n, p in policy.named_parameters()}
    policy.zero_grad()
    monkeypatch.setattr(row_packing, "packing_supported", lambda m: False)
    assert row_packing.rollout_rows(model, packed) is None
    padded_out = policy(packed, temperature=0.8, entropy_grad=True)
    (padded_out[0].sum() + padded_out[1].sum() + padded_out[2].sum()).backward()
    mask = packed.response_mask
    for a, b in zip(packed_out, padded_out):
        assert torch.allclose(a, b, atol=1e-5) and float((a.detach() * (1 - mask)).abs().sum()) == 0.0
    for n, p in policy.named_parameters():
        assert torch.allclose(grads[n], p.grad, atol=1e-5), n


def test_fixed_response_logprobs_packed_equal_the_padded_chunks(batch, monkeypatch):
    model, packed = batch
    want = chunked_response_logprobs(model, packed, 0.9, batch_size=3)
    got = fixed_response_logprobs(model, packed, 0.9, batch_size=3)
    assert torch.allclose(got, want, atol=1e-5)
    given = fixed_response_logprobs(model, packed, 0.9, batch_size=8, rows=row_packing.rollout_rows(model, packed))
    assert torch.allclose(given, want, atol=1e-5)
    monkeypatch.setattr(row_packing, "packing_supported", lambda m: False)
    assert torch.equal(fixed_response_logprobs(model, packed, 0.9, batch_size=3), want)


def test_policy_forward_leaves_the_model_for_the_fast_sampler(batch):
    from alignlab.decode import fast_decoder_reason

    model, packed = batch
    policy = PolicyWithValue(model)
    policy(packed)[0].sum().backward()  # no output_hidden_states: transformers would hook every layer
    assert fast_decoder_reason(model, 64) is None
    assert not any(m._forward_hooks or m._forward_pre_hooks for m in model.modules())
