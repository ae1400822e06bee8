"""The adversarial curriculum as pure functions: per-skill pass rates, buckets, bucket draws.

A *skill* is one exercise family × parameter (e.g. `add_three`); every round the proposer
writes fresh tests for the skills drawn. The student's pass rate on a skill is a decayed count of
its recent attempts with a Beta(a, a) prior (an unseen skill sits at 0.5). Skills are bucketed by
that rate — bucket 0 holds the lowest rates (hardest) — and buckets are drawn with probability
∝ w_b · exp(d_b / T), d_b = 1 − (b + ½)/B the bucket's difficulty: harder buckets more often,
every non-empty bucket with non-zero probability, uniform as T → ∞.
"""

from __future__ import annotations

import math
import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any


@dataclass
class SkillStats:
    """Decayed pass / attempt counts per skill (checkpointed with the run)."""

    passes: dict[str, float] = field(default_factory=dict)
    attempts: dict[str, float] = field(default_factory=dict)

    def update(self, skill: str, passed: int, total: int, memory: float) -> None:
        """Fold in `passed` of `total` new attempts; older counts are scaled by `memory` (0 = forget)."""
        if total < 0 or not 0 <= passed <= total or not 0.0 <= memory <= 1.0:
            raise ValueError(f"update({skill!r}): need 0 <= passed <= total and memory in [0, 1]")
        self.passes[skill] = memory * self.passes.get(skill, 0.0) + passed
        self.attempts[skill] = memory * self.attempts.get(skill, 0.0) + total

    def rate(self, skill: str, prior: tuple[float, float] = (0.5, 0.5)) -> float:
        """Posterior-mean pass rate (passes + a) / (attempts + a + b)."""
        a, b = prior
        return (self.passes.get(skill, 0.0) + a) / (self.attempts.get(skill, 0.0) + a + b)

    def state_dict(self) -> dict[str, Any]:
        return {"passes": dict(self.passes), "attempts": dict(self.attempts)}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.passes, self.attempts = dict(state["passes"]), dict(state["attempts"])


def bucket_of(rate: float, n_buckets: int) -> int:
    """Bucket index of a pass rate: [0, 1/B) → 0 (hardest) … [(B−1)/B, 1] → B−1."""
    if n_buckets < 1 or not 0.0 <= rate <= 1.0:
        raise ValueError(f"bucket_of: need n_buckets >= 1 and rate in [0, 1], got {n_buckets}, {rate}")
    return min(int(rate * n_buckets), n_buckets - 1)


def bucket_skills(rates: Mapping[str, float], n_buckets: int) -> list[list[str]]:
    """Skills grouped by bucket (each list sorted, so draws do not depend on dict order)."""
    out: list[list[str]] = [[] for _ in range(n_buckets)]
    for skill in sorted(rates):
        out[bucket_of(rates[skill], n_buckets)].append(skill)
    return out


def bucket_probabilities(occupied: Sequence[bool], temperature: float,
                         weights: Sequence[float] | None = None) -> list[float]:
    """P(bucket b) ∝ w_b · exp(d_b / T) over occupied buckets, d_b = 1 − (b + ½)/B; 0 for empty ones.

    `weights` (all > 0) default to 1; they multiply the temperature form, so a hand-set profile
    needs a large T to act alone.
    """
    n = len(occupied)
    if n < 1 or temperature <= 0:
        raise ValueError(f"bucket_probabilities: need >= 1 bucket and temperature > 0, got {n}, {temperature}")
    w = [1.0] * n if weights is None else [float(x) for x in weights]
    if len(w) != n or any(not math.isfinite(x) or x <= 0 for x in w):
        raise ValueError(f"bucket weights must be {n} positive numbers, got {list(w)}")
    if not any(occupied):
        raise ValueError("bucket_probabilities: every bucket is empty")
    difficulty = [1.0 - (b + 0.5) / n for b in range(n)]
    top = max(d / temperature for d, o in zip(difficulty, occupied) if o)
    raw = [wb * math.exp(d / temperature - top) if o else 0.0 for wb, d, o in zip(w, difficulty, occupied)]
    total = sum(raw)
    return [r / total for r in raw]


def draw_skills(buckets: Sequence[Sequence[str]], n: int, probabilities: Sequence[float],
                rng: random.Random) -> list[tuple[str, int]]:
    """n (skill, bucket) draws: a bucket by `probabilities`, then a skill of it not yet drawn this
    round (uniformly; once a bucket is used up, with repeats — each draw gets fresh tests anyway)."""
    if len(buckets) != len(probabilities):
        raise ValueError(f"{len(buckets)} buckets but {len(probabilities)} probabilities")
    for b, (skills, p) in enumerate(zip(buckets, probabilities)):
        if p > 0 and not skills:
            raise ValueError(f"bucket {b} has probability {p} but no skills")
    left = [list(s) for s in buckets]
    out = []
    for _ in range(n):
        b = rng.choices(range(len(buckets)), weights=probabilities)[0]
        if left[b]:
            skill = left[b].pop(rng.randrange(len(left[b])))
        else:
            skill = buckets[b][rng.randrange(len(buckets[b]))]
        out.append((skill, b))
    return out


def curriculum_draw(stats: SkillStats, skills: Sequence[str], n: int, n_buckets: int, temperature: float,
                    rng: random.Random, weights: Sequence[float] | None = None,
                    prior: tuple[float, float] = (0.5, 0.5)) -> tuple[list[tuple[str, int]], dict[str, Any]]:
    """One round's draw from the student's current pass rates, with what it saw: per-bucket skill
    counts, mean rates and draw probabilities."""
    rates = {s: stats.rate(s, prior) for s in skills}
    buckets = bucket_skills(rates, n_buckets)
    probs = bucket_probabilities([bool(b) for b in buckets], temperature, weights)
    drawn = draw_skills(buckets, n, probs, rng)
    info: dict[str, Any] = {}
    for b, members in enumerate(buckets):
        info[f"bucket{b}_skills"] = len(members)
        info[f"bucket{b}_rate"] = sum(rates[s] for s in members) / len(members) if members else None
        info[f"bucket{b}_prob"] = probs[b]
        info[f"bucket{b}_drawn"] = sum(1 for _, bb in drawn if bb == b)
    return drawn, info
