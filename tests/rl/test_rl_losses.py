"""PPO math against hand-computed values: GAE, clipped losses, KL estimators and controllers."""

from __future__ import annotations

import math

import pytest
import torch

from alignlab.losses.rl import (
    AdaptiveKLController,
    FixedKLController,
    clipped_policy_loss,
    clipped_value_loss,
    gae,
    kl_estimate,
    kl_penalty_rewards,
    make_kl_controller,
    masked_mean,
    sequence_kl,
    whiten,
)
from alignlab.rl.rewards import RewardProcessor, check_finite_rewards


def test_gae_hand_computed_full_row():
    rewards = torch.tensor([[0.0, 0.0, 1.0]])
    values = torch.tensor([[0.5, 0.6, 0.7]])
    mask = torch.ones(1, 3)
    adv, ret = gae(rewards, values, mask, gamma=1.0, lam=0.95)
    # δ2 = 1 − 0.7 = 0.3; δ1 = 0.7 − 0.6 = 0.1; δ0 = 0.6 − 0.5 = 0.1
    # A2 = 0.3; A1 = 0.1 + 0.95·0.3 = 0.385; A0 = 0.1 + 0.95·0.385 = 0.46575
    assert torch.allclose(adv, torch.tensor([[0.46575, 0.385, 0.3]]), atol=1e-6)
    assert torch.allclose(ret, torch.tensor([[0.96575, 0.985, 1.0]]), atol=1e-6)


def test_gae_hand_computed_with_padding_and_discount():
    rewards = torch.tensor([[0.2, -1.0, 999.0]])
    values = torch.tensor([[0.1, 0.2, 5.0]])
    mask = torch.tensor([[1.0, 1.0, 0.0]])
    adv, ret = gae(rewards, values, mask, gamma=0.9, lam=0.5)
    # pad ignored; V after the last real token is 0
    # δ1 = −1 − 0.2 = −1.2 ; δ0 = 0.2 + 0.9·0.2 − 0.1 = 0.28 ; A0 = 0.28 + 0.45·(−1.2) = −0.26
    assert torch.allclose(adv, torch.tensor([[-0.26, -1.2, 0.0]]), atol=1e-6)
    assert torch.allclose(ret, torch.tensor([[-0.16, -1.0, 0.0]]), atol=1e-6)


def test_gae_lambda_one_is_monte_carlo_return_minus_value():
    g = torch.Generator().manual_seed(0)
    rewards, values = torch.randn(4, 6, generator=g), torch.randn(4, 6, generator=g)
    mask = torch.ones(4, 6)
    adv, ret = gae(rewards, values, mask, gamma=1.0, lam=1.0)
    mc = rewards.flip(-1).cumsum(-1).flip(-1)
    assert torch.allclose(ret, mc, atol=1e-5)
    assert torch.allclose(adv, mc - values, atol=1e-5)


def test_kl_penalty_rewards_put_score_on_last_real_token():
    logp = torch.tensor([[-1.0, -2.0, -3.0]])
    ref = torch.tensor([[-1.5, -1.0, -3.0]])
    mask = torch.tensor([[1.0, 1.0, 0.0]])
    rewards, kl = kl_penalty_rewards(logp, ref, torch.tensor([2.0]), mask, kl_coef=0.1)
    assert torch.allclose(kl, torch.tensor([[0.5, -1.0, 0.0]]))
    assert torch.allclose(rewards, torch.tensor([[-0.05, 0.1 + 2.0, 0.0]]))


def test_clipped_policy_loss_hand_computed():
    ratios = torch.tensor([[1.5, 0.5, 1.0, 1.1]])
    old = torch.tensor([[-1.0, -2.0, -0.5, -3.0]])
    logp = (old + ratios.log()).requires_grad_(True)
    adv = torch.tensor([[1.0, 1.0, -1.0, -2.0]])
    mask = torch.ones(1, 4)
    loss, stats = clipped_policy_loss(logp, old, adv, mask, clip=0.2)
    # per token max(−A·ρ, −A·clip(ρ)): −1.2, −0.5, 1.0, 2.2 → mean 0.375
    assert float(loss.detach()) == pytest.approx(0.375, abs=1e-6)
    assert float(stats["clipfrac"]) == pytest.approx(0.25)
    loss.backward()
    # d/dlogp = −A·ρ/4 where the unclipped branch is active, 0 where clipped
    assert torch.allclose(logp.grad, torch.tensor([[0.0, -0.125, 0.25, 0.55]]), atol=1e-6)


def test_clipped_policy_loss_ignores_padding():
    old = torch.zeros(1, 3)
    logp = torch.tensor([[0.0, 0.0, 5.0]])
    adv = torch.tensor([[1.0, -1.0, 100.0]])
    loss, _ = clipped_policy_loss(logp, old, adv, torch.tensor([[1.0, 1.0, 0.0]]), clip=0.2)
    assert float(loss) == pytest.approx(0.0)


def test_clipped_policy_loss_approx_kl_hand_values():
    # lr = log π − log π_old = ln 2, ln 3 (ln 5 is padding): k3 = (2 − 1 − ln 2) + (3 − 1 − ln 3), mean over 2
    old = torch.tensor([[-1.0, -2.0, -0.5]])
    logp = old + torch.tensor([[2.0, 3.0, 5.0]]).log()
    _, stats = clipped_policy_loss(logp, old, torch.zeros(1, 3), torch.tensor([[1.0, 1.0, 0.0]]))
    assert float(stats["approx_kl"]) == pytest.approx((3.0 - math.log(6.0)) / 2, abs=1e-6)


def test_clipped_policy_loss_approx_kl_is_kl_old_to_new_in_expectation():
    old_p = torch.tensor([0.5, 0.3, 0.2])  # π_old, which sampled the actions
    new_p = torch.tensor([0.2, 0.5, 0.3])  # π, the policy being updated
    exact = 0.5 * math.log(0.5 / 0.2) + 0.3 * math.log(0.3 / 0.5) + 0.2 * math.log(0.2 / 0.3)
    zeros = torch.zeros(1, 3)
    # exact expectation over π_old: masked_mean with the probabilities as mask weights
    _, stats = clipped_policy_loss(new_p.log()[None], old_p.log()[None], zeros, old_p[None])
    assert float(stats["approx_kl"]) == pytest.approx(exact, abs=1e-6)
    # Monte Carlo: actions sampled from π_old, every token weighted equally
    g = torch.Generator().manual_seed(0)
    idx = torch.multinomial(old_p, 100_000, replacement=True, generator=g)[None]
    _, stats = clipped_policy_loss(new_p.log()[idx], old_p.log()[idx], torch.zeros(idx.shape), torch.ones(idx.shape))
    assert float(stats["approx_kl"]) == pytest.approx(exact, abs=0.01)


def test_clipped_value_loss_hand_computed():
    values = torch.tensor([[1.0, 0.0]])
    old = torch.tensor([[0.5, 0.5]])
    returns = torch.tensor([[2.0, 0.4]])
    loss, stats = clipped_value_loss(values, old, returns, torch.ones(1, 2), clip=0.2)
    # token0: max((1−2)², (0.7−2)²) = 1.69 ; token1: max((0−0.4)², (0.3−0.4)²) = 0.16
    assert float(loss) == pytest.approx(0.5 * (1.69 + 0.16) / 2, abs=1e-6)
    assert float(stats["vf_clipfrac"]) == pytest.approx(0.5)


def test_kl_estimators_expectations_on_known_distributions():
    p = torch.tensor([0.5, 0.3, 0.2])
    q = torch.tensor([0.2, 0.5, 0.3])
    exact = float((p * (p / q).log()).sum())
    logp, logq = p.log(), q.log()
    # expectations under π = p, taken exactly over the three outcomes
    e_k1 = float((p * kl_estimate(logp, logq, "k1")).sum())
    e_k2 = float((p * kl_estimate(logp, logq, "k2")).sum())
    e_k3 = float((p * kl_estimate(logp, logq, "k3")).sum())
    assert e_k1 == pytest.approx(exact, abs=1e-6)
    assert e_k3 == pytest.approx(exact, abs=1e-6)
    assert e_k2 == pytest.approx(float((p * 0.5 * (logq - logp) ** 2).sum()), abs=1e-6)
    assert exact == pytest.approx(0.5 * math.log(2.5) + 0.3 * math.log(0.6) + 0.2 * math.log(2 / 3), abs=1e-6)
    # Monte Carlo over samples of π: both unbiased estimators converge, k3 is never negative
    g = torch.Generator().manual_seed(0)
    idx = torch.multinomial(p, 200_000, replacement=True, generator=g)
    k1 = kl_estimate(logp[idx], logq[idx], "k1")
    k3 = kl_estimate(logp[idx], logq[idx], "k3")
    assert float(k1.mean()) == pytest.approx(exact, abs=0.01)
    assert float(k3.mean()) == pytest.approx(exact, abs=0.01)
    assert bool((k3 >= 0).all()) and bool((k1 < 0).any())
    with pytest.raises(ValueError, match="k4"):
        kl_estimate(logp, logq, "k4")


def test_sequence_kl_sums_over_real_tokens_and_is_zero_for_equal_models():
    logp = torch.tensor([[-1.0, -2.0, -9.0]])
    ref = torch.tensor([[-1.5, -1.0, 0.0]])
    mask = torch.tensor([[1.0, 1.0, 0.0]])
    assert float(sequence_kl(logp, ref, mask)) == pytest.approx(0.5 - 1.0)
    assert float(sequence_kl(logp, logp, mask, "k3")) == 0.0


def test_whiten_zero_mean_unit_std_on_mask():
    x = torch.tensor([[1.0, 2.0, 3.0, 100.0]])
    mask = torch.tensor([[1.0, 1.0, 1.0, 0.0]])
    w = whiten(x, mask)
    assert float(masked_mean(w, mask)) == pytest.approx(0.0, abs=1e-6)
    assert torch.allclose(w[0, :3], torch.tensor([-1.0, 0.0, 1.0]), atol=1e-4)  # unbiased std = 1
    assert float(w[0, 3]) == 0.0


def test_adaptive_kl_controller_ziegler_update():
    ctl = AdaptiveKLController(0.1, target=6.0, horizon=10000)
    assert ctl.update(9.0, 256) == pytest.approx(0.1 * (1 + 0.2 * 256 / 10000))  # error clipped at +0.2
    ctl = AdaptiveKLController(0.1, target=6.0, horizon=10000)
    assert ctl.update(5.4, 100) == pytest.approx(0.1 * (1 - 0.1 * 100 / 10000))
    state = ctl.state_dict()
    other = AdaptiveKLController(1.0, 6.0, 10000)
    other.load_state_dict(state)
    assert other.value == ctl.value
    fixed = make_kl_controller(0.05)
    assert isinstance(fixed, FixedKLController) and fixed.update(100.0, 64) == 0.05
    assert isinstance(make_kl_controller(0.05, target=3.0), AdaptiveKLController)


def test_reward_processor_running_stats_and_clip():
    proc = RewardProcessor("running", clip=1.5)
    a, b = torch.tensor([1.0, 2.0, 3.0]), torch.tensor([10.0, -4.0])
    proc(a)
    out = proc(b)
    allv = torch.cat([a, b])
    assert proc.mean == pytest.approx(float(allv.mean()))
    assert proc.std == pytest.approx(float(allv.std()))
    expected = ((b - allv.mean()) / allv.std()).clamp(-1.5, 1.5)
    assert torch.allclose(out, expected, atol=1e-5)
    batch = RewardProcessor("batch")(torch.tensor([1.0, 3.0]))
    assert torch.allclose(batch, torch.tensor([-1 / math.sqrt(2), 1 / math.sqrt(2)]), atol=1e-5)


def test_non_finite_reward_is_a_clear_error():
    from alignlab.errors import TrainingError

    with pytest.raises(TrainingError, match=r"nan for sample 1 .*'b'"):
        check_finite_rewards([0.5, float("nan")], ["p", "q"], ["a", "b"])
    with pytest.raises(TrainingError, match="inf"):
        check_finite_rewards([float("inf")], ["p"], ["a"])
