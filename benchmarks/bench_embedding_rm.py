"""Benchmark: an ensemble of 10 MLP heads on 40,000 pairs of 768-d embeddings; embedding throughput.

    .venv/bin/python benchmarks/bench_embedding_rm.py [--pairs 40000] [--dim 768] [--heads 10]
        [--splits seed disjoint] [--threads 0] [--skip-embed]

Heads are the SPEC sizes (D → 1024 → 512 → 1, Adam 1e-3, ≤ 30 epochs, early stopping on
10 % of the pairs, two validation checks per epoch, patience 2). Data: 80,000 distinct
Gaussian embeddings with a nonlinear gold reward; 40,000 pairs labelled by an annotator of
quality q = 1. Prints a table and a JSON line; numbers go to benchmarks/RESULTS_embedding_rm.md.
"""

from __future__ import annotations

import argparse
import json
import os
import time

import numpy as np
import torch

from alignlab.embedding_rm.annotate import annotate
from alignlab.embedding_rm.data import PairData
from alignlab.embedding_rm.ensemble import train_ensemble
from alignlab.embedding_rm.heads import MLPSettings
from alignlab.eval.best_of_n import pairwise_accuracy
from alignlab.progress import print_table
from alignlab.threads import cpu_threads


def synthetic_pairs(n_pairs: int, dim: int, quality: float, seed: int = 0):
    """2·n_pairs distinct embeddings, a nonlinear gold reward, annotator labels; plus a gold-labelled test set."""
    rng = np.random.default_rng(seed)
    emb = rng.standard_normal((2 * n_pairs + 8000, dim), dtype=np.float32)
    w1, w2 = rng.standard_normal(dim) / np.sqrt(dim), rng.standard_normal(dim) / np.sqrt(dim)
    gold = np.tanh(emb @ w1) + 0.5 * (emb @ w2) ** 2
    left, right = np.arange(n_pairs) * 2, np.arange(n_pairs) * 2 + 1
    train = PairData(emb, left, right, annotate(gold[left], gold[right], quality, seed=seed + 1))
    tl, tr = np.arange(2 * n_pairs, 2 * n_pairs + 8000, 2), np.arange(2 * n_pairs + 1, 2 * n_pairs + 8000, 2)
    return emb, gold, train, (tl, tr, (gold[tl] > gold[tr]).astype(np.float32))


def flops_per_epoch(n_rows: int, dim: int, hidden=(1024, 512)) -> float:
    """Forward + backward FLOPs of one pass of n_rows through one head (no input gradient)."""
    h1, h2 = hidden
    fwd = 2 * (dim * h1 + h1 * h2 + h2)
    bwd = 2 * dim * h1 + 4 * (h1 * h2 + h2)  # weight grads everywhere, input grads past layer 1
    return n_rows * (fwd + bwd)


def bench_ensemble(args) -> list[dict]:
    emb, gold, train, (tl, tr, tlab) = synthetic_pairs(args.pairs, args.dim, args.quality)
    rows = []
    for split in args.splits:
        t0 = time.time()
        ens = train_ensemble(train, args.heads, "mlp", split=split,
                             mlp=MLPSettings(threads=args.threads), progress=not args.quiet)
        dt = time.time() - t0
        hist = ens.models[0].history
        epochs = hist[-1]["epoch"] if hist else 0
        rows_per_head = 2 * len(train) * 0.9 / (args.heads if split == "disjoint" else 1)
        gflop = flops_per_epoch(int(rows_per_head), args.dim) * args.heads * epochs / 1e9
        s_single = ens.member_scores(emb[np.concatenate([tl, tr])])
        k = len(tl)
        accs = [pairwise_accuracy(m[:k], m[k:], tlab) for m in s_single]
        agg = ens.score(emb[np.concatenate([tl, tr])], "mean")
        rows.append({"task": f"{args.heads} MLP heads, split={split}", "pairs": len(train), "dim": args.dim,
                     "seconds": round(dt, 1), "epochs": round(epochs, 2),
                     "GFLOP/s": round(gflop / dt, 1), "member_acc": round(float(np.mean(accs)), 4),
                     "ensemble_acc": round(pairwise_accuracy(agg[:k], agg[k:], tlab), 4)})
    return rows


def bench_embedding(args) -> list[dict]:
    from alignlab.embedding_rm.embed import (
        EmbedSettings,
        embed_pairs,
        load_encoder,
        sentence_encoder_path,
    )
    from alignlab.testbed.world import World

    world = World()
    prompts = world.review_prompts(args.embed_rows)
    rng = np.random.default_rng(0)
    words = ["great", "bad", "the", "food", "was", "nice", "room", "i", "would", "come", "back", "."]
    responses = [" " + " ".join(rng.choice(words, int(rng.integers(4, 16)))) for _ in prompts]
    rows = []
    models = [("testbed:tiny", 64), ("testbed:student", 64)]
    if sentence_encoder_path("minilm") is not None:
        models.append(("minilm", 64))
    for name, bs in models:
        enc = load_encoder(name)
        embed_pairs(enc, prompts[:bs], responses[:bs], EmbedSettings(batch_size=bs), progress=False)  # warm-up
        t0 = time.time()
        embed_pairs(enc, prompts, responses, EmbedSettings(batch_size=bs), progress=False)
        dt = time.time() - t0
        rows.append({"task": f"embed with {name} ({enc.pooling} pooling, dim {enc.dim})",
                     "responses": len(prompts), "seconds": round(dt, 2),
                     "responses/s": round(len(prompts) / dt, 1)})
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--pairs", type=int, default=40_000)
    ap.add_argument("--dim", type=int, default=768)
    ap.add_argument("--heads", type=int, default=10)
    ap.add_argument("--quality", type=float, default=1.0)
    ap.add_argument("--splits", nargs="+", default=["seed", "disjoint"], choices=["seed", "bootstrap", "disjoint"])
    ap.add_argument("--threads", type=int, default=0, help="CPU threads (0 = torch default)")
    ap.add_argument("--embed-rows", type=int, default=2048)
    ap.add_argument("--skip-embed", action="store_true")
    ap.add_argument("--skip-ensemble", action="store_true")
    ap.add_argument("--quiet", action="store_true")
    args = ap.parse_args()
    info = {"cpus": os.cpu_count(), "torch_threads": torch.get_num_threads(), "torch": torch.__version__,
            "loadavg_before": [round(x, 2) for x in os.getloadavg()]}
    rows = []
    if not args.skip_ensemble:
        rows += bench_ensemble(args)
    if not args.skip_embed:
        with cpu_threads(args.threads):
            rows += bench_embedding(args)
    info["loadavg_after"] = [round(x, 2) for x in os.getloadavg()]
    print_table("embedding reward models — benchmark", rows)
    print(json.dumps({"machine": info, "rows": rows}))


if __name__ == "__main__":
    main()
