"""`alignlab erm`: embedding reward models — train a head or ensemble (mode=train), evaluate one (mode=eval).

    alignlab erm mode=train embeddings=runs/emb head=mlp members=5 aggregation=mean_minus_std quality=1 --out runs/erm
    alignlab erm mode=eval model=runs/erm/model embeddings=runs/emb --out runs/erm-eval

`embeddings` is a folder written by `alignlab embed`. Train holds out `test_frac` of the pairs
(or, with `quality` ≥ 0, of the prompts, labelling training pairs with a simulated annotator of
that quality) and saves the ensemble under RUN/model. Both modes log one metrics.jsonl row per
scorer (each aggregation, each member) and plot best-of-N when the rows have gold rewards.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, get_args

import numpy as np

from alignlab.config import Range, bounded
from alignlab.errors import DataError
from alignlab.eval.best_of_n import plot_bon
from alignlab.method_settings import GBDTSettings, MLPSettings
from alignlab.recipe import RunResult, default_run_dir, register_recipe
from alignlab.runs import RunDir

if TYPE_CHECKING:
    from alignlab.embedding_rm.data import PairData
    from alignlab.embedding_rm.store import Store

Aggregation = Literal["mean", "min", "mean_minus_std"]

# Ranges of the head settings, checked where this recipe loads them (the settings live beside their trainers).
HEAD_RANGES = {
    "mlp": {"hidden": Range(ge=1), "lr": Range(gt=0), "epochs": Range(ge=1), "batch_size": Range(ge=1),
            "patience": Range(ge=1), "evals_per_epoch": Range(ge=1), "val_frac": Range(ge=0, lt=1),
            "weight_decay": Range(ge=0), "threads": Range(ge=0)},
    "gbdt": {"max_iter": Range(ge=1), "learning_rate": Range(gt=0), "max_leaf_nodes": Range(ge=2),
             "l2_regularization": Range(ge=0), "threads": Range(ge=0)},
}


@dataclass
class ERMConfig:
    """Embedding reward models: train an MLP/GBDT head or ensemble on an embeddings folder, or evaluate a saved one."""

    mode: Literal["train", "eval"] = "train"
    embeddings: str = ""  # folder written by `alignlab embed` (both modes)
    model: str = ""  # mode=eval: the RUN/model folder written by mode=train
    aggregations: list[Aggregation] = field(default_factory=lambda: list(get_args(Aggregation)))  # scorers evaluated
    head: Literal["mlp", "gbdt"] = "mlp"
    objective: Literal["bt", "cls"] = "bt"  # Bradley–Terry | classification (chosen = 1)
    members: int = bounded(1, ge=1)  # ensemble size M (1 = a single model)
    split: Literal["seed", "bootstrap", "disjoint"] = "seed"  # what differs between members
    aggregation: Aggregation = "mean"  # the saved ensemble's own score
    k: float = bounded(1.0, ge=0)  # for mean_minus_std
    test_frac: float = bounded(0.1, gt=0, lt=1)  # held-out share (of pairs, or of prompts when labels are simulated)
    quality: float = bounded(-1.0, ge=0, also=(-1,))  # ≥ 0: simulate annotator labels from gold.npy with quality q; -1: off
    n_pairs: int = bounded(10000, ge=1)  # simulated pairs
    strategy: Literal["random", "high_diversity", "low_diversity", "cross_prompt"] = "random"  # simulated pairing
    mlp: MLPSettings = field(default_factory=MLPSettings)
    gbdt: GBDTSettings = field(default_factory=GBDTSettings)
    seed: int = 0
    progress: bool = True
    output_dir: str = ""

    def check(self, where: str) -> None:
        """The heads' numeric settings are in range."""
        for section, ranges in HEAD_RANGES.items():
            for name, rng in ranges.items():
                rng.check(getattr(getattr(self, section), name), f"{where}.{section}.{name}")


def split_store(store: Store, cfg: ERMConfig) -> tuple[PairData, PairData | None, np.ndarray | None]:
    """(train pairs, held-out pairs, held-out rows with gold): a split of the pairs, or with
    cfg.quality ≥ 0 a split of the prompts whose training pairs a simulated annotator labels."""
    from alignlab.embedding_rm.annotate import simulate_preferences
    from alignlab.embedding_rm.data import PairData
    from alignlab.embedding_rm.evaluation import gold_pairs

    if cfg.quality < 0:
        if store.pairs is None:
            raise DataError(f"{store.path}: no pairs.npz; give chosen/rejected data or quality=Q with gold rewards")
        train, test = store.pairs.split(cfg.test_frac, seed=cfg.seed)
        return train, test, None
    if store.gold is None:
        raise DataError(f"{store.path}: quality={cfg.quality} simulates labels but there is no gold.npy")
    rng = np.random.default_rng(cfg.seed)
    prompts = np.unique(store.groups)
    test_prompts = rng.choice(prompts, max(1, int(round(cfg.test_frac * len(prompts)))), replace=False)
    is_test = np.isin(store.groups, test_prompts)
    train_rows, test_rows = np.flatnonzero(~is_test), np.flatnonzero(is_test)
    if len(train_rows) == 0 or len(test_rows) == 0:
        raise DataError(f"test_frac={cfg.test_frac} leaves an empty train or test split of prompts")
    sim = simulate_preferences(np.asarray(store.emb)[train_rows], store.gold[train_rows], store.groups[train_rows],
                               cfg.n_pairs, cfg.quality, cfg.strategy, seed=cfg.seed)
    train = PairData(store.emb, train_rows[sim.left], train_rows[sim.right], sim.label)
    return train, gold_pairs(store, test_rows, seed=cfg.seed + 7), test_rows


def eval_set(store: Store) -> tuple[PairData | None, np.ndarray | None]:
    """A whole folder as a test set: its pairs (else gold-labelled same-prompt pairs) and, with gold, all rows."""
    from alignlab.embedding_rm.evaluation import gold_pairs

    if store.pairs is None and store.gold is None:
        raise DataError(f"{store.path}: nothing to evaluate against (no pairs.npz and no gold.npy)")
    rows = np.arange(store.emb.shape[0]) if store.gold is not None else None
    return (store.pairs if store.pairs is not None else gold_pairs(store, rows)), rows


def run(cfg: ERMConfig) -> RunResult:
    """Train (and evaluate on the held-out split) or evaluate a saved ensemble; one metrics row per scorer."""
    from alignlab.embedding_rm.ensemble import RewardEnsemble, train_ensemble
    from alignlab.embedding_rm.evaluation import evaluate, summary
    from alignlab.embedding_rm.store import read_store
    from alignlab.resolve import require

    require(cfg.embeddings, "embeddings", "the folder written by `alignlab embed` (embeddings=DIR)")
    store = read_store(cfg.embeddings)
    if cfg.mode == "train":
        train, test, rows = split_store(store, cfg)
    else:
        ens = RewardEnsemble.load(require(cfg.model, "model", "the RUN/model folder written by `alignlab erm mode=train`"))
        train, (test, rows) = None, eval_set(store)
    run_dir = RunDir(cfg.output_dir or default_run_dir("erm"))
    run_dir.save_config(cfg)
    model_dir, counts = None, {}
    if train is not None:
        ens = train_ensemble(train, cfg.members, cfg.head, cfg.objective, cfg.split, cfg.aggregation, cfg.k,
                             mlp=cfg.mlp, gbdt=cfg.gbdt, progress=cfg.progress)
        model_dir, counts = ens.save(run_dir.path / "model"), {"train_pairs": len(train)}
    res, curves = evaluate(ens, store, test, rows, tuple(cfg.aggregations), seed=cfg.seed)
    for name, m in res.items():
        run_dir.log({"scorer": name, **m})
    metrics = {**counts, "test_pairs": len(test) if test is not None else 0, **summary(res)}
    figures = [plot_bon(curves, run_dir.path / "best_of_n.png")] if curves else []
    _report(cfg, run_dir.path, res, metrics, figures)
    return RunResult(run_dir.path, metrics, model_dir)


def _report(cfg: ERMConfig, path: Path, res: dict[str, dict], metrics: dict, figures: list) -> None:
    from alignlab.report import write_report

    if cfg.mode == "train":
        title = f"Embedding reward model: {cfg.members} × {cfg.head} ({cfg.objective}), held-out results"
        notes = [f"Trained on {metrics['train_pairs']} pairs from {cfg.embeddings}; ensemble saved to {path / 'model'}."]
    else:
        title, notes = f"Embedding reward model {cfg.model} on {cfg.embeddings}", []
    write_report(path, title=title, notes=notes, figures=figures, curve_keys=(),
                 tables={"Scorers": scorer_rows([{"scorer": n, **m} for n, m in res.items()])})


def scorer_rows(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The per-scorer rows of metrics.jsonl (the CLI's table)."""
    return [{k: v for k, v in r.items() if k != "time"} for r in records if "scorer" in r]


def register(sub: argparse._SubParsersAction) -> None:
    register_recipe(sub, "erm", "Embedding reward models: train heads/ensembles (mode=train), evaluate them (mode=eval)",
                    ERMConfig, run, rows_fn=scorer_rows, rows_title="erm: scorers")
