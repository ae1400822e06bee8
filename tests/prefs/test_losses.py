"""Preference losses against hand-computed values from the SPEC formulas, and their gradients."""

from __future__ import annotations

import math

import pytest
import torch

from alignlab.losses.preference import (
    cal_dpo_loss,
    dpo_loss,
    implicit_reward_metrics,
    ipo_loss,
    preference_loss,
    reward_ranking_loss,
)

# policy / reference log-probs of two pairs (chosen, rejected)
PW = torch.tensor([-10.0, -20.0])
PL = torch.tensor([-12.0, -18.0])
RW = torch.tensor([-11.0, -19.0])
RL = torch.tensor([-11.5, -19.5])
# h_w = [1, -1], h_l = [-0.5, 1.5]
HW, HL = [1.0, -1.0], [-0.5, 1.5]


def softplus(x: float) -> float:
    """−log σ(x) = log(1 + e^{−x})."""
    return math.log1p(math.exp(-x))


def test_dpo_matches_formula():
    beta = 0.1
    got = dpo_loss(torch.tensor(HW), torch.tensor(HL), beta)
    want = [softplus(beta * (w - lo)) for w, lo in zip(HW, HL)]
    assert got.tolist() == pytest.approx(want, rel=1e-6)
    loss, m = preference_loss("dpo", PW, PL, RW, RL, beta)
    assert float(loss) == pytest.approx(sum(want) / 2, rel=1e-6)
    assert float(m["chosen_reward"]) == pytest.approx(beta * (1.0 - 1.0) / 2, abs=1e-7)
    assert float(m["rejected_reward"]) == pytest.approx(beta * (-0.5 + 1.5) / 2, rel=1e-6)
    assert float(m["margin"]) == pytest.approx(beta * ((1.5) + (-2.5)) / 2, rel=1e-6)
    assert float(m["accuracy"]) == pytest.approx(0.5)


def test_ipo_matches_formula():
    beta = 0.25  # 1/(2β) = 2
    got = ipo_loss(torch.tensor(HW), torch.tensor(HL), beta)
    assert got.tolist() == pytest.approx([(1.5 - 2) ** 2, (-2.5 - 2) ** 2], rel=1e-6)


def test_cal_dpo_spec_variant():
    beta = 0.5  # targets ±1
    got = cal_dpo_loss(torch.tensor(HW), torch.tensor(HL), beta)
    want = [softplus(w - lo) + (w - 1) ** 2 + (lo + 1) ** 2 for w, lo in zip(HW, HL)]
    assert got.tolist() == pytest.approx(want, rel=1e-6)
    # β is not inside the sigmoid: changing β moves only the calibration targets
    got2 = cal_dpo_loss(torch.tensor(HW), torch.tensor(HL), 0.25, calibration_weight=0.0)
    assert got2.tolist() == pytest.approx([softplus(1.5), softplus(-2.5)], rel=1e-6)


def test_cal_dpo_official_script_variant():
    """Weight 0.5 with batch-mean squared error, as the official UltraFeedback script."""
    beta = 0.5
    got = cal_dpo_loss(torch.tensor(HW), torch.tensor(HL), beta, calibration_weight=0.5, reduction="batch_mean")
    mse_w = ((1 - 1) ** 2 + (-1 - 1) ** 2) / 2  # = 2
    mse_l = ((-0.5 + 1) ** 2 + (1.5 + 1) ** 2) / 2  # = 3.25
    want = [softplus(w - lo) + 0.5 * (mse_w + mse_l) for w, lo in zip(HW, HL)]
    assert got.tolist() == pytest.approx(want, rel=1e-6)
    # averaged over the batch it equals the per-example form with the same weight
    per_ex = cal_dpo_loss(torch.tensor(HW), torch.tensor(HL), beta, calibration_weight=0.5)
    assert float(got.mean()) == pytest.approx(float(per_ex.mean()), rel=1e-6)
    assert got.tolist() != pytest.approx(per_ex.tolist())


def test_reference_gets_no_gradient_and_extremes_are_finite():
    for name in ("dpo", "ipo", "cal_dpo"):
        pw = torch.tensor([-1e4, -1e-3, -500.0], requires_grad=True)
        pl = torch.tensor([-1e-3, -1e4, -0.1], requires_grad=True)
        rw = torch.tensor([-1e-3, -1e4, -3000.0], requires_grad=True)
        rl = torch.tensor([-1e4, -1e-3, -1e3], requires_grad=True)
        loss, _ = preference_loss(name, pw, pl, rw, rl, beta=1e-3)
        loss.backward()
        assert torch.isfinite(loss)
        assert torch.isfinite(pw.grad).all() and torch.isfinite(pl.grad).all()
        assert rw.grad is None or (rw.grad == 0).all()


def test_accuracy_counts_ties_half():
    m = implicit_reward_metrics(torch.zeros(4), torch.zeros(4), 0.1)
    assert float(m["accuracy"]) == 0.5


def test_reward_ranking_loss_matches_formula():
    lam = 0.001
    # example 0: three replies best-first; example 1: two replies
    s = torch.tensor([2.0, 0.5, -1.0, 0.3, 0.7])

    def pair(a: float, b: float) -> float:
        return softplus(a - b) + lam * 0.5 * (a * a + b * b)

    ex0 = (pair(2.0, 0.5) + pair(2.0, -1.0) + pair(0.5, -1.0)) / 3
    ex1 = pair(0.3, 0.7)
    loss, per = reward_ranking_loss(s, [3, 2], penalty=lam)
    assert per.tolist() == pytest.approx([ex0, ex1], rel=1e-6)
    assert float(loss) == pytest.approx((ex0 + ex1) / 2, rel=1e-6)
    # explicit ranks: example 1 says the second reply is better; ties form no pair
    loss2, per2 = reward_ranking_loss(s, [3, 2], ranks=[[0, 1, 1], [1, 0]], penalty=lam)
    assert per2.tolist() == pytest.approx([(pair(2.0, 0.5) + pair(2.0, -1.0)) / 2, pair(0.7, 0.3)], rel=1e-6)


def test_reward_ranking_loss_bad_input():
    with pytest.raises(ValueError, match="no ranked pair"):
        reward_ranking_loss(torch.zeros(2), [2], ranks=[[0, 0]])
    with pytest.raises(ValueError, match="sum"):
        reward_ranking_loss(torch.zeros(3), [2])


def test_unknown_loss_is_an_error():
    with pytest.raises(ValueError, match="unknown preference loss"):
        preference_loss("kto", PW, PL, RW, RL, 0.1)
