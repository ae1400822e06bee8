"""The batched pair log-probs equal one-sequence-at-a-time log-probs (padding and head trimming are exact)."""

from __future__ import annotations

import torch

from alignlab import scoring
from alignlab.data.preference_batches import EncodedPair, collate_pairs
from alignlab.scoring import sequence_logprobs


def _rows(pair: scoring.PairLogps) -> torch.Tensor:
    """All chosen, then all rejected (the order the expectations are written in)."""
    return torch.cat([pair.chosen, pair.rejected])


def _single(model, prompt: list[int], response: list[int]) -> float:
    ids = torch.tensor([prompt + response])
    mask = torch.tensor([[0] * len(prompt) + [1] * len(response)])
    return float(sequence_logprobs(model, ids, torch.ones_like(ids), mask))


def _assert_matches_unpadded(model, batch, items, lens):
    """Summed and length-normalised pair log-probs equal each sequence scored alone, unpadded;
    `lens` are the response lengths (chosen of every item, then rejected)."""
    with torch.no_grad():
        got = _rows(scoring.pair_logps(model, batch))
        want = [_single(model, e.prompt_ids, e.chosen_ids) for e in items]
        want += [_single(model, e.prompt_ids, e.rejected_ids) for e in items]
        assert torch.allclose(got, torch.tensor(want), atol=1e-4)
        mean = _rows(scoring.pair_logps(model, batch, length_normalize=True))
    assert torch.allclose(mean, torch.tensor(want) / torch.tensor(lens, dtype=torch.float), atol=1e-4)


def test_pair_logps_match_unpadded(tiny):
    model, tok = tiny
    model.eval()
    items = [EncodedPair([5, 6, 7, 8], [20, 21], [30]), EncodedPair([9], [40, 41, 42], [50, 51]),
             EncodedPair([3, 4], [60], [70, 71, 72, 73])]
    _assert_matches_unpadded(model, collate_pairs(items, tok.pad_token_id), items, [2, 3, 1, 1, 2, 4])


def test_full_logits_path_agrees(tiny, monkeypatch):
    model, tok = tiny
    model.eval()
    batch = collate_pairs([EncodedPair([5, 6], [7, 8, 9], [10]), EncodedPair([11, 12, 13], [14], [15, 16])],
                          tok.pad_token_id)
    with torch.no_grad():
        trimmed = _rows(scoring.pair_logps(model, batch))
        monkeypatch.setattr(scoring, "accepts_logits_to_keep", lambda m: False)
        full = _rows(scoring.pair_logps(model, batch))
    assert torch.allclose(trimmed, full, atol=1e-5)


def test_packed_layout_matches_unpadded(tiny):
    from alignlab.data.preference_batches import collate_pairs_packed

    model, tok = tiny
    model.eval()
    items = [EncodedPair([5, 6, 7, 8], [20, 21], [30]), EncodedPair([9], [40, 41, 42], [50, 51]),
             EncodedPair([3, 4], [60], [70, 71, 72, 73]), EncodedPair([11, 12, 13, 14, 15, 16, 22, 23, 24, 25], [17, 18], [19])]
    batch = collate_pairs_packed(items, tok.pad_token_id)
    assert batch["input_ids"].shape[0] < len(items)  # short pairs share a row
    _assert_matches_unpadded(model, batch, items, [2, 3, 1, 2, 1, 2, 4, 1])


def test_packed_gradients_match_padded(tiny):
    """Same loss value and same gradients whichever layout the batch uses."""
    from alignlab.data.preference_batches import collate_pairs_packed

    model, tok = tiny
    items = [EncodedPair([5, 6, 7], [20, 21], [30]), EncodedPair([9, 10], [40, 41, 42], [50, 51])]
    grads = []
    for batch in (collate_pairs(items, tok.pad_token_id), collate_pairs_packed(items, tok.pad_token_id)):
        model.zero_grad()
        lp = _rows(scoring.pair_logps(model, batch))
        (lp[:2] - 0.5 * lp[2:]).sum().backward()
        grads.append(torch.cat([p.grad.flatten() for p in model.parameters() if p.grad is not None]))
    assert torch.allclose(grads[0], grads[1], atol=1e-4)


def test_row_width_minimises_padded_work():
    """rows·W·(1 + a·W): with a = 0 two rows of 7 (14) beat three rows of 5 (15); a = 0.1 makes
    wide rows dear (5: 22.5, 7: 23.8, 14: 33.6); None keeps rows as wide as the longest."""
    from alignlab.data.preference_batches import pack_rows

    assert pack_rows([5, 4, 3, 2], 0.0) == ([[0, 3], [1, 2]], 7)
    assert pack_rows([5, 4, 3, 2], 0.1) == ([[0], [1], [2, 3]], 5)
    assert pack_rows([5, 4, 3, 2]) == ([[0], [1], [2, 3]], 5)


def test_packing_attn_weight_by_hand(tiny):
    model, _ = tiny
    cfg = model.config
    skip = {id(model.get_input_embeddings().weight), id(model.get_output_embeddings().weight)}
    body = sum(p.numel() for p in model.parameters() if id(p) not in skip)
    head_dim = getattr(cfg, "head_dim", None) or cfg.hidden_size // cfg.num_attention_heads
    want = 2 * cfg.num_hidden_layers * cfg.num_attention_heads * head_dim / body
    assert scoring.packing_attn_weight(model) == want


def test_wide_packed_rows_and_head_at_scored_positions_match_unpadded(tiny):
    """One wide row (attn_weight 0) with the LM head fed only the scored positions is still exact."""
    from alignlab.data.preference_batches import collate_pairs_packed

    model, tok = tiny
    model.eval()
    items = [EncodedPair([5, 6, 7, 8], [20, 21], [30]), EncodedPair([9], [40, 41, 42], [50, 51]),
             EncodedPair([3, 4], [60], [70, 71, 72, 73])]
    batch = collate_pairs_packed(items, tok.pad_token_id, 0.0)
    assert batch["input_ids"].shape[0] == 1
    seen = []
    handle = model.get_output_embeddings().register_forward_hook(lambda m, i, o: seen.append(o.shape))
    try:
        _assert_matches_unpadded(model, batch, items, [2, 3, 1, 1, 2, 4])
    finally:
        handle.remove()
    assert seen[0][:2] == (1, 13)  # 13 scored tokens (2+3+1 chosen, 1+2+4 rejected): the head ran at those positions only
