"""Demo stage: embedding reward models — single MLP, single GBDT and an MLP ensemble from noisy labels.

The base student samples K reviews per prompt; the gold sentiment reward scores them; a
simulated annotator of quality q = 1 (about 3 in 4 labels agree with gold) labels pairs of
training prompts; heads train on frozen student embeddings; best-of-N on held-out prompts
says how much gold reward each reward model buys.

Embedding choice: on the testbed the SPEC default (last token, last layer) carries almost no
sentiment (the LM's last state predicts the next word, not the review's tone; per-prompt
Spearman ≈ 0.05), so the stage embeds by mean-pooling hidden layer 1 and shows the default's
result as its own row.
"""

from __future__ import annotations

import numpy as np

from alignlab.demo_stages import DemoContext, StageResult
from alignlab.embedding_rm.annotate import simulate_preferences
from alignlab.embedding_rm.data import PairData
from alignlab.embedding_rm.embed import EmbedSettings, Encoder, embed_pairs
from alignlab.embedding_rm.ensemble import AGGREGATION_LABELS, train_ensemble
from alignlab.embedding_rm.evaluation import pool_metrics
from alignlab.embedding_rm.gbdt import GBDTSettings
from alignlab.embedding_rm.heads import MLPSettings
from alignlab.embedding_rm.pools import Pool, sample_pool
from alignlab.eval.best_of_n import BoNCurve, plot_bon
from alignlab.models import load_model
from alignlab.testbed.lexicon import sentiment_reward

QUALITY = 1.0


def _train_pairs(emb: np.ndarray, pool: Pool, train_rows: np.ndarray, n_pairs: int, seed: int) -> PairData:
    sim = simulate_preferences(emb[train_rows], pool.gold[train_rows], pool.groups[train_rows], n_pairs,
                               QUALITY, seed=seed)
    return PairData(emb, train_rows[sim.left], train_rows[sim.right], sim.label)


def _measure(score: np.ndarray, pool: Pool, test_rows: np.ndarray, k: int, seed: int) -> tuple[dict, BoNCurve]:
    proxy, gold = score[test_rows].reshape(-1, k), pool.gold[test_rows].reshape(-1, k)
    rng = np.random.default_rng(seed)
    a, b = rng.integers(0, k, (2, 4000))
    return pool_metrics(proxy, gold, (rng.integers(0, proxy.shape[0], 4000), a, b), n_draws=30, seed=seed)


def run(ctx: DemoContext) -> StageResult:
    stage_dir = ctx.out_dir / "embedding_rm"
    stage_dir.mkdir(parents=True, exist_ok=True)
    n_train, n_test, k = (16, 8, 8) if ctx.quick else (128, 32, 32)
    n_pairs, members = (600, 3) if ctx.quick else (10000, 4)
    model, tok = load_model(ctx.base_model, trainable=False)
    prompts = ctx.world.review_prompts(n_train + n_test, seed=ctx.seed)
    pool = sample_pool(model, tok, prompts, k, sentiment_reward, max_new_tokens=12 if ctx.quick else 16, seed=ctx.seed)
    train_rows, test_rows = np.flatnonzero(pool.groups < n_train), np.flatnonzero(pool.groups >= n_train)
    cache = stage_dir / "cache"
    emb = np.asarray(embed_pairs(Encoder(model, tok, pooling="mean"), pool.prompts, pool.responses,
                                 EmbedSettings(layer=1, normalize=False), cache, progress=False))
    data = _train_pairs(emb, pool, train_rows, n_pairs, ctx.seed)
    mlp = MLPSettings(hidden=[64, 32], epochs=5, seed=ctx.seed) if ctx.quick else MLPSettings(seed=ctx.seed)
    gbdt = GBDTSettings(max_iter=40 if ctx.quick else 150, seed=ctx.seed)
    scorers = {
        "single MLP": train_ensemble(data, 1, "mlp", mlp=mlp, progress=False).score(emb),
        "single GBDT": train_ensemble(data, 1, "gbdt", objective="cls", gbdt=gbdt, progress=False).score(emb),
    }
    ens = train_ensemble(data, members, "mlp", mlp=mlp, progress=False)
    for agg, label in AGGREGATION_LABELS.items():
        scorers[f"{members} MLPs, {label}"] = ens.score(emb, agg)
    rows, curves = [], {}
    if not ctx.quick:  # the SPEC-default embedding, for comparison
        last = np.asarray(embed_pairs(Encoder(model, tok, pooling="last"), pool.prompts, pool.responses,
                                      EmbedSettings(), cache, progress=False))
        s = train_ensemble(_train_pairs(last, pool, train_rows, n_pairs, ctx.seed), 1, "mlp", mlp=mlp,
                           progress=False).score(last)
        m, _ = _measure(s, pool, test_rows, k, ctx.seed)
        rows.append({"stage": "embedding_rm", "method": "single MLP, last-token embedding", **m})
    for name, s in {"gold (oracle)": pool.gold, **scorers}.items():
        m, curves[name] = _measure(s, pool, test_rows, k, ctx.seed)
        rows.append({"stage": "embedding_rm", "method": name, **m})
    fig = plot_bon(curves, stage_dir / "best_of_n.png",
                   title=f"best-of-N on held-out prompts (annotator quality q={QUALITY:g})")
    bon, one = f"bon@{k}", curves["gold (oracle)"].mean[0]
    best = max((r for r in rows if r["method"] in scorers), key=lambda r: r[bon])
    oracle = next(r for r in rows if r["method"] == "gold (oracle)")
    return StageResult(
        "embedding_rm", rows=rows, figures=[fig],
        verdict=f"Best-of-{k} picked by the best learned reward model ({best['method']}) lifts the gold reward "
                f"{one:.2f} → {best[bon]:.2f} (the gold reward itself picks {oracle[bon]:.2f}); it orders "
                f"{best['pair_acc']:.0%} of held-out pairs as gold does.",
        headline=[{"method": f"best-of-{k} with {best['method']}", "measure": "gold reward", "before": one,
                   "after": best[bon], "note": f"best-of-1 → best-of-{k}; oracle {oracle[bon]:.2f}"}],
        notes=[f"Embedding reward models: {len(pool.responses)} student samples ({n_train}+{n_test} prompts × {k}), "
               f"{n_pairs} pairs labelled by a simulated annotator of quality q={QUALITY:g}; heads on mean-pooled "
               f"layer-1 student states. Best-of-N under the gold sentiment reward on held-out prompts; "
               f"best-of-1 = {curves['gold (oracle)'].mean[0]:.3f}."],
    )
