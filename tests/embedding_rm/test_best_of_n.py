"""Best-of-N, per-prompt Spearman, pairwise accuracy and pool metrics against hand-computed values."""

import numpy as np
import pytest
from scipy.stats import spearmanr

from alignlab.errors import DataError
from alignlab.eval.best_of_n import best_of_n, default_ns, pairwise_accuracy, spearman_per_prompt


def test_best_of_n_inverted_proxy_matches_hand_computed_expectation():
    gold = np.array([[0.0, 1.0, 2.0]])
    proxy = -gold  # always picks the worst response of the subset
    c = best_of_n(proxy, gold, ns=[1, 2, 3], n_draws=3000, seed=1)
    # N=1: E[gold] = 1; N=2: subsets {0,1}->0, {0,2}->0, {1,2}->1 → 1/3; N=3: always 0.
    assert c.at(1)[0] == pytest.approx(1.0, abs=0.05)
    assert c.at(2)[0] == pytest.approx(1 / 3, abs=0.04)
    assert c.at(3) == (0.0, 0.0)


def test_best_of_n_with_gold_proxy_reaches_the_per_prompt_maximum():
    rng = np.random.default_rng(0)
    gold = rng.normal(size=(20, 16))
    c = best_of_n(gold, gold, n_draws=20)
    assert c.ns == [1, 2, 4, 8, 16]
    assert c.at(16)[0] == pytest.approx(gold.max(1).mean())
    assert c.at(16)[1] == pytest.approx(0.0)
    assert all(a <= b + 1e-12 for a, b in zip(c.mean, c.mean[1:]))  # the oracle never gets worse with N
    assert c.at(1)[0] == pytest.approx(gold.mean(), abs=0.1)
    assert c.at(1)[1] > 0  # different subsamplings give different means


def test_default_ns_ends_at_pool_size():
    assert default_ns(1) == [1]
    assert default_ns(6) == [1, 2, 4, 6]


def test_spearman_per_prompt_matches_scipy_and_skips_constant_prompts():
    rng = np.random.default_rng(3)
    proxy, gold = rng.normal(size=(5, 7)), rng.normal(size=(5, 7))
    gold[2] = 1.0  # constant: no correlation defined
    proxy[1, :3] = 0.5  # ties get average ranks
    mean, per = spearman_per_prompt(proxy, gold)
    expected = [spearmanr(proxy[i], gold[i]).statistic for i in (0, 1, 3, 4)]
    assert np.isnan(per[2])
    assert per[[0, 1, 3, 4]] == pytest.approx(expected)
    assert mean == pytest.approx(np.mean(expected))
    assert spearman_per_prompt(gold[[0]], gold[[0]])[0] == pytest.approx(1.0)


def test_pairwise_accuracy_by_hand():
    a, b = np.array([3.0, 1.0, 2.0, 5.0]), np.array([1.0, 2.0, 2.0, 4.0])
    assert pairwise_accuracy(a, b) == pytest.approx((1 + 0 + 0.5 + 1) / 4)
    assert pairwise_accuracy(a, b, np.array([0, 0, 1, 1])) == pytest.approx((0 + 1 + 0.5 + 1) / 4)


def test_bad_input_is_a_clear_error():
    with pytest.raises(DataError, match="must both be"):
        best_of_n(np.zeros((2, 3)), np.zeros((2, 4)))
    with pytest.raises(DataError, match="pool size"):
        best_of_n(np.zeros((2, 3)), np.zeros((2, 3)), ns=[4])
    with pytest.raises(DataError, match="NaN"):
        best_of_n(np.full((1, 2), np.nan), np.zeros((1, 2)))
    with pytest.raises(DataError, match="non-empty"):
        pairwise_accuracy(np.array([]), np.array([]))


def test_pool_metrics_by_hand():
    from alignlab.embedding_rm.evaluation import pool_metrics

    proxy = np.array([[3.0, 1.0, 2.0], [0.0, 1.0, 2.0]])
    gold = np.array([[1.0, 0.0, 0.0], [2.0, 1.0, 0.0]])
    # pairs (prompt, a, b): right; a gold tie (dropped); wrong; wrong
    pairs = (np.array([0, 0, 1, 1]), np.array([0, 1, 0, 2]), np.array([1, 2, 2, 1]))
    m, curve = pool_metrics(proxy, gold, pairs, n_draws=5, seed=0)
    assert list(m) == ["pair_acc", "spearman", "bon@3"]
    assert m["pair_acc"] == pytest.approx(1 / 3)
    assert m["spearman"] == pytest.approx((spearmanr(proxy[0], gold[0]).statistic - 1.0) / 2)
    assert m["bon@3"] == pytest.approx((1.0 + 0.0) / 2)  # the proxy's best: gold 1 on prompt 0, gold 0 on prompt 1
    assert curve.ns == [1, 2, 3] and curve.mean[-1] == m["bon@3"]
