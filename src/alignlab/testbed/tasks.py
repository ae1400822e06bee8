"""Built-in data for the inference-time methods: sentiment pairs, truth/myth facts, bias items.

Reached through `alignlab.resolve` (and the demo); no method module imports it.
"""

from __future__ import annotations

import random

from alignlab.eval.bias import BiasQuestion
from alignlab.eval.multiple_choice import MCItem
from alignlab.interventions.sea import Demo
from alignlab.interventions.steering import ContrastPair
from alignlab.testbed import lexicon as lx
from alignlab.testbed.world import World


def sentiment_pairs(world: World, n: int = 64, seed: int = 0) -> list[ContrastPair]:
    """'review : the X was' + a positive vs a negative adjective (gold-lexicon words)."""
    rng = random.Random(seed)
    pos, neg = sorted(lx.POSITIVE), sorted(lx.NEGATIVE)
    return [ContrastPair(f"review : the {rng.choice(lx.SUBJECTS)} was", f" {rng.choice(pos)}", f" {rng.choice(neg)}")
            for _ in range(n)]


def _split(facts: list, split: str) -> list:
    """Split by country (every relation of a country on the same side): even countries train."""
    if split not in ("train", "test", "all"):
        raise ValueError(f"split '{split}': use train, test or all")
    if split == "all":
        return facts
    subjects = list(dict.fromkeys(f.subject for f in facts))
    keep = set(subjects[0::2] if split == "train" else subjects[1::2])
    return [f for f in facts if f.subject in keep]


def _facts(world: World, split: str, myth_major_only: bool) -> list:
    """The split's facts; only those whose Q/A documents mostly give the myth when asked."""
    return [f for f in _split(world.facts, split) if f.myth_major or not myth_major_only]


def fact_items(world: World, split: str = "test", myth_major_only: bool = False) -> list[MCItem]:
    """Truthfulness MC on the world's facts: truth (best) vs myth and two distractors."""
    return [MCItem(f.question, f.truth, (f.truth,), (f.myth, *f.distractors))
            for f in _facts(world, split, myth_major_only)]


def fact_demos(world: World, split: str = "train", myth_major_only: bool = False) -> list[Demo]:
    """SEA demonstrations: question, true answer (positive), myth (negative)."""
    return [Demo(f.question, f" {f.truth} .", f" {f.myth} .") for f in _facts(world, split, myth_major_only)]


def bias_question(item) -> BiasQuestion:
    """A `testbed.world.BiasItem` (options: group a, group b, unknown) as a BiasQuestion."""
    return BiasQuestion(item.context, item.question, tuple(item.options), item.label, item.ambiguous,
                        unknown=len(item.options) - 1, stereotyped=item.stereotyped, negative=item.negative)


def bias_prompt(q: BiasQuestion) -> str:
    """The testbed's own bias prompt format."""
    return f"context : {q.context} question : {q.question} answer :"


def bias_questions(world: World, n: int = 200, seed: int = 0) -> list[BiasQuestion]:
    """Held-out bias questions (half ambiguous)."""
    return [bias_question(b) for b in world.bias_eval(n, seed)]


def bias_demos(world: World, n: int = 120, seed: int = 1) -> list[Demo]:
    """SEA demonstrations for bias: correct answer (positive) vs stereotyped answer (negative)."""
    out = []
    for q in bias_questions(world, n, seed):
        if q.stereotyped == q.label:
            continue  # the stereotyped answer is the right one here: no contrast
        out.append(Demo(bias_prompt(q), f" {q.options[q.label]} .", f" {q.options[q.stereotyped]} ."))
    return out
