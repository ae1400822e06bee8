"""Simulated annotators and pairing strategies."""

import math

import numpy as np
import pytest

from alignlab.embedding_rm.annotate import (
    annotate,
    make_pairs,
    preference_prob,
    simulate_preferences,
)
from alignlab.errors import ConfigError, DataError


def test_preference_prob_is_sigmoid_of_scaled_difference():
    sig = lambda z: 1 / (1 + math.exp(-z))  # noqa: E731
    assert preference_prob(np.array(2.0), np.array(0.0), quality=1, scale=2) == pytest.approx(sig(1.0))
    assert preference_prob(np.array(0.3), np.array(0.5), quality=10, scale=1) == pytest.approx(sig(-2.0))
    assert preference_prob(np.array(5.0), np.array(-5.0), quality=0, scale=1) == pytest.approx(0.5)
    assert preference_prob(np.array(1e4), np.array(0.0), 10, 1) == pytest.approx(1.0)  # no overflow
    with pytest.raises(ConfigError):
        preference_prob(np.zeros(1), np.zeros(1), 1, scale=0)


def test_annotate_samples_at_the_annotator_rate():
    ra, rb = np.full(20000, 1.0), np.zeros(20000)
    labels = annotate(ra, rb, quality=1, scale=1, seed=0)
    assert labels.mean() == pytest.approx(1 / (1 + math.exp(-1)), abs=0.01)


def test_quality_controls_agreement_with_gold():
    rng = np.random.default_rng(0)
    ra, rb = rng.normal(size=5000), rng.normal(size=5000)
    agree = {q: (annotate(ra, rb, q, seed=1) == (ra > rb)).mean() for q in (10, 1, 0.1)}
    assert agree[10] > 0.93 and 0.7 < agree[1] < 0.85 and agree[0.1] < 0.56


def test_pairing_strategies():
    rng = np.random.default_rng(0)
    groups = np.repeat(np.arange(30), 10)
    emb = rng.normal(size=(300, 8)).astype(np.float32)
    dist = {}
    for strategy in ("random", "high_diversity", "low_diversity", "cross_prompt"):
        left, right = make_pairs(groups, 2000, strategy, emb, seed=2)
        assert (left != right).all()
        if strategy == "cross_prompt":
            assert (groups[left] != groups[right]).all()
        else:
            assert (groups[left] == groups[right]).all()
        dist[strategy] = np.linalg.norm(emb[left] - emb[right], axis=1).mean()
    assert dist["high_diversity"] > dist["random"] > dist["low_diversity"]
    # every row of a group can be paired: the partner offset covers the whole group
    left, right = make_pairs(groups, 5000, "random", seed=3)
    assert len(np.unique(right[groups[left] == 0])) == 10


def test_pairing_errors():
    with pytest.raises(DataError, match="at least one prompt with 2"):
        make_pairs(np.arange(5), 10)
    with pytest.raises(DataError, match="at least 2 prompts"):
        make_pairs(np.zeros(5, int), 10, "cross_prompt")
    with pytest.raises(DataError, match="needs embeddings"):
        make_pairs(np.zeros(5, int), 10, "high_diversity")
    with pytest.raises(ConfigError, match="not one of"):
        make_pairs(np.zeros(5, int), 10, "nearest")


def test_simulate_preferences_checks_its_inputs():
    emb = np.zeros((6, 2), np.float32)
    with pytest.raises(DataError, match="gold rewards"):
        simulate_preferences(emb, np.zeros(5), np.zeros(6, int), 4, quality=1)
    emb[2, 1] = np.nan
    with pytest.raises(DataError, match="NaN"):
        simulate_preferences(emb, np.zeros(6), np.zeros(6, int), 4, quality=1)
