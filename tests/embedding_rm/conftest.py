"""Synthetic embeddings with a known gold reward, for head and ensemble tests."""

import numpy as np
import pytest

from alignlab.embedding_rm.annotate import simulate_preferences


@pytest.fixture(scope="module")
def synthetic():
    """(emb [1600, 16], gold, groups, train pairs (q=10), test pairs (gold order))."""
    rng = np.random.default_rng(0)
    emb = rng.normal(size=(1600, 16)).astype(np.float32)
    w = rng.normal(size=16)
    gold = np.tanh(emb @ w / 4) + 0.3 * emb[:, 0] ** 2
    groups = np.repeat(np.arange(160), 10)
    train_rows = np.flatnonzero(groups < 120)
    test_rows = np.flatnonzero(groups >= 120)
    tr = simulate_preferences(emb[train_rows], gold[train_rows], groups[train_rows], 3000, quality=10, seed=1)
    tr.emb, tr.left, tr.right = emb, train_rows[tr.left], train_rows[tr.right]
    te = simulate_preferences(emb[test_rows], gold[test_rows], groups[test_rows], 2000, quality=1e6, seed=2)
    te.emb, te.left, te.right = emb, test_rows[te.left], test_rows[te.right]
    return emb, gold, groups, tr, te
