"""Gradient-boosted-tree reward heads (scikit-learn HistGradientBoosting).

'cls' (classification): rows of both responses, the preferred one class 1; the score of a row
is the classifier's logit. 'bt' (pairwise transform): trees classify `emb[a] − emb[b]`
(symmetrised with the flipped pair), so P(a ≻ b) = σ(g(emb[a] − emb[b])); a single response
is scored against the mean training embedding, g(x − x̄).
"""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np

from alignlab.embedding_rm.data import PairData, check_embeddings
from alignlab.embedding_rm.heads import OBJECTIVES
from alignlab.errors import ConfigError, DataError
from alignlab.method_settings import GBDTSettings  # noqa: F401  (re-exported: configs import it light)
from alignlab.progress import progress_bar
from alignlab.threads import cpu_threads


class GBDTRewardModel:
    """M boosted-tree heads; 'cls' scores a row directly, 'bt' scores it against the mean row."""

    kind = "gbdt"

    def __init__(self, models: list, objective: str, center: np.ndarray):
        self.models, self.objective, self.center = models, objective, center.astype(np.float32)

    @property
    def n_heads(self) -> int:
        return len(self.models)

    def predict(self, emb: np.ndarray) -> np.ndarray:
        """Scores [M, n] (logits) of embedding rows [n, D]."""
        emb = check_embeddings(emb)
        if emb.shape[1] != len(self.center):
            raise DataError(f"embeddings have dim {emb.shape[1]} but the trees expect {len(self.center)}")
        x = np.asarray(emb, dtype=np.float32)
        if self.objective == "bt":
            x = x - self.center
        return np.stack([m.decision_function(x) for m in self.models]).astype(np.float32)

    def predict_pair(self, emb_a: np.ndarray, emb_b: np.ndarray) -> np.ndarray:
        """Logit of P(a ≻ b) per head [M, n]; for 'bt' the trees read the difference directly."""
        if self.objective == "bt":
            d = np.asarray(emb_a, dtype=np.float32) - np.asarray(emb_b, dtype=np.float32)
            return np.stack([m.decision_function(d) for m in self.models]).astype(np.float32)
        return self.predict(emb_a) - self.predict(emb_b)

    def save(self, path: str | Path) -> Path:
        """Pickle into folder `path` (load only files you trust: pickle runs code)."""
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        with open(path / "gbdt.pkl", "wb") as f:
            pickle.dump({"models": self.models, "objective": self.objective, "center": self.center}, f)
        return path

    @classmethod
    def load(cls, path: str | Path) -> GBDTRewardModel:
        with open(Path(path) / "gbdt.pkl", "rb") as f:
            d = pickle.load(f)
        return cls(d["models"], d["objective"], d["center"])


def train_gbdt(data: PairData, n_heads: int = 1, objective: str = "cls", settings: GBDTSettings | None = None,
               weights: np.ndarray | None = None, progress: bool = True) -> GBDTRewardModel:
    """Train M boosted-tree heads; `weights` [M, len(data)] are per-pair sample weights (splits).

    'cls': rows of both responses, preferred = 1 (soft labels become sample weights).
    'bt': the pairwise transform — trees on `emb[a] − emb[b]`, symmetrised with the flipped pair.
    """
    s = settings or GBDTSettings()
    with cpu_threads(s.threads):
        return _train_gbdt(data, n_heads, objective, s, weights, progress)


def _train_gbdt(data: PairData, n_heads: int, objective: str, s: GBDTSettings, weights: np.ndarray | None,
                progress: bool) -> GBDTRewardModel:
    from sklearn.ensemble import HistGradientBoostingClassifier

    if objective not in OBJECTIVES:
        raise ConfigError(f"objective: '{objective}' is not one of {', '.join(OBJECTIVES)}")
    weights = np.ones((n_heads, len(data)), np.float32) if weights is None else np.asarray(weights, np.float32)
    if weights.shape != (n_heads, len(data)):
        raise DataError(f"weights: expected shape {(n_heads, len(data))}, got {weights.shape}")
    emb = np.asarray(data.emb, dtype=np.float32)
    y = data.label.astype(np.float64)
    # Each pair gives rows (features, class, weight); zero-weight rows (hard labels) are dropped.
    if objective == "cls":
        parts = [(data.left, 1, 1.0, y), (data.right, 0, 1.0, y), (data.left, 0, 1.0, 1 - y),
                 (data.right, 1, 1.0, 1 - y)]
    else:
        parts = [(None, 1, 1.0, y), (None, 1, -1.0, 1 - y), (None, 0, 1.0, 1 - y), (None, 0, -1.0, y)]
    xs, targets, pair_ws, pair_idx = [], [], [], []
    for rows, cls, sign, pw in parts:
        k = np.flatnonzero(pw > 0)
        xs.append(emb[rows[k]] if rows is not None else sign * (emb[data.left[k]] - emb[data.right[k]]))
        targets.append(np.full(len(k), cls))
        pair_ws.append(pw[k])
        pair_idx.append(k)
    x, target = np.concatenate(xs), np.concatenate(targets)
    pair_w, pair_idx = np.concatenate(pair_ws), np.concatenate(pair_idx)
    models = []
    with progress_bar(f"train {n_heads} GBDT head(s)", total=n_heads, enabled=progress) as bar:
        for m in range(n_heads):
            w = pair_w * weights[m][pair_idx]
            k = w > 0
            if not k.any():
                raise DataError(f"GBDT head {m}: no training rows (empty split)")
            clf = HistGradientBoostingClassifier(
                max_iter=s.max_iter, learning_rate=s.learning_rate, max_leaf_nodes=s.max_leaf_nodes,
                l2_regularization=s.l2_regularization, early_stopping=s.early_stopping,
                validation_fraction=0.1, n_iter_no_change=10, random_state=s.seed * 1000 + m)
            if np.array_equal(w, np.round(w)):  # integer weights: repeat rows (10x faster than sample_weight)
                rows = np.repeat(np.flatnonzero(k), w[k].astype(np.int64))
                clf.fit(x[rows], target[rows])
            else:
                clf.fit(x[k], target[k], sample_weight=w[k])
            models.append(clf)
            bar.advance(1)
    return GBDTRewardModel(models, objective, emb.mean(0))
