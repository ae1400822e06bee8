"""Ensemble aggregation (by hand), data splits, calibration, uncertainty, save/load."""

import numpy as np
import pytest

from alignlab.embedding_rm.ensemble import (
    RewardEnsemble,
    aggregate,
    compare_scorers,
    split_weights,
    train_ensemble,
)
from alignlab.embedding_rm.gbdt import GBDTSettings
from alignlab.embedding_rm.heads import MLPSettings
from alignlab.errors import ConfigError, DataError
from alignlab.eval.best_of_n import pairwise_accuracy

SMALL = MLPSettings(hidden=[64, 32], epochs=20, batch_size=128)


def test_aggregate_by_hand():
    s = np.array([[1.0, 2.0], [3.0, 0.0]])
    assert aggregate(s, "mean").tolist() == [2.0, 1.0]
    assert aggregate(s, "min").tolist() == [1.0, 0.0]
    assert aggregate(s, "mean_minus_std", k=1.0).tolist() == [1.0, 0.0]  # population std = 1
    assert aggregate(s, "mean_minus_std", k=0.5).tolist() == [1.5, 0.5]
    with pytest.raises(ConfigError):
        aggregate(s, "median")
    with pytest.raises(DataError):
        aggregate(np.zeros((0, 3)))


def test_split_weights():
    assert (split_weights(10, 3, "seed") == 1).all()
    boot = split_weights(1000, 4, "bootstrap", seed=1)
    assert (boot.sum(1) == 1000).all() and (boot == 0).mean() == pytest.approx(np.exp(-1), abs=0.03)
    dis = split_weights(10, 3, "disjoint")
    assert (dis.sum(0) == 1).all() and sorted(dis.sum(1).tolist()) == [3, 3, 4]
    with pytest.raises(DataError, match="empty split"):
        split_weights(2, 3, "disjoint")
    with pytest.raises(ConfigError):
        split_weights(2, 3, "jackknife")


class _Fixed:
    kind, n_heads = "fixed", 2

    def predict(self, emb):
        x = np.asarray(emb)[:, 0]
        return np.stack([x + 100.0, 3 * x])  # same ordering, different offset and scale


def test_calibration_removes_member_offsets():
    emb = np.arange(10, dtype=np.float32).reshape(-1, 1)
    ens = RewardEnsemble([_Fixed()], "min")
    assert (ens.score(emb) == 3 * emb[:, 0]).all()  # uncalibrated: the offset decides the min
    ens.calibrate(emb)
    z = (emb[:, 0] - 4.5) / emb[:, 0].std()
    assert np.allclose(ens.member_scores(emb), [z, z])
    assert np.allclose(ens.score(emb), z) and np.allclose(ens.uncertainty(emb), 0)


@pytest.mark.parametrize("head,split", [("mlp", "seed"), ("mlp", "bootstrap"), ("gbdt", "disjoint")])
def test_trained_ensembles_rank_well_and_roundtrip(synthetic, tmp_path, head, split):
    emb, gold, groups, tr, te = synthetic
    ens = train_ensemble(tr, 3, head, split=split, aggregation="mean_minus_std", mlp=SMALL,
                         gbdt=GBDTSettings(max_iter=40), progress=False)
    assert ens.size == 3
    for agg in ("mean", "min", "mean_minus_std"):
        s = ens.score(emb, agg)
        assert pairwise_accuracy(s[te.left], s[te.right], te.label) > 0.75
    again = RewardEnsemble.load(ens.save(tmp_path / "e"))
    assert np.allclose(again.score(emb), ens.score(emb), atol=1e-5)
    assert again.aggregation == "mean_minus_std"


def test_uncertainty_grows_off_the_training_distribution(synthetic):
    emb, gold, groups, tr, te = synthetic
    ens = train_ensemble(tr, 4, "mlp", mlp=SMALL, progress=False)
    far = emb[:200] * 6.0  # far outside the training cloud
    assert ens.uncertainty(far).mean() > 2 * ens.uncertainty(emb[:200]).mean()
    with pytest.raises(DataError, match="NaN"):
        ens.score(np.full((2, 16), np.nan, np.float32))
    with pytest.raises(ConfigError, match="no ensemble.json"):
        RewardEnsemble.load(str(emb.shape))


def test_compare_scorers_line_up(synthetic):
    """Single MLP/GBDT plus 3 MLPs and 3 GBDTs under each aggregation; all learn the gold order."""
    emb, gold, groups, tr, te = synthetic
    out = compare_scorers(tr, emb, 3, SMALL, GBDTSettings(max_iter=40))
    assert list(out) == ["single MLP", "single GBDT"] + [f"3 {k}s {a}" for k in ("MLP", "GBDT")
                                                         for a in ("mean", "min", "mean−1·std")]
    for name, s in out.items():
        assert s.shape == (len(emb),)
        assert pairwise_accuracy(s[te.left], s[te.right], te.label) > 0.75, name
    # min and mean − std differ from mean once members disagree
    assert not np.allclose(out["3 MLPs min"], out["3 MLPs mean"])
