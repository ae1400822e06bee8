"""Losses against hand-computed values; MLP and GBDT heads learn a known gold reward."""

import math

import numpy as np
import pytest
import torch

from alignlab.embedding_rm.data import PairData, pairs_from_arrays
from alignlab.embedding_rm.gbdt import GBDTRewardModel, GBDTSettings, train_gbdt
from alignlab.embedding_rm.heads import (
    MLPRewardModel,
    MLPSettings,
    StackedMLP,
    bt_loss,
    classification_loss,
    train_mlp,
)
from alignlab.errors import ConfigError, DataError
from alignlab.eval.best_of_n import pairwise_accuracy

SMALL = MLPSettings(hidden=[64, 32], epochs=30, batch_size=128, patience=2)


def test_bt_and_classification_losses_by_hand():
    fa, fb = torch.tensor([[2.0, 0.0]]), torch.tensor([[1.0, 0.5]])
    y = torch.tensor([1.0, 0.0])
    lsig = lambda z: math.log(1 / (1 + math.exp(-z)))  # noqa: E731
    assert bt_loss(fa, fb, y)[0].tolist() == pytest.approx([-lsig(1.0), -lsig(0.5)])  # 2nd: b ≻ a, Δ = 0.5
    soft = bt_loss(torch.tensor([[1.0]]), torch.tensor([[0.0]]), torch.tensor([0.25]))
    assert soft.item() == pytest.approx(-(0.25 * lsig(1.0) + 0.75 * lsig(-1.0)))
    cls = classification_loss(fa, fb, y)[0].tolist()
    assert cls == pytest.approx([(-lsig(2.0) - lsig(-1.0)) / 2, (-lsig(-0.0) - lsig(0.5)) / 2])


def test_stacked_heads_are_independent_mlps():
    net = StackedMLP(3, 5, (7, 4), seed=1)
    x = torch.randn(6, 5)
    out = net(x)
    assert out.shape == (3, 6)
    for m in range(3):
        ref = torch.relu(x @ net.w1[:, m] + net.b1[m])
        ref = torch.relu(ref @ net.w2[m] + net.b2[m, 0])
        assert torch.allclose(out[m], (ref @ net.w3[m] + net.b3[m, 0]).squeeze(-1), atol=1e-6)
    assert not torch.allclose(out[0], out[1])  # each head has its own initialisation
    assert torch.allclose(net.forward_per_head(x.expand(3, 6, 5)), out, atol=1e-6)
    assert StackedMLP(1, 1024, seed=0).w1.abs().max() <= 1 / math.sqrt(1024)  # nn.Linear's bound


@pytest.mark.parametrize("objective", ["bt", "cls"])
def test_mlp_learns_the_gold_ordering(synthetic, objective):
    emb, gold, groups, tr, te = synthetic
    model = train_mlp(tr, n_heads=2, objective=objective, settings=SMALL, progress=False)
    s = model.predict(emb)
    assert s.shape == (2, len(emb))
    untrained = MLPRewardModel(StackedMLP(1, 16, (64, 32)), model.mean, model.std, objective).predict(emb)[0]
    acc0 = pairwise_accuracy(untrained[te.left], untrained[te.right], te.label)
    for m in range(2):
        acc = pairwise_accuracy(s[m][te.left], s[m][te.right], te.label)
        assert acc > 0.85 and acc > acc0 + 0.2
    assert len(model.history) < 2 * SMALL.epochs  # early stopping ended training


def test_early_stopping_on_pure_noise_stops_fast(synthetic):
    emb, gold, groups, tr, te = synthetic
    noise = PairData(emb, tr.left, tr.right, np.random.default_rng(0).integers(0, 2, len(tr)))
    model = train_mlp(noise, settings=SMALL, progress=False)
    assert model.history[-1]["epoch"] <= 4  # no validation gain on coin-flip labels


def test_per_head_weights_restrict_training_data(synthetic):
    emb, gold, groups, tr, te = synthetic
    w = np.zeros((2, len(tr)), np.float32)  # one weight per pair of `tr` (validation share included)
    w[0] = 1.0
    w[1, :20] = 1.0  # head 1 sees only 20 pairs
    s = train_mlp(tr, 2, settings=SMALL, weights=None, progress=False).predict(emb)
    s2 = train_mlp(tr, 2, settings=SMALL, weights=w, progress=False).predict(emb)
    acc = lambda v: pairwise_accuracy(v[te.left], v[te.right], te.label)  # noqa: E731
    assert acc(s2[0]) > 0.85 and acc(s2[1]) < acc(s2[0]) - 0.05 and acc(s[1]) > 0.85
    with pytest.raises(DataError, match="empty split"):
        train_mlp(tr, 2, settings=SMALL, weights=np.zeros_like(w), progress=False)


@pytest.mark.parametrize("objective", ["cls", "bt"])
def test_gbdt_learns_the_gold_ordering(synthetic, objective, tmp_path):
    emb, gold, groups, tr, te = synthetic
    model = train_gbdt(tr, objective=objective, settings=GBDTSettings(max_iter=60), progress=False)
    s = model.predict(emb)[0]
    assert pairwise_accuracy(s[te.left], s[te.right], te.label) > 0.75
    pair_logit = model.predict_pair(emb[te.left], emb[te.right])[0]
    assert pairwise_accuracy(pair_logit, np.zeros_like(pair_logit), te.label) > 0.75
    again = GBDTRewardModel.load(model.save(tmp_path / "g"))
    assert np.allclose(again.predict(emb[:50]), model.predict(emb[:50]))


def test_mlp_save_load_roundtrip(synthetic, tmp_path):
    emb, gold, groups, tr, te = synthetic
    model = train_mlp(tr, 2, settings=MLPSettings(hidden=[8, 4], epochs=1), progress=False)
    again = MLPRewardModel.load(model.save(tmp_path / "m"))
    assert np.allclose(again.predict(emb), model.predict(emb), atol=1e-6)


def test_bad_inputs_are_clear_errors(synthetic):
    emb, gold, groups, tr, te = synthetic
    bad = emb.copy()
    bad[7, 3] = np.nan
    with pytest.raises(DataError, match=r"NaN.*\[7\]"):
        PairData(bad, [0], [1], [1])
    with pytest.raises(DataError, match="differ in shape"):
        pairs_from_arrays(np.zeros((4, 3)), np.zeros((4, 2)))
    with pytest.raises(DataError, match="empty"):
        pairs_from_arrays(np.zeros((0, 3)), np.zeros((0, 3)))
    with pytest.raises(DataError, match="same length"):
        PairData(emb, [0, 1], [1], [1, 1])
    with pytest.raises(DataError, match="out of range"):
        PairData(emb, [0], [len(emb)], [1])
    with pytest.raises(DataError, match="split is empty"):
        tr.subset(np.array([], int))
    with pytest.raises(DataError, match="probabilities"):
        PairData(emb, [0], [1], [2.0])
    model = train_mlp(tr, settings=MLPSettings(hidden=[8, 4], epochs=1), progress=False)
    with pytest.raises(DataError, match="dim 3"):
        model.predict(np.zeros((2, 3), np.float32))
    with pytest.raises(ConfigError, match="objective"):
        train_mlp(tr, objective="hinge", progress=False)
