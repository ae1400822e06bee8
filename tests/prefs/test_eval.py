"""Preference metrics against hand-computed values."""

from __future__ import annotations

import pytest

from alignlab.eval.preference import (
    kendall_tau,
    mean_kendall_tau,
    pairwise_accuracy,
    ranking_accuracy,
    spearman,
    win_rate,
    win_rate_under,
)


def test_pairwise_accuracy_and_win_rate():
    assert pairwise_accuracy([1, 2, 3, 0], [0, 2, 5, -1]) == pytest.approx((1 + 0.5 + 0 + 1) / 4)
    assert win_rate([1.0, 1.0], [0.0, 2.0]) == 0.5
    fn = lambda prompts, responses: [len(r) for r in responses]  # noqa: E731
    assert win_rate_under(fn, ["a", "b"], ["xx", "x"], ["x", "x"]) == pytest.approx(0.75)
    with pytest.raises(ValueError, match="lengths differ"):
        pairwise_accuracy([1], [1, 2])


def test_kendall_tau():
    assert kendall_tau([1, 2, 3], [10, 20, 30]) == pytest.approx(1.0)
    assert kendall_tau([1, 2, 3], [3, 2, 1]) == pytest.approx(-1.0)
    # 4 items, one swapped pair: C=5, D=1 → τ = 4/6
    assert kendall_tau([1, 2, 3, 4], [1, 3, 2, 4]) == pytest.approx(4 / 6)
    assert kendall_tau([1, 1, 1], [1, 2, 3]) == 0.0


def test_ranking_accuracy_and_mean_tau():
    scores = [[3.0, 2.0, 1.0], [0.0, 1.0]]
    ranks = [[0, 1, 2], [0, 1]]
    assert ranking_accuracy(scores, ranks) == pytest.approx(3 / 4)
    assert mean_kendall_tau(scores, ranks) == pytest.approx((1.0 - 1.0) / 2)


def test_spearman():
    assert spearman([1, 2, 3, 4], [2, 4, 6, 100]) == pytest.approx(1.0)
    assert spearman([1, 2, 3], [3, 2, 1]) == pytest.approx(-1.0)
