"""`alignlab embed` and `alignlab erm train|eval`: embedding reward models from the command line.

    alignlab embed --model testbed:student --data rows.jsonl --out emb/
    alignlab erm train embeddings=emb/ head=mlp members=5 aggregation=mean_minus_std --out runs/erm
    alignlab erm eval --model runs/erm/model --embeddings emb/
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from alignlab.embedding_rm.annotate import make_pairs, simulate_preferences
from alignlab.embedding_rm.data import PairData
from alignlab.embedding_rm.embed import EmbedSettings, embed_pairs, load_encoder
from alignlab.embedding_rm.ensemble import AGGREGATIONS, RewardEnsemble, aggregate, train_ensemble
from alignlab.embedding_rm.gbdt import GBDTSettings
from alignlab.embedding_rm.heads import MLPSettings
from alignlab.embedding_rm.store import (
    Store,
    pool_matrix,
    read_store,
    rows_from_records,
    write_store,
)
from alignlab.errors import ConfigError, DataError
from alignlab.eval.best_of_n import best_of_n, pairwise_accuracy, plot_bon, spearman_per_prompt
from alignlab.progress import print_table
from alignlab.recipe import RunResult, add_recipe_args, config_from_args, default_run_dir
from alignlab.runs import RunDir


def default_cache_dir() -> Path:
    """Where embeddings are cached: <alignlab cache>/embeddings."""
    from alignlab.testbed.build import cache_root

    return cache_root() / "embeddings"


def embed_file(model: str, data: str, out: str, settings: EmbedSettings, cache_dir: str | None = None,
               limit: int = 0, progress: bool = True) -> Store:
    """Embed a JSONL file's rows with `model` into the folder `out`; returns the loaded folder."""
    from alignlab.train.sft import read_jsonl

    records = read_jsonl(data)
    if limit > 0:
        records = records[:limit]
    rows = rows_from_records(records, data)
    enc = load_encoder(model, settings.pooling)
    t0 = time.time()
    emb = embed_pairs(enc, rows.prompts, rows.responses, settings, cache_dir or default_cache_dir(), progress)
    dt = time.time() - t0
    meta = {"model": model, "source": str(data), "pooling": enc.pooling, "settings": asdict(settings),
            "seconds": round(dt, 2), "rows_per_s": round(len(rows.responses) / max(dt, 1e-9), 1)}
    write_store(out, emb, rows, meta)
    return read_store(out)


@dataclass
class ERMTrainConfig:
    """Train a reward head or ensemble on an embeddings folder."""

    embeddings: str = ""  # folder written by `alignlab embed`
    head: str = "mlp"  # mlp | gbdt
    objective: str = "bt"  # bt (Bradley–Terry) | cls (classification, chosen = 1)
    members: int = 1  # ensemble size M (1 = a single model)
    split: str = "seed"  # seed | bootstrap | disjoint: what differs between members
    aggregation: str = "mean"  # mean | min | mean_minus_std
    k: float = 1.0  # for mean_minus_std
    test_frac: float = 0.1  # held-out share (of pairs, or of prompts when labels are simulated)
    quality: float = -1.0  # ≥ 0: simulate annotator labels from gold.npy with this quality q
    n_pairs: int = 10000  # simulated pairs
    strategy: str = "random"  # pairing strategy for simulated pairs
    mlp: MLPSettings = field(default_factory=MLPSettings)
    gbdt: GBDTSettings = field(default_factory=GBDTSettings)
    seed: int = 0
    progress: bool = True
    output_dir: str = ""


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
             n_draws: int = 50, seed: int = 0) -> dict[str, dict[str, float]]:
    """Per aggregation: pairwise accuracy on `pairs`; with gold on `rows`, Spearman and best-of-N."""
    out: dict[str, dict[str, float]] = {}
    emb = np.asarray(store.emb)
    members = ens.member_scores(emb)
    names = list(aggregations) + ([f"member_{i}" for i in range(members.shape[0])] if members.shape[0] > 1 else [])
    for name in names:
        s = members[int(name.split("_")[1])] if name.startswith("member_") else aggregate(members, name, ens.k)
        m: dict[str, float] = {}
        if pairs is not None:
            m["pair_acc"] = pairwise_accuracy(s[pairs.left], s[pairs.right], pairs.label)
        if store.gold is not None and rows is not None and len(rows):
            try:
                proxy, gold = pool_matrix(s[rows], store.groups[rows]), pool_matrix(store.gold[rows], store.groups[rows])
            except DataError:
                proxy = gold = None
            if proxy is not None and proxy.shape[1] >= 2:
                m["spearman"] = spearman_per_prompt(proxy, gold)[0]
                curve = best_of_n(proxy, gold, n_draws=n_draws, seed=seed)
                m[f"bon@{curve.ns[-1]}"] = curve.mean[-1]
                m["_curve"] = curve  # type: ignore[assignment]
        out[name] = m
    return out


def _summary(res: dict[str, dict]) -> dict[str, float]:
    flat = {}
    for agg, m in res.items():
        for k, v in m.items():
            if not k.startswith("_"):
                flat[f"{agg}/{k}"] = round(float(v), 4)
    members = [m.get("pair_acc") for a, m in res.items() if a.startswith("member_") and "pair_acc" in m]
    if members:
        flat["members_mean/pair_acc"] = round(float(np.mean(members)), 4)
    return flat


def run_train(cfg: ERMTrainConfig) -> RunResult:
    """Train on cfg.embeddings, evaluate on a held-out split, save the ensemble under RUN/model."""
    store = read_store(cfg.embeddings) if cfg.embeddings else None
    if store is None:
        raise ConfigError("embeddings: give the folder written by `alignlab embed` (embeddings=DIR)")
    run = RunDir(cfg.output_dir or default_run_dir("erm"))
    run.save_config(cfg)
    rng = np.random.default_rng(cfg.seed)
    test_rows = None
    if cfg.quality >= 0:
        if store.gold is None:
            raise DataError(f"{store.path}: quality={cfg.quality} simulates labels but there is no gold.npy")
        prompts = np.unique(store.groups)
        test_prompts = rng.choice(prompts, max(1, int(round(cfg.test_frac * len(prompts)))), replace=False)
        is_test = np.isin(store.groups, test_prompts)
        train_rows, test_rows = np.flatnonzero(~is_test), np.flatnonzero(is_test)
        if len(train_rows) == 0 or len(test_rows) == 0:
            raise DataError(f"test_frac={cfg.test_frac} leaves an empty train or test split of prompts")
        sim = simulate_preferences(np.asarray(store.emb)[train_rows], store.gold[train_rows], store.groups[train_rows],
                                   cfg.n_pairs, cfg.quality, cfg.strategy, seed=cfg.seed)
        train = PairData(store.emb, train_rows[sim.left], train_rows[sim.right], sim.label)
        test = gold_pairs(store, test_rows, seed=cfg.seed + 7)
    else:
        if store.pairs is None:
            raise DataError(f"{store.path}: no pairs.npz; give chosen/rejected data or quality=Q with gold rewards")
        train, test = store.pairs.split(cfg.test_frac, seed=cfg.seed)
    ens = train_ensemble(train, cfg.members, cfg.head, cfg.objective, cfg.split, cfg.aggregation, cfg.k,
                         mlp=cfg.mlp, gbdt=cfg.gbdt, progress=cfg.progress)
    model_dir = ens.save(run.path / "model")
    res = evaluate(ens, store, test, test_rows, seed=cfg.seed)
    metrics = {"train_pairs": len(train), "test_pairs": len(test) if test is not None else 0, **_summary(res)}
    run.log(metrics)
    (run.path / "results.json").write_text(json.dumps(metrics, indent=1))
    curves = {a: m["_curve"] for a, m in res.items() if "_curve" in m and not a.startswith("member_")}
    if curves:
        plot_bon(curves, run.path / "best_of_n.png")
    _print(res, f"erm train: {cfg.members} × {cfg.head} ({cfg.objective}) — held-out results")
    return RunResult(run.path, metrics, model_dir)


def _print(res: dict[str, dict], title: str) -> None:
    rows = [{"scorer": a, **{k: v for k, v in m.items() if not k.startswith("_")}} for a, m in res.items()]
    print_table(title, rows)


def run_eval(model: str, embeddings: str, aggregation: str | None = None, plot: str | None = None) -> dict:
    """Evaluate a saved ensemble on an embeddings folder (its pairs and/or gold-scored pools)."""
    ens = RewardEnsemble.load(model)
    store = read_store(embeddings)
    if store.pairs is None and store.gold is None:
        raise DataError(f"{embeddings}: nothing to evaluate against (no pairs.npz and no gold.npy)")
    rows = np.arange(store.emb.shape[0]) if store.gold is not None else None
    pairs = store.pairs if store.pairs is not None else gold_pairs(store, rows)
    res = evaluate(ens, store, pairs, rows, (aggregation,) if aggregation else AGGREGATIONS)
    _print(res, f"erm eval: {model} on {embeddings}")
    curves = {a: m["_curve"] for a, m in res.items() if "_curve" in m and not a.startswith("member_")}
    if plot and curves:
        plot_bon(curves, plot)
    return _summary(res)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("embed", help="Embed (prompt, response) rows once with a frozen model (cached)")
    p.add_argument("--model", required=True, help="testbed:<size>, real:smollm2, minilm, or a model folder")
    p.add_argument("--data", required=True, help="JSONL: {prompt,response[,gold]} or {[prompt,]chosen,rejected}")
    p.add_argument("--out", required=True, help="output embeddings folder")
    p.add_argument("--pooling", default="auto", choices=["auto", "last", "mean"])
    p.add_argument("--template", default="concat", choices=["concat", "chat", "response"],
                   help="concat: prompt + response; chat: chat template; response: the response alone")
    p.add_argument("--max-length", type=int, default=512)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--limit", type=int, default=0, help="embed only the first N records")
    p.add_argument("--cache-dir", help="embedding cache (default <alignlab cache>/embeddings)")
    p.add_argument("--no-progress", action="store_true")

    def do_embed(a: argparse.Namespace) -> int:
        st = embed_file(a.model, a.data, a.out, EmbedSettings(pooling=a.pooling, template=a.template,
                        max_length=a.max_length, batch_size=a.batch_size), a.cache_dir, a.limit, not a.no_progress)
        print(f"{st.emb.shape[0]} embeddings of dim {st.emb.shape[1]} → {st.path} "
              f"({st.meta.get('rows_per_s')} rows/s; pairs: {0 if st.pairs is None else len(st.pairs)})")
        return 0

    p.set_defaults(func=do_embed)

    e = sub.add_parser("erm", help="Embedding reward models: train heads/ensembles, evaluate them")
    esub = e.add_subparsers(dest="erm_command", metavar="{train,eval}")
    t = esub.add_parser("train", help="Train an MLP/GBDT head or ensemble on an embeddings folder")
    add_recipe_args(t)
    t.set_defaults(func=lambda a: print(run_train(config_from_args(ERMTrainConfig, a)).metrics) or 0)
    v = esub.add_parser("eval", help="Pairwise accuracy / Spearman / best-of-N of a saved ensemble")
    v.add_argument("--model", required=True, help="RUN/model folder written by `erm train`")
    v.add_argument("--embeddings", required=True, help="embeddings folder to evaluate on")
    v.add_argument("--aggregation", choices=AGGREGATIONS)
    v.add_argument("--plot", help="write the best-of-N plot here (PNG)")
    v.set_defaults(func=lambda a: print(run_eval(a.model, a.embeddings, a.aggregation, a.plot)) or 0)
    e.set_defaults(func=lambda a: e.print_help() or 2)
