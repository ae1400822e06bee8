"""Case study: do conservative reward-model ensembles beat a single model at large N under noisy labels?

    .venv/bin/python benchmarks/erm_case_study.py [--out runs/erm-case-study] [--seeds 2]

On the testbed: the student samples a training pool (160 prompts × 16) and a best-of-N test
pool (64 held-out prompt draws × 128); the gold sentiment reward scores every response; a
simulated annotator of quality q ∈ {10, 1, 0.1} labels 6,000 random same-prompt pairs; heads
train on frozen student embeddings (mean-pooled hidden layer 1; the SPEC-default last-token
embedding is measured once for comparison). Methods: single MLP, single GBDT, 5 MLPs
(seeds) and 5 GBDTs (bootstrap) aggregated by mean, min and mean − 1·std. Best-of-N for
N = 1 … 128 (50 random subsamplings per N). Writes results.json, one plot per quality, and
a markdown table (results.md) for benchmarks/RESULTS_embedding_rm.md.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from alignlab.embedding_rm.annotate import simulate_preferences
from alignlab.embedding_rm.embed import EmbedSettings, Encoder, embed_pairs
from alignlab.embedding_rm.ensemble import compare_scorers, train_ensemble
from alignlab.embedding_rm.evaluation import pool_metrics
from alignlab.embedding_rm.gbdt import GBDTSettings
from alignlab.embedding_rm.heads import MLPSettings
from alignlab.embedding_rm.pools import Pool, sample_pool
from alignlab.eval.best_of_n import plot_bon
from alignlab.models import load_model
from alignlab.progress import console
from alignlab.testbed.build import ensure_testbed
from alignlab.testbed.lexicon import sentiment_reward
from alignlab.testbed.world import World

QUALITIES = (10.0, 1.0, 0.1)


def pools(args) -> tuple[Pool, Pool]:
    model, tok = load_model(str(ensure_testbed("student")), trainable=False)
    world = World()
    train = sample_pool(model, tok, world.review_prompts(args.train_prompts, seed=1), args.train_k,
                        sentiment_reward, max_new_tokens=16, seed=1)
    test = sample_pool(model, tok, world.review_prompts(args.test_prompts, seed=2), args.test_k,
                       sentiment_reward, max_new_tokens=16, seed=2)
    return train, test


def embed(pool: Pool, pooling: str, layer: int, cache: Path) -> np.ndarray:
    model, tok = load_model(str(ensure_testbed("student")), trainable=False)
    return np.asarray(embed_pairs(Encoder(model, tok, pooling=pooling), pool.prompts, pool.responses,
                                  EmbedSettings(layer=layer, normalize=False), cache, progress=False))


def measure(score_test: np.ndarray, test: Pool, k: int, seed: int) -> dict:
    proxy, gold = score_test.reshape(-1, k), test.gold.reshape(-1, k)
    rng = np.random.default_rng(seed)
    pairs = (rng.integers(0, proxy.shape[0], 20000), *rng.integers(0, k, (2, 20000)))
    m, curve = pool_metrics(proxy, gold, pairs, n_draws=50, seed=seed)
    return {"ns": curve.ns, "bon_mean": curve.mean, "bon_std": curve.std,
            "spearman": m["spearman"], "pair_acc": m["pair_acc"]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default="runs/erm-case-study")
    ap.add_argument("--seeds", type=int, default=2, help="repeats (annotation draws and initialisations)")
    ap.add_argument("--pairs", type=int, default=6000)
    ap.add_argument("--members", type=int, default=5)
    ap.add_argument("--train-prompts", type=int, default=160)
    ap.add_argument("--train-k", type=int, default=16)
    ap.add_argument("--test-prompts", type=int, default=64)
    ap.add_argument("--test-k", type=int, default=128)
    ap.add_argument("--threads", type=int, default=1,
                    help="torch CPU threads (1: small models gain little from 2, and lose a lot on a busy machine)")
    args = ap.parse_args()
    import torch

    torch.set_num_threads(args.threads)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    train, test = pools(args)
    console.print(f"sampled {len(train.responses)} + {len(test.responses)} responses in {time.time() - t0:.0f} s")
    emb_tr, emb_te = (embed(p, "mean", 1, out / "cache") for p in (train, test))
    results: dict = {"config": vars(args), "oracle": measure(test.gold, test, args.test_k, 0)}
    # the SPEC-default embedding (last token of the last layer), once, at the best annotation quality
    last_tr, last_te = (embed(p, "last", -1, out / "cache") for p in (train, test))
    sim = simulate_preferences(last_tr, train.gold, train.groups, args.pairs, 10.0, seed=0)
    s = train_ensemble(sim, 1, "mlp", mlp=MLPSettings(threads=1), progress=False).score(last_te)
    results["last_token_single_mlp_q10"] = measure(s, test, args.test_k, 0)
    for q in QUALITIES:
        per_seed = []
        for seed in range(args.seeds):
            data = simulate_preferences(emb_tr, train.gold, train.groups, args.pairs, q, seed=100 * seed + 1)
            scores = compare_scorers(data, emb_te, args.members, MLPSettings(seed=seed, threads=1),
                                     GBDTSettings(seed=seed, threads=1))
            per_seed.append({name: measure(sc, test, args.test_k, seed) for name, sc in scores.items()})
            console.print(f"q={q:g} seed={seed} done at {time.time() - t0:.0f} s")
        results[f"q={q:g}"] = per_seed
        names = list(per_seed[0])
        curves = {"gold (oracle)": results["oracle"]} | {
            n: {"ns": per_seed[0][n]["ns"], "bon_mean": np.mean([r[n]["bon_mean"] for r in per_seed], 0).tolist(),
                "bon_std": np.mean([r[n]["bon_std"] for r in per_seed], 0).tolist()} for n in names
            if n in ("single MLP", "single GBDT") or n.endswith(("mean", "mean−1·std"))}
        from alignlab.eval.best_of_n import BoNCurve

        plot_bon({n: BoNCurve(c["ns"], c["bon_mean"], c["bon_std"]) for n, c in curves.items()},
                 out / f"bon_q{q:g}.png", title=f"best-of-N, testbed student, annotator quality q={q:g}")
    results["seconds"] = round(time.time() - t0, 1)
    (out / "results.json").write_text(json.dumps(results, indent=1))
    (out / "results.md").write_text(markdown(results, args))
    print(markdown(results, args))


def markdown(results: dict, args) -> str:
    """Per quality: BoN at N = 1, 16, 128 (mean over seeds ± std over seeds), Spearman, pair accuracy."""
    k = args.test_k
    ns = [n for n in (1, 8, 32, k) if n in results["oracle"]["ns"]]
    lines = []
    o = results["oracle"]
    lines.append("oracle (gold) best-of-N: " + ", ".join(f"N={n}: {o['bon_mean'][o['ns'].index(n)]:.3f}" for n in ns))
    lt = results["last_token_single_mlp_q10"]
    lines.append(f"SPEC-default last-token embedding, single MLP, q=10: Spearman {lt['spearman']:.3f}, "
                 f"pair acc {lt['pair_acc']:.3f}, BoN@{k} {lt['bon_mean'][-1]:.3f}")
    for q in QUALITIES:
        per_seed = results[f"q={q:g}"]
        lines += ["", f"**q = {q:g}** ({len(per_seed)} seeds; ± = std over seeds)", "",
                  "| method | " + " | ".join(f"BoN@{n}" for n in ns) + " | Spearman | pair acc |",
                  "|---" * (len(ns) + 3) + "|"]
        for name in per_seed[0]:
            cells = []
            for n in ns:
                vals = [r[name]["bon_mean"][r[name]["ns"].index(n)] for r in per_seed]
                cells.append(f"{np.mean(vals):.3f} ± {np.std(vals):.3f}")
            sp = np.mean([r[name]["spearman"] for r in per_seed])
            acc = np.mean([r[name]["pair_acc"] for r in per_seed])
            lines.append(f"| {name} | " + " | ".join(cells) + f" | {sp:.3f} | {acc:.3f} |")
    lines.append(f"\nTotal time {results['seconds']:.0f} s.")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
