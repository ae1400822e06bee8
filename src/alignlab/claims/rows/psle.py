"""Row 7 — PSLE, principle-guided self-labelling: sampling with a principle and keeping the
better of (plain, principled) samples as ranking pairs + reward-weighted SFT beats the usual
baselines given the same number of samples, and the principle is what makes it work.

Per seed (same query pool, same held-out prompts, same optimiser steps and sampling seed):
- PSLE with the principle (the `psle` recipe);
- ablation: PSLE with a neutral document of the same form in place of the principle;
- SFT on the best of two plain base-model samples per query (the `sft` recipe);
- DPO on (best ≻ worst) of the same two samples (the `prefs` recipe);
every method uses iterations × queries_per_iteration × 2 samples. Measured: the gold reward of
samples for held-out prompts; also the principle's own effect on the base model (with − without)."""

from __future__ import annotations

import random
from dataclasses import dataclass

from alignlab.claims.row import ClaimRow, ClaimTest, RowContext, SeedResult
from alignlab.claims.rows import common

QUERIES, REWARD = "testbed:reviews", "gold:sentiment"  # resolver names (v2: instructed reviews)


@dataclass(frozen=True)
class Sizes:
    iterations: int
    queries_per_iteration: int
    n_queries: int
    n_eval: int
    epochs: int
    batch: int
    new_tokens: int


SIZES = {True: Sizes(2, 8, 64, 8, 1, 8, 8), False: Sizes(12, 64, 512, 64, 2, 16, 16)}


def principle() -> str:
    """The world's instruction header 'write a positive review', placed before the query."""
    from alignlab.resolve import principle as resolve_principle

    return resolve_principle("testbed:positive")


def neutral_principle(seed: int) -> str:
    """The ablation: the same header form without content ('write a review')."""
    from alignlab.resolve import principle as resolve_principle

    return resolve_principle("testbed:none")


def _psle(ctx: RowContext, seed: int, text: str, name: str, s: Sizes) -> str:
    from alignlab.config import ModelSettings, TrainSettings
    from alignlab.generation import SamplingSettings
    from alignlab.recipes import psle

    res = psle.run(psle.PSLEConfig(
        model=ModelSettings(name_or_path=ctx.models["student"]), principle=text, queries=QUERIES,
        reward=REWARD, train=TrainSettings(lr=3e-4, batch_size=s.batch, save_every=0, seed=seed, progress=False),
        n_queries=s.n_queries, eval_queries=s.n_eval, iterations=s.iterations,
        queries_per_iteration=s.queries_per_iteration, epochs=s.epochs,
        generation=SamplingSettings(max_new_tokens=s.new_tokens, batch_size=128),
        output_dir=str(ctx.seed_dir(seed) / name)))
    return str(res.model_dir)


def _baselines(ctx: RowContext, seed: int, s: Sizes) -> dict[str, str]:
    """SFT-on-best and DPO from two plain base samples per query (the same sample budget)."""
    from alignlab.config import ModelSettings, TrainSettings
    from alignlab.method_settings import PreferenceLossSettings
    from alignlab.recipes import prefs, sft
    from alignlab.resolve import prompts

    root = ctx.seed_dir(seed)
    pool = [str(p) for p in prompts(QUERIES, s.n_queries, seed=seed)]
    rng = random.Random(seed)
    queries = [rng.choice(pool) for _ in range(s.iterations * s.queries_per_iteration)]
    model, tok = common.load(ctx.models["student"])
    a = common.sample_texts(model, tok, queries, s.new_tokens, seed)
    b = common.sample_texts(model, tok, queries, s.new_tokens, seed + 1)
    best, pairs = [], []
    for q, x, y in zip(queries, a, b):
        gx, gy = common.gold([x])[0], common.gold([y])[0]
        hi, lo = (x, y) if gx >= gy else (y, x)
        best.append({"prompt": q, "response": hi})
        if gx != gy and hi.strip() and lo.strip():
            pairs.append({"prompt": q, "chosen": hi, "rejected": lo})
    steps = max(1, s.epochs * len(queries) // s.batch)
    train = TrainSettings(lr=3e-4, batch_size=s.batch, max_steps=steps, epochs=100, save_every=0, seed=seed,
                          progress=False)
    start = ModelSettings(name_or_path=ctx.models["student"])
    out = {"sft_best": str(sft.run(sft.SFTConfig(model=start, train=train, max_length=128, output_dir=str(root / "sft_best"),
                                                 data=str(common.write_jsonl(root / "best.jsonl", best)))).model_dir)}
    out["dpo"] = str(prefs.run(prefs.PrefsConfig(
        model=start, preference=PreferenceLossSettings(loss="dpo", beta=0.1), train=train, reference="copy",
        data=str(common.write_jsonl(root / "pairs.jsonl", pairs)), eval_fraction=0.0, max_length=128,
        max_prompt_length=64, output_dir=str(root / "dpo"))).model_dir)
    return out


def measure(ctx: RowContext, seed: int) -> SeedResult:
    from alignlab.resolve import prompt_split

    s = SIZES[ctx.quick]
    models = {"base": ctx.models["student"],
              "psle": _psle(ctx, seed, principle(), "psle", s),
              "psle_neutral": _psle(ctx, seed, neutral_principle(seed), "psle_neutral", s),
              **_baselines(ctx, seed, s)}
    _, held = prompt_split(QUERIES, 1, s.n_eval, seed, "claims.psle")
    held = [str(p) for p in held]
    gold = {}
    for name, path in models.items():
        model, tok = common.load(path)
        gold[name] = common.mean(common.gold(common.sample_texts(model, tok, held, s.new_tokens, seed)))
    base, tok = common.load(ctx.models["student"])
    with_p = common.mean(common.gold(common.sample_texts(base, tok, [principle() + q for q in held], s.new_tokens, seed)))
    numbers = {f"gold_{k}": v for k, v in gold.items()}
    numbers.update({"psle_minus_sft_best": gold["psle"] - gold["sft_best"], "psle_minus_dpo": gold["psle"] - gold["dpo"],
                    "psle_minus_neutral_principle": gold["psle"] - gold["psle_neutral"],
                    "principle_effect_base": with_p - gold["base"]})
    return SeedResult(numbers)


ROW = ClaimRow(
    key="psle", paper="PSLE: principle-guided self-labelling (SPEC §6)",
    claim="PSLE beats SFT-on-best and DPO at equal samples, and the principle matters (ablation)",
    tests=(ClaimTest("psle_minus_sft_best", "greater", "PSLE − SFT-on-best gold"),
           ClaimTest("psle_minus_dpo", "greater", "PSLE − DPO gold"),
           ClaimTest("psle_minus_neutral_principle", "greater", "PSLE − PSLE with a neutral principle")),
    measure=measure,
    extra_keys=("principle_effect_base", "gold_base", "gold_psle", "gold_psle_neutral", "gold_sft_best", "gold_dpo"),
    setup="base student, review prompts, gold sentiment reward; principle: the header 'write a positive review' "
          "(ablation: the empty header); 12 iterations × 64 queries (quick 2 × 8), 2 epochs, "
          "batch 16, lr 3e-4, 16 new tokens; baselines trained for the same steps on the same 2 samples per query; "
          "64 held-out prompts (quick 8)",
)
