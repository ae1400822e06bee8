"""PSLE losses against values computed by hand from the formulas in alignlab.losses.psle."""

from __future__ import annotations

import math

import pytest
import torch

from alignlab.losses.preference import dpo_loss
from alignlab.losses.psle import (
    psle_loss,
    ranking_loss,
    sequence_logps,
    sft_weights,
    split_by_threshold,
    threshold_schedule,
    weighted_sft_loss,
)
from alignlab.scoring import PairLogps


def _sig(x: float) -> float:
    return 1 / (1 + math.exp(-x))


def test_threshold_decays_geometrically_from_tau0():
    assert threshold_schedule(0.2, 0.9, 0) == pytest.approx(0.2)
    assert threshold_schedule(0.2, 0.9, 1) == pytest.approx(0.18)
    assert threshold_schedule(0.2, 0.9, 3) == pytest.approx(0.2 * 0.729)
    assert threshold_schedule(0.2, 1.0, 50) == pytest.approx(0.2)
    with pytest.raises(ValueError):
        threshold_schedule(0.2, 0.9, -1)


def test_split_puts_the_boundary_into_sft():
    delta = torch.tensor([0.3, 0.2, 0.2000001, 0.1, -0.5])  # float32, compared with a python float τ
    pair, sft = split_by_threshold(delta, 0.2)
    assert pair.tolist() == [True, False, True, False, False]
    assert sft.tolist() == [not p for p in pair.tolist()]
    tau = threshold_schedule(0.2, 0.9, 2)  # a decayed τ, exactly equal Δ still goes to SFT
    assert split_by_threshold(torch.tensor([tau]), tau)[0].tolist() == [False]
    with pytest.raises(ValueError, match="NaN"):
        split_by_threshold(torch.tensor([float("nan")]), 0.2)


def test_sft_weights_are_a_softmax_over_the_two_rewards():
    w = sft_weights(torch.tensor([1.0, 0.0, -2.0]), torch.tensor([0.5, 0.0, 3.0]), temperature=0.5)
    assert w[0].tolist() == pytest.approx([_sig(1.0), _sig(-1.0)])  # softmax([2, 1])
    assert w[1].tolist() == pytest.approx([0.5, 0.5])
    assert w[2].tolist() == pytest.approx([_sig(-10.0), _sig(10.0)])
    assert torch.allclose(w.sum(-1), torch.ones(3))
    assert ((w > 0) & (w < 1)).all()  # nothing is dropped
    hot = sft_weights(torch.tensor([1.0]), torch.tensor([0.5]), temperature=100.0)
    assert hot[0].tolist() == pytest.approx([0.5, 0.5], abs=2e-3)
    with pytest.raises(ValueError):
        sft_weights(torch.tensor([1.0]), torch.tensor([0.0]), temperature=0.0)


def test_ranking_loss_matches_hand_computation():
    lw, ll = torch.tensor([-1.0, -2.0]), torch.tensor([-1.5, -2.0])
    out = ranking_loss(lw, ll, beta=2.0)
    assert out.tolist() == pytest.approx([math.log(1 + math.exp(-1.0)), math.log(2.0)])
    assert ranking_loss(lw, ll, beta=2.0, margin=0.5)[0].item() == pytest.approx(-math.log(_sig(0.5)))
    with pytest.raises(ValueError):
        ranking_loss(lw, ll, beta=0.0)


def test_weighted_sft_loss_matches_hand_computation():
    lp = torch.tensor([[-1.0, -2.0, -9.0], [-3.0, -9.0, -9.0]])  # -9: padding, masked out
    mask = torch.tensor([[1, 1, 0], [1, 0, 0]])
    # mean-token NLL 1.5 and 3.0; weights 0.25 / 0.75
    assert weighted_sft_loss(lp, mask, torch.tensor([0.25, 0.75])).item() == pytest.approx(0.25 * 1.5 + 0.75 * 3.0)
    assert weighted_sft_loss(lp, mask, torch.tensor([0.5, 1.5])).item() == pytest.approx((0.75 + 4.5) / 2.0)
    assert weighted_sft_loss(lp[:0], mask[:0], torch.zeros(0)).item() == 0.0
    assert sequence_logps(lp, mask, average=False).tolist() == [-3.0, -3.0]


def _pair(t: torch.Tensor) -> PairLogps:
    """[B, 2, ...] (y_p, y) values as the typed pair psle_loss takes."""
    return PairLogps(t[:, 0], t[:, 1])


def _batch():
    # query 0: a pair (y_p ≻ y); query 1: SFT. Token log-probs [B, 2, T] for (y_p, y).
    lp = torch.tensor([[[-1.0, -1.0], [-2.0, -7.0]],
                       [[-0.5, -1.5], [-3.0, -1.0]]], requires_grad=True)
    mask = torch.tensor([[[1, 1], [1, 0]], [[1, 1], [1, 1]]])
    return lp, mask, torch.tensor([True, False]), torch.tensor([[0.5, 0.5], [0.8, 0.2]])


def test_psle_loss_combines_ranking_and_weighted_sft_per_query():
    lp, mask, pair, w = _batch()
    loss, parts = psle_loss(_pair(lp), _pair(mask), pair, w, beta=1.0, sft_weight=0.5)
    rank = -math.log(_sig(1.0 * (-1.0 - (-2.0))))  # mean-token logps -1 vs -2
    sft = 0.8 * 1.0 + 0.2 * 2.0  # mean-token NLLs 1.0 and 2.0
    assert parts["ranking"].tolist() == pytest.approx([rank])
    assert parts["sft_loss"].item() == pytest.approx(sft)
    assert loss.item() == pytest.approx((rank + 0.5 * sft) / 2)
    assert parts["n_pairs"].item() == 1 and parts["n_sft"].item() == 1 and parts["pair_accuracy"].tolist() == [1.0]
    loss.backward()
    assert torch.isfinite(lp.grad).all()
    assert lp.grad[0, 1, 1] == 0  # padding gets no gradient


def test_psle_loss_dpo_ranking_uses_the_reference():
    lp, mask, pair, w = _batch()
    ref = torch.tensor([[-2.5, -1.5], [0.0, 0.0]])
    loss, parts = psle_loss(_pair(lp), _pair(mask), pair, w, beta=0.1, sft_weight=0.0, ranking="dpo", ref_logps=_pair(ref))
    # summed logps -2 / -2 against the reference -2.5 / -1.5: h_w = 0.5, h_l = -0.5
    assert parts["ranking"].item() == pytest.approx(-math.log(_sig(0.1)))
    assert parts["ranking"].item() == pytest.approx(dpo_loss(torch.tensor(0.5), torch.tensor(-0.5), 0.1).item())
    assert loss.item() == pytest.approx(-math.log(_sig(0.1)) / 2)
    with pytest.raises(ValueError, match="ref_logps"):
        psle_loss(_pair(lp), _pair(mask), pair, w, beta=0.1, ranking="dpo")
    with pytest.raises(ValueError, match="unknown ranking"):
        psle_loss(_pair(lp), _pair(mask), pair, w, beta=0.1, ranking="kto")


@pytest.mark.parametrize("pairs", [[True, True], [False, False]])
def test_all_pairs_or_all_sft_batches(pairs):
    lp, mask, _, w = _batch()
    loss, parts = psle_loss(_pair(lp), _pair(mask), torch.tensor(pairs), w, beta=1.0)
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(lp.grad).all()
    assert parts["ranking"].numel() == sum(pairs)
    if not any(pairs):
        assert loss.item() == pytest.approx(parts["sft_loss"].item())


def test_gradients_finite_at_extremes():
    big = torch.tensor([1e4, -1e4], requires_grad=True)
    ranking_loss(big, -big, beta=2.0).sum().backward()
    assert torch.isfinite(big.grad).all()
    r = torch.tensor([1e4, -1e4], requires_grad=True)
    w = sft_weights(r, -r, temperature=1e-3)
    assert torch.isfinite(w).all() and torch.allclose(w.sum(-1), torch.ones(2))
    (w[:, 0] * torch.tensor([1.0, 2.0])).sum().backward()
    assert torch.isfinite(r.grad).all()
    lp = torch.full((2, 2, 3), -1e4, requires_grad=True)
    mask = torch.ones(2, 2, 3)
    loss, _ = psle_loss(_pair(lp), _pair(mask), torch.tensor([True, False]), torch.tensor([[1.0, 0.0], [0.0, 1.0]]), beta=2.0)
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(lp.grad).all()
