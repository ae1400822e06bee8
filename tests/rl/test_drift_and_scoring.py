"""Drift metrics and response scoring on the tiny testbed model, checked against the
foundation's independent right-padded scoring and a per-text hand loop."""

from __future__ import annotations

import copy
import math

import pytest
import torch

from alignlab.errors import DataError
from alignlab.eval.drift import perplexity, read_reference_texts, sampled_kl
from alignlab.rl.policy import PolicyWithValue
from alignlab.scoring import pack, pad_batch, response_logprobs, sequence_logprobs


def _ids(tok, texts):
    return [tok(t, add_special_tokens=False)["input_ids"] for t in texts]


def test_packed_response_logprobs_match_right_padded_scoring(tiny):
    model, tok = tiny
    prompts = _ids(tok, ["review : the food was", "story : the", "q : what is the capital of"])
    responses = _ids(tok, [" great .", " river runs past the mill .", " x"])
    packed = pack(prompts, responses, tok.pad_token_id)
    ours = response_logprobs(model, packed).sum(-1)
    seqs = [p + r for p, r in zip(prompts, responses)]
    ids, attn = pad_batch(seqs, tok.pad_token_id)
    lm, _ = pad_batch([[0] * len(p) + [1] * len(r) for p, r in zip(prompts, responses)], 0)
    ref = sequence_logprobs(model, ids, attn, lm)
    assert torch.allclose(ours, ref, atol=1e-4)
    # the policy wrapper gives the same log-probs, and a zero value head gives zero values
    with torch.no_grad():
        lp, values, _ = PolicyWithValue(model)(packed)
    assert torch.allclose(lp.sum(-1), ref, atol=1e-4)
    assert float(values.abs().sum()) == 0.0


def test_perplexity_matches_per_text_loop(tiny):
    model, tok = tiny
    texts = ["story : the river runs past the mill .", "story : the lamp faces the door . the hill crosses the road ."]
    nll, n = 0.0, 0
    with torch.no_grad():
        for t in texts:
            ids = torch.tensor([_ids(tok, [t])[0] + [tok.eos_token_id]])
            logits = model(input_ids=ids).logits[0, :-1]
            lp = torch.log_softmax(logits.float(), -1).gather(-1, ids[0, 1:, None]).squeeze(-1)
            nll -= float(lp.sum())
            n += ids.shape[1] - 1
    assert perplexity(model, tok, texts, batch_size=2) == pytest.approx(math.exp(nll / n), rel=1e-5)


def test_sampled_kl_is_zero_to_itself_and_positive_after_a_change(tiny):
    model, tok = tiny
    prompts = ["review : the food was"] * 16
    same = sampled_kl(model, model, tok, prompts, max_new_tokens=8, generator=torch.Generator().manual_seed(0))
    assert same.kl == 0.0 and float(same.kl_k3.abs().sum()) == 0.0
    moved = copy.deepcopy(model)
    with torch.no_grad():
        for p in moved.parameters():
            p.add_(0.05 * torch.randn(p.shape, generator=torch.Generator().manual_seed(1)))
    other = sampled_kl(moved, model, tok, prompts, max_new_tokens=8, generator=torch.Generator().manual_seed(0))
    assert other.kl > 0.01 and float(other.kl_k3.mean()) > 0.01
    assert len(other.texts) == 16


def test_reference_text_files(tmp_path):
    good = tmp_path / "ref.jsonl"
    good.write_text('{"text": "a b c"}\n\n{"text": "d e"}\n')
    assert read_reference_texts(good) == ["a b c", "d e"]
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"text": "ok"}\n{"txt": 1}\n')
    with pytest.raises(DataError, match=r"bad.jsonl:2"):
        read_reference_texts(bad)
    plain = tmp_path / "ref.txt"
    plain.write_text("one\ntwo\n")
    assert read_reference_texts(plain) == ["one", "two"]
    with pytest.raises(DataError, match="not found"):
        read_reference_texts(tmp_path / "missing.txt")
