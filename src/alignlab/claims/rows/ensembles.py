"""Row 6 — conservative reward-model ensembles (Coste et al., ICLR 2024, "Reward model
ensembles help mitigate overoptimization"): under noisy labels, a conservative ensemble
(worst-case min, or mean − std) picks better best-of-N responses than a single reward model,
the more so at large N.

Per seed: the base student samples a training pool and a held-out best-of-N pool (seeded
prompts and sampling); the gold reward scores both; a simulated annotator of quality q = 1
(about 3 in 4 labels agree with gold) labels random same-prompt training pairs; MLP heads train
on frozen embeddings (mean-pooled hidden layer 1). Measured: the gold reward of the best-of-N
pick at the largest N, ensemble (5 MLPs) − single MLP."""

from __future__ import annotations

from dataclasses import dataclass

from alignlab.claims.row import ClaimRow, ClaimTest, RowContext, SeedResult
from alignlab.claims.rows import common

QUALITY = 1.0
AGGS = {"min": "min", "mean_minus_std": "mean − 1·std", "mean": "mean"}


@dataclass(frozen=True)
class Sizes:
    train_prompts: int
    train_k: int
    test_prompts: int
    test_k: int  # = the largest N
    pairs: int
    members: int
    quick_heads: bool


SIZES = {True: Sizes(16, 8, 8, 16, 600, 3, True), False: Sizes(128, 16, 48, 64, 6000, 5, False)}


def measure(ctx: RowContext, seed: int) -> SeedResult:
    import numpy as np

    from alignlab.embedding_rm.annotate import simulate_preferences
    from alignlab.embedding_rm.embed import EmbedSettings, Encoder, embed_pairs
    from alignlab.embedding_rm.ensemble import train_ensemble
    from alignlab.embedding_rm.heads import MLPSettings
    from alignlab.embedding_rm.pools import sample_pool
    from alignlab.eval.best_of_n import best_of_n
    from alignlab.resolve import prompts

    s = SIZES[ctx.quick]
    model, tok = common.load(ctx.models["student"])

    def reward(t: str) -> float:
        return common.gold([t])[0]

    train = sample_pool(model, tok, [str(p) for p in prompts("testbed:reviews", s.train_prompts, seed=4_000 + seed)],
                        s.train_k, reward, max_new_tokens=16, seed=seed)
    test = sample_pool(model, tok, [str(p) for p in prompts("testbed:reviews", s.test_prompts, seed=5_000 + seed)],
                       s.test_k, reward, max_new_tokens=16, seed=10_000 + seed)
    enc = Encoder(model, tok, pooling="mean")
    cache = ctx.seed_dir(seed) / "embeddings"
    e_train, e_test = (np.asarray(embed_pairs(enc, p.prompts, p.responses, EmbedSettings(layer=1, normalize=False),
                                              cache / name, progress=False)) for name, p in (("train", train), ("test", test)))
    data = simulate_preferences(e_train, train.gold, train.groups, s.pairs, QUALITY, seed=seed)
    mlp = MLPSettings(hidden=[64, 32], epochs=5, seed=seed) if s.quick_heads else MLPSettings(seed=seed)
    single = train_ensemble(data, 1, "mlp", mlp=mlp, progress=False).score(e_test)
    ens = train_ensemble(data, s.members, "mlp", mlp=mlp, progress=False)
    gold_test = test.gold.reshape(-1, s.test_k)

    def bon(score) -> list[float]:
        return best_of_n(np.asarray(score).reshape(-1, s.test_k), gold_test, ns=ns, n_draws=30, seed=seed).mean

    ns = sorted({1, 4, 16, s.test_k} & set(range(1, s.test_k + 1)))
    curves = {"single MLP": bon(single), **{f"{s.members} MLPs {label}": bon(ens.score(e_test, agg))
                                             for agg, label in AGGS.items()}, "gold (oracle)": bon(test.gold)}
    numbers = {f"bon{s.test_k}_{name}": c[-1] for name, c in (("single", curves["single MLP"]),
               *((agg, curves[f"{s.members} MLPs {label}"]) for agg, label in AGGS.items()),
               ("oracle", curves["gold (oracle)"]))}
    for agg in AGGS:
        numbers[f"{agg}_minus_single"] = numbers[f"bon{s.test_k}_{agg}"] - numbers[f"bon{s.test_k}_single"]
    differ = train.gold[data.left] != train.gold[data.right]
    agree = (data.label > 0.5) == (train.gold[data.left] > train.gold[data.right])
    numbers["label_agreement"] = float(agree[differ].mean()) if differ.any() else float("nan")
    return SeedResult(numbers, {f"{name} seed {seed}": (ns, c) for name, c in curves.items()},
                      note=f"best-of-N up to N = {s.test_k}; simulated labels agree with gold on "
                           f"{numbers['label_agreement']:.0%} of pairs")


ROW = ClaimRow(
    key="ensembles", paper="Reward model ensembles (Coste et al., ICLR 2024)",
    claim="conservative ensembles beat a single reward model at large N under label noise",
    tests=(ClaimTest("min_minus_single", "greater", "ensemble min − single, BoN gold at max N"),
           ClaimTest("mean_minus_std_minus_single", "greater", "ensemble mean−std − single, BoN gold at max N")),
    measure=measure, curve_axes=("N (best-of-N)", "gold reward of the pick"),
    extra_keys=("mean_minus_single", "label_agreement"),
    setup=f"base student; train pool 128 prompts × 16, test pool 48 × 64 (quick 16 × 8, 8 × 16); annotator q = {QUALITY:g}; "
          "6,000 pairs (quick 600); 5 MLPs (quick 3) vs one; mean-pooled layer-1 embeddings",
)
