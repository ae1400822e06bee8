"""How a reward model scores against gold: pairwise accuracy, per-prompt Spearman, best-of-N.

`evaluate` measures a trained ensemble on an embeddings folder (one row of metrics per
aggregation and per member); `pool_metrics` measures any proxy score on response pools
[prompts, K] (the demo stage and the ensembles case study).
"""

from __future__ import annotations

import numpy as np

from alignlab.embedding_rm.annotate import make_pairs
from alignlab.embedding_rm.data import PairData
from alignlab.embedding_rm.ensemble import AGGREGATIONS, RewardEnsemble, aggregate
from alignlab.embedding_rm.store import Store, pool_matrix
from alignlab.errors import DataError
from alignlab.eval.best_of_n import BoNCurve, best_of_n, pairwise_accuracy, spearman_per_prompt

PoolPairs = tuple[np.ndarray, np.ndarray, np.ndarray]


def pool_metrics(proxy: np.ndarray, gold: np.ndarray, pairs: PoolPairs, n_draws: int,
                 seed: int) -> tuple[dict[str, float], BoNCurve]:
    """Proxy scores vs gold on pools [prompts, K]: pairwise accuracy on the same-prompt pairs
    (prompt, a, b) with gold ties dropped, mean per-prompt Spearman, and best-of-K gold.

    Returns those three as {pair_acc, spearman, bon@K} and the whole best-of-N curve.
    """
    p, a, b = pairs
    keep = gold[p, a] != gold[p, b]
    acc = pairwise_accuracy(proxy[p, a][keep], proxy[p, b][keep], (gold[p, a] > gold[p, b])[keep])
    curve = best_of_n(proxy, gold, n_draws=n_draws, seed=seed)
    return {"pair_acc": acc, "spearman": spearman_per_prompt(proxy, gold)[0], f"bon@{proxy.shape[1]}": curve.mean[-1]}, curve


def gold_pairs(store: Store, rows: np.ndarray, seed: int = 0, per_row: int = 4) -> PairData | None:
    """Random same-prompt pairs among `rows`, labelled by the gold reward (ties dropped)."""
    if store.gold is None or len(rows) < 2:
        return None
    try:
        left, right = make_pairs(store.groups[rows], per_row * len(rows), "random", seed=seed)
    except DataError:
        return None
    left, right = rows[left], rows[right]
    keep = store.gold[left] != store.gold[right]
    if not keep.any():
        return None
    return PairData(store.emb, left[keep], right[keep], (store.gold[left] > store.gold[right])[keep])


def evaluate(ens: RewardEnsemble, store: Store, pairs: PairData | None = None,
             rows: np.ndarray | None = None, aggregations: tuple[str, ...] = AGGREGATIONS,
             n_draws: int = 50, seed: int = 0) -> tuple[dict[str, dict[str, float]], dict[str, BoNCurve]]:
    """Per scorer (each aggregation, then each member of a larger ensemble): pairwise accuracy on
    `pairs`; with gold on `rows`, Spearman and best-of-N. Also the aggregations' best-of-N curves."""
    out: dict[str, dict[str, float]] = {}
    curves: dict[str, BoNCurve] = {}
    members = ens.member_scores(np.asarray(store.emb))
    names = list(aggregations) + ([f"member_{i}" for i in range(members.shape[0])] if members.shape[0] > 1 else [])
    for name in names:
        s = members[int(name.split("_")[1])] if name.startswith("member_") else aggregate(members, name, ens.k)
        m: dict[str, float] = {}
        if pairs is not None:
            m["pair_acc"] = float(pairwise_accuracy(s[pairs.left], s[pairs.right], pairs.label))
        if store.gold is not None and rows is not None and len(rows):
            try:
                proxy, gold = pool_matrix(s[rows], store.groups[rows]), pool_matrix(store.gold[rows], store.groups[rows])
            except DataError:
                proxy = gold = None
            if proxy is not None and proxy.shape[1] >= 2:
                m["spearman"] = float(spearman_per_prompt(proxy, gold)[0])
                curve = best_of_n(proxy, gold, n_draws=n_draws, seed=seed)
                m[f"bon@{curve.ns[-1]}"] = float(curve.mean[-1])
                if not name.startswith("member_"):
                    curves[name] = curve
        out[name] = m
    return out, curves


def summary(res: dict[str, dict[str, float]]) -> dict[str, float]:
    """Headline numbers: `<aggregation>/<metric>` (4 decimals) and the members' mean pair accuracy."""
    flat = {f"{name}/{k}": round(float(v), 4) for name, m in res.items() if not name.startswith("member_")
            for k, v in m.items()}
    members = [m["pair_acc"] for name, m in res.items() if name.startswith("member_") and "pair_acc" in m]
    if members:
        flat["members_mean/pair_acc"] = round(float(np.mean(members)), 4)
    return flat
