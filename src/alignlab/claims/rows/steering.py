"""Row 5 — steering limits (e.g. Tan et al., 2024, "Analyzing the generalization and
reliability of steering vectors"; Im & Li, 2025): a steering vector's effect weakens as the
context grows more complex.

Per seed: a CAA vector trained on seeded sentiment contrast pairs, applied at one layer with a
fixed coefficient, on the world's context levels for the same subjects (plain review prompt, an
instruction header, the instruction plus 1 or 3 competing passages, a two-turn chat whose second
request refers to the first). Shift = mean gold reward steered − unsteered (same sampling seed).
Tests: shift(level) − shift(plain) < 0 for
each harder condition. Where it breaks: the conditions whose shift interval no longer
excludes 0."""

from __future__ import annotations

import math
from dataclasses import dataclass

from alignlab.claims.row import ClaimRow, ClaimTest, RowContext, SeedResult
from alignlab.claims.rows import common
from alignlab.claims.stats import Interval

BASE, HARDER = "plain", ("instructed", "distracted_1", "distracted_3", "multi_turn")
LAYER, COEFFICIENT = 2, 8.0
PAIRS, CONTEXTS = "testbed:sentiment", "testbed:contexts"  # resolver names: the vector's pairs, the context levels


@dataclass(frozen=True)
class Sizes:
    pairs: int
    prompts: int
    new_tokens: int


SIZES = {True: Sizes(pairs=32, prompts=8, new_tokens=12), False: Sizes(pairs=64, prompts=96, new_tokens=24)}


def measure(ctx: RowContext, seed: int) -> SeedResult:
    from alignlab.interventions import limits, steering
    from alignlab.interventions.hooks import num_layers
    from alignlab.resolve import context_prompts, contrast_pairs

    size = SIZES[ctx.quick]
    model, tok = common.load(ctx.models["student"])
    layer = min(LAYER, num_layers(model) - 1)
    vec = steering.train_steering_vector(model, tok, contrast_pairs(PAIRS, size.pairs, seed))
    levels = context_prompts(CONTEXTS, size.prompts, seed=3_000 + seed)
    conds = [limits.Condition(name, list(ps)) for name, ps in levels.items()]
    ev = limits.generation_evaluator(model, tok, lambda: vec.apply(model, COEFFICIENT, layer),
                                     lambda t: common.gold([t])[0], size.new_tokens, seed=seed)
    return study_result({r["condition"]: r for r in limits.limits_study(conds, ev, tok)}, seed)


def study_result(rows: dict[str, dict], seed: int, unsteered: bool = False) -> SeedResult:
    """One seed of a limits study: the shift (and, if asked, the unsteered score) and prompt
    tokens of every context level, each harder level's drop against plain, shift vs length."""
    numbers = {}
    for name, r in rows.items():
        numbers[f"shift_{name}"] = r["shift"]
        if unsteered:
            numbers[f"unsteered_{name}"] = r["unsteered"]
        numbers[f"tokens_{name}"] = r["prompt_tokens"]
    for name in HARDER:
        numbers[f"drop_{name}"] = rows[name]["shift"] - rows[BASE]["shift"]
    order = sorted(rows, key=lambda n: rows[n]["prompt_tokens"])
    curve = ([rows[n]["prompt_tokens"] for n in order], [rows[n]["shift"] for n in order])
    return SeedResult(numbers, {f"seed {seed}": curve}, note="levels by prompt length: " + ", ".join(order))


def summary(iv: dict[str, Interval]) -> str:
    """Where steering stops moving the reward: conditions whose shift interval does not exclude 0."""
    names = [n for n in (BASE, *HARDER) if f"shift_{n}" in iv]
    if not names or any(math.isnan(iv[f"shift_{n}"].lo) for n in names):
        return ""  # no intervals (one seed): no reading
    broken = [n for n in names if not iv[f"shift_{n}"].lo > 0]
    if not broken:
        return "steering still significant (shift > 0) in every condition"
    return ("steering no longer significant in: " + ", ".join(
        f"{n} (~{iv[f'tokens_{n}'].mean:.0f} tokens)" for n in broken if f"tokens_{n}" in iv))


ROW = ClaimRow(
    key="steering", paper="Steering-vector limits (Tan et al., 2024)",
    claim="steering weakens with context complexity (and breaks somewhere)",
    tests=tuple(ClaimTest(f"drop_{n}", "less", f"shift {n} − plain") for n in HARDER),
    measure=measure, summary=summary, curve_axes=("prompt tokens (condition)", "reward shift steered − unsteered"),
    extra_keys=tuple(f"shift_{n}" for n in (BASE, *HARDER)) + tuple(f"tokens_{n}" for n in (BASE, *HARDER)),
    setup=f"base student; CAA vector from 64 seeded sentiment pairs (quick 32), layer {LAYER}, c = +{COEFFICIENT:g}; "
          "96 seeded subjects (quick 8) per context level (plain, one instruction, 1 / 3 competing passages, a two-turn chat), 24 new tokens (quick 12), same sampling seed on and off",
)
