"""Ensembles of M reward heads (different seeds and/or data splits) and their aggregation.

Each member's scores are standardised on reference embeddings (its training rows) before
aggregating: Bradley–Terry scores have an arbitrary offset per head, so `min` or
`mean − k·std` over raw scores would mostly measure offsets. Aggregations: mean, min,
mean − k·std (conservative); `uncertainty` is the members' standard deviation.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from alignlab.embedding_rm.data import PairData, check_embeddings
from alignlab.embedding_rm.gbdt import GBDTRewardModel, GBDTSettings, train_gbdt
from alignlab.embedding_rm.heads import MLPRewardModel, MLPSettings, train_mlp
from alignlab.errors import ConfigError, DataError

AGGREGATIONS = ("mean", "min", "mean_minus_std")
SPLITS = ("seed", "bootstrap", "disjoint")


def aggregate(scores: np.ndarray, method: str = "mean", k: float = 1.0) -> np.ndarray:
    """Combine member scores [M, n] into one score per row: mean, min, or mean − k·std."""
    scores = np.asarray(scores, dtype=np.float64)
    if scores.ndim != 2 or scores.shape[0] == 0:
        raise DataError(f"member scores must be [M, n] with M ≥ 1, got shape {scores.shape}")
    if method == "mean":
        return scores.mean(0)
    if method == "min":
        return scores.min(0)
    if method == "mean_minus_std":
        return scores.mean(0) - k * scores.std(0)
    raise ConfigError(f"aggregation: '{method}' is not one of {', '.join(AGGREGATIONS)}")


def split_weights(n_pairs: int, n_members: int, split: str = "seed", seed: int = 0) -> np.ndarray:
    """Per-member pair weights [M, n]: all ones ('seed'), bootstrap counts, or a disjoint partition."""
    if n_members < 1:
        raise ConfigError(f"ensemble size must be ≥ 1, got {n_members}")
    rng = np.random.default_rng(seed)
    if split == "seed":
        return np.ones((n_members, n_pairs), np.float32)
    if split == "bootstrap":
        return np.stack([np.bincount(rng.integers(0, n_pairs, n_pairs), minlength=n_pairs)
                         for _ in range(n_members)]).astype(np.float32)
    if split == "disjoint":
        if n_pairs < n_members:
            raise DataError(f"cannot split {n_pairs} pairs into {n_members} disjoint parts (an empty split)")
        owner = rng.permutation(n_pairs) % n_members
        return (owner[None, :] == np.arange(n_members)[:, None]).astype(np.float32)
    raise ConfigError(f"split: '{split}' is not one of {', '.join(SPLITS)}")


class RewardEnsemble:
    """Reward heads (each a model with `predict(emb) -> [m, n]`) scored together."""

    def __init__(self, models: list, aggregation: str = "mean", k: float = 1.0):
        if not models:
            raise ConfigError("an ensemble needs at least one model")
        if aggregation not in AGGREGATIONS:
            raise ConfigError(f"aggregation: '{aggregation}' is not one of {', '.join(AGGREGATIONS)}")
        self.models, self.aggregation, self.k = models, aggregation, float(k)
        self.loc: np.ndarray | None = None
        self.scale: np.ndarray | None = None

    @property
    def size(self) -> int:
        return sum(m.n_heads for m in self.models)

    def raw_scores(self, emb: np.ndarray) -> np.ndarray:
        """Unstandardised member scores [M, n]."""
        emb = check_embeddings(emb)
        return np.concatenate([m.predict(emb) for m in self.models]).astype(np.float64)

    def calibrate(self, emb_ref: np.ndarray) -> RewardEnsemble:
        """Fix each member's location/scale from its scores on reference rows (e.g. training data)."""
        s = self.raw_scores(emb_ref)
        self.loc, self.scale = s.mean(1), np.maximum(s.std(1), 1e-8)
        return self

    def member_scores(self, emb: np.ndarray) -> np.ndarray:
        """Standardised member scores [M, n] (raw if never calibrated)."""
        s = self.raw_scores(emb)
        if self.loc is None:
            return s
        return (s - self.loc[:, None]) / self.scale[:, None]

    def score(self, emb: np.ndarray, aggregation: str | None = None, k: float | None = None) -> np.ndarray:
        """One reward per row [n], aggregated over members."""
        return aggregate(self.member_scores(emb), aggregation or self.aggregation, self.k if k is None else k)

    def uncertainty(self, emb: np.ndarray) -> np.ndarray:
        """Disagreement per row [n]: standard deviation of the standardised member scores."""
        return self.member_scores(emb).std(0)

    def save(self, path: str | Path) -> Path:
        """Folder with ensemble.json and one sub-folder per model."""
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        members = []
        for i, m in enumerate(self.models):
            sub = f"member-{i:02d}-{m.kind}"
            m.save(path / sub)
            members.append({"kind": m.kind, "dir": sub, "n_heads": m.n_heads})
        meta = {"aggregation": self.aggregation, "k": self.k, "members": members,
                "loc": None if self.loc is None else self.loc.tolist(),
                "scale": None if self.scale is None else self.scale.tolist()}
        (path / "ensemble.json").write_text(json.dumps(meta, indent=1))
        return path

    @classmethod
    def load(cls, path: str | Path) -> RewardEnsemble:
        path = Path(path)
        f = path / "ensemble.json"
        if not f.is_file():
            raise ConfigError(f"{path}: not a saved reward ensemble (no ensemble.json)")
        meta = json.loads(f.read_text())
        loaders = {"mlp": MLPRewardModel.load, "gbdt": GBDTRewardModel.load}
        ens = cls([loaders[m["kind"]](path / m["dir"]) for m in meta["members"]], meta["aggregation"], meta["k"])
        if meta.get("loc") is not None:
            ens.loc, ens.scale = np.array(meta["loc"]), np.array(meta["scale"])
        return ens


def train_ensemble(data: PairData, n_members: int = 5, head: str = "mlp", objective: str = "bt",
                   split: str = "seed", aggregation: str = "mean", k: float = 1.0,
                   mlp: MLPSettings | None = None, gbdt: GBDTSettings | None = None,
                   progress: bool = True, calibration_rows: int = 8192) -> RewardEnsemble:
    """Train M heads of one kind (different seeds; plus bootstrap/disjoint data splits) and calibrate.

    M = 1 with split 'seed' is the single-model baseline. Members are standardised on up to
    `calibration_rows` of the training embeddings.
    """
    if head == "mlp":
        mlp = mlp or MLPSettings()
        rest, val = data.split(mlp.val_frac, seed=mlp.seed) if mlp.val_frac > 0 else (data, None)
        w = split_weights(len(rest), n_members, split, seed=mlp.seed)
        model = train_mlp(rest, n_members, objective, mlp, weights=w, val=val, progress=progress)
    elif head == "gbdt":
        gbdt = gbdt or GBDTSettings()
        w = split_weights(len(data), n_members, split, seed=gbdt.seed)
        model = train_gbdt(data, n_members, objective, gbdt, weights=w, progress=progress)
    else:
        raise ConfigError(f"head: '{head}' is not one of mlp, gbdt")
    used = np.unique(np.concatenate([data.left, data.right]))
    if len(used) > calibration_rows:  # location/scale need a sample, not every row (saves a pass)
        used = np.sort(np.random.default_rng(0).choice(used, calibration_rows, replace=False))
    return RewardEnsemble([model], aggregation, k).calibrate(np.asarray(data.emb)[used])


AGGREGATION_LABELS = {"mean": "mean", "min": "min", "mean_minus_std": "mean−1·std"}


def compare_scorers(data: PairData, emb: np.ndarray, members: int = 5, mlp: MLPSettings | None = None,
                    gbdt: GBDTSettings | None = None) -> dict[str, np.ndarray]:
    """The standard line-up of the ensembles study, each scoring the rows `emb`.

    Single MLP (Bradley–Terry), single GBDT (classification), M MLPs (seeds) and M GBDTs
    (bootstrap) under each aggregation (mean, min, mean − 1·std).
    """
    mlp, gbdt = mlp or MLPSettings(), gbdt or GBDTSettings()
    out = {"single MLP": train_ensemble(data, 1, "mlp", mlp=mlp, progress=False).score(emb),
           "single GBDT": train_ensemble(data, 1, "gbdt", "cls", gbdt=gbdt, progress=False).score(emb)}
    for kind, split in (("MLP", "seed"), ("GBDT", "bootstrap")):
        ens = train_ensemble(data, members, kind.lower(), "bt" if kind == "MLP" else "cls", split=split,
                             mlp=mlp, gbdt=gbdt, progress=False)
        member_scores = ens.member_scores(emb)
        for agg, label in AGGREGATION_LABELS.items():
            out[f"{members} {kind}s {label}"] = aggregate(member_scores, agg, 1.0)
    return out
