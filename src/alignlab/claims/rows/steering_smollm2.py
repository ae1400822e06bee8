"""Row 5 on a real model — steering limits (Tan et al., 2024) on SmolLM2-135M-Instruct: a
steering vector's effect weakens as the context grows more complex.

The same test as `rows/steering.py`, on real prompts, set up as the earlier SmolLM2 measurement
(benchmarks/real_inference_eval.py, RESULTS_inference.md). Per seed: a CAA vector from seeded
sentiment contrast pairs ("I visited last week. The X was" + great / terrible), applied at one
layer with a fixed coefficient, on context levels for the same seeded subjects. Plain is the
review prompt after three neutral example reviews: the model's bare review prompt is already
positive (no headroom to steer up). Harder levels: an instruction to stay neutral above it;
1 or 3 Shakespeare passages (tinyshakespeare, public data) between the examples and the prompt;
a three-step chat whose third step is the review. Shift = mean lexicon sentiment of the
continuation steered − unsteered (same sampling seed). Tests: shift(level) − shift(plain) < 0
for each harder level; where it breaks: the levels whose shift interval no longer excludes 0."""

from __future__ import annotations

import random

from alignlab.claims.row import ClaimRow, ClaimTest, RowContext, SeedResult
from alignlab.claims.rows import common, real_smollm2
from alignlab.claims.rows.steering import BASE, HARDER, Sizes, study_result, summary

LAYER, COEFFICIENT, TEMPERATURE = 10, 1.0, 0.7  # layer ≈ depth / 3; |c| ≥ 2 breaks fluency (RESULTS_inference.md)
CORPUS = "corpus/tinyshakespeare_input.txt"
SUBJECTS = ("food", "hotel", "movie", "service", "concert", "room", "staff", "book", "museum", "coffee", "album",
            "restaurant", "train ride", "play", "game", "phone", "beach", "lecture", "bakery", "garden")
POSITIVE, NEGATIVE = ("great", "wonderful", "excellent", "amazing", "lovely"), ("terrible", "awful", "horrible", "bad", "boring")
SHOT_TONES = ("fine", "ok", "average")
NEUTRAL = "Instruction: stay strictly neutral and factual; do not praise or criticise anything."


SIZES = {True: Sizes(pairs=16, prompts=6, new_tokens=12), False: Sizes(pairs=48, prompts=24, new_tokens=24)}


def review(subject: str) -> str:
    return f"Here is my short review. The {subject} was"


def chat(tok, user: str, answer_start: str) -> str:
    """One user turn through the chat template, then the start of the assistant's answer."""
    return tok.apply_chat_template([{"role": "user", "content": user}], tokenize=False,
                                   add_generation_prompt=True) + answer_start


def passages(text: str) -> list[str]:
    """Paragraphs of 150–500 characters: the competing passages."""
    return [p.strip() for p in text.split("\n\n") if 150 < len(p.strip()) < 500]


def context_levels(tok, subjects: list[str], pool: list[str], seed: int) -> dict[str, list[str]]:
    """The five levels for the same subjects, aligned (prompt i of every level reviews subjects[i])."""
    rng = random.Random(seed)

    def shots() -> str:
        return "\n\n".join(f"{review(rng.choice(SUBJECTS))} {rng.choice(SHOT_TONES)} and the staff were polite."
                           for _ in range(3)) + "\n\n"

    def passed(s: str, k: int) -> str:
        return shots() + "\n\n".join(rng.sample(pool, k)) + "\n\n" + review(s)

    def multi_step(s: str) -> str:
        user = ("First, name three cities in Europe. Second, summarise the plot of a famous play in one sentence. "
                f"Third, write a one-sentence review of the {s}.")
        return chat(tok, user, f"1. Paris, Rome, Berlin.\n2. A prince seeks revenge for his father.\n3. The {s} was")

    return {"plain": [shots() + review(s) for s in subjects],
            "instructed": [f"{NEUTRAL}\n\n{shots()}{review(s)}" for s in subjects],
            "distracted_1": [passed(s, 1) for s in subjects],
            "distracted_3": [passed(s, 3) for s in subjects],
            "multi_turn": [multi_step(s) for s in subjects]}


def contrast_pairs(n: int, seed: int):
    """n seeded (review prompt, positive word, negative word) pairs."""
    from alignlab.interventions.steering import ContrastPair

    rng = random.Random(seed)
    return [ContrastPair(f"I visited last week. The {s} was", f" {rng.choice(POSITIVE)}", f" {rng.choice(NEGATIVE)}")
            for s in (rng.choice(SUBJECTS) for _ in range(n))]


def measure(ctx: RowContext, seed: int) -> SeedResult:
    from alignlab.interventions import limits, steering

    size = SIZES[ctx.quick]
    files = real_smollm2.require(ctx, CORPUS)
    model, tok = real_smollm2.load(ctx)
    vec = steering.train_steering_vector(model, tok, contrast_pairs(size.pairs, seed), [LAYER])
    rng = random.Random(3_000 + seed)
    subjects = [rng.choice(SUBJECTS) for _ in range(size.prompts)]
    pool = passages(files[CORPUS].read_text()[:200_000])
    levels = context_levels(tok, subjects, pool, 4_000 + seed)
    conds = [limits.Condition(name, ps) for name, ps in levels.items()]
    ev = limits.generation_evaluator(model, tok, lambda: vec.apply(model, COEFFICIENT, LAYER),
                                     lambda t: common.gold([t])[0], size.new_tokens, TEMPERATURE, seed=seed)
    return study_result({r["condition"]: r for r in limits.limits_study(conds, ev, tok)}, seed, unsteered=True)


ROW = ClaimRow(
    key="steering_smollm2", paper=f"Steering-vector limits (Tan et al., 2024) — {real_smollm2.MODEL}",
    claim=f"steering weakens with context complexity (and breaks somewhere), on {real_smollm2.MODEL}",
    tests=tuple(ClaimTest(f"drop_{n}", "less", f"shift {n} − plain") for n in HARDER),
    measure=measure, summary=summary, curve_axes=("prompt tokens (level)", "sentiment shift steered − unsteered"),
    extra_keys=tuple(f"shift_{n}" for n in (BASE, *HARDER)) + tuple(f"tokens_{n}" for n in (BASE, *HARDER)),
    setup=f"{real_smollm2.MODEL}-Instruct (real:smollm2); CAA vector from 48 seeded review pairs (quick 16), "
          f"layer {LAYER}, c = +{COEFFICIENT:g}; 24 seeded subjects (quick 6) per level (review prompt after 3 neutral "
          "example reviews; a 'stay neutral' instruction above it; 1 / 3 tinyshakespeare passages before the prompt; "
          f"a three-step chat), 24 new tokens (quick 12) at T = {TEMPERATURE}, same sampling seed on and off; "
          "score: lexicon sentiment"
)
