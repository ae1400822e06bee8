"""Preference metrics as plain functions: pairwise accuracy, Kendall τ, Spearman ρ, win rate.

They take plain lists of numbers (scores, ranks, rewards), so they work on any reward
model, implicit reward or gold reward.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

RewardFn = Callable[[Sequence, Sequence[str]], "list[float]"]


def _check_same_length(a: Sequence, b: Sequence, what: str) -> None:
    if len(a) != len(b):
        raise ValueError(f"{what}: lengths differ ({len(a)} vs {len(b)})")
    if not a:
        raise ValueError(f"{what}: no items")


def pairwise_accuracy(chosen: Sequence[float], rejected: Sequence[float], tie: float = 0.5) -> float:
    """Share of pairs where the chosen item scores higher (a tie counts `tie`)."""
    _check_same_length(chosen, rejected, "pairwise_accuracy")
    wins = sum(1.0 if c > r else tie if c == r else 0.0 for c, r in zip(chosen, rejected))
    return wins / len(chosen)


def ranking_accuracy(scores: Sequence[Sequence[float]], ranks: Sequence[Sequence[int]], tie: float = 0.5) -> float:
    """Pairwise accuracy over every ranked pair (rank_i < rank_j) of every ranking example."""
    _check_same_length(scores, ranks, "ranking_accuracy")
    wins = n = 0.0
    for s, r in zip(scores, ranks):
        _check_same_length(s, r, "ranking_accuracy example")
        for i in range(len(r)):
            for j in range(len(r)):
                if r[i] < r[j]:
                    n += 1
                    wins += 1.0 if s[i] > s[j] else tie if s[i] == s[j] else 0.0
    if n == 0:
        raise ValueError("ranking_accuracy: no ranked pairs")
    return wins / n


def kendall_tau(x: Sequence[float], y: Sequence[float]) -> float:
    """Kendall τ-b between two score lists (1 = same order, −1 = reversed); 0 when one is constant."""
    _check_same_length(x, y, "kendall_tau")
    concordant = discordant = ties_x = ties_y = 0
    n = len(x)
    for i in range(n):
        for j in range(i + 1, n):
            dx, dy = x[i] - x[j], y[i] - y[j]
            if dx == 0 and dy == 0:
                continue
            if dx == 0:
                ties_x += 1
            elif dy == 0:
                ties_y += 1
            elif (dx > 0) == (dy > 0):
                concordant += 1
            else:
                discordant += 1
    denom = math.sqrt((concordant + discordant + ties_x) * (concordant + discordant + ties_y))
    return (concordant - discordant) / denom if denom > 0 else 0.0


def mean_kendall_tau(scores: Sequence[Sequence[float]], ranks: Sequence[Sequence[int]]) -> float:
    """Mean over ranking examples of τ between model scores and the true order (rank 0 = best)."""
    _check_same_length(scores, ranks, "mean_kendall_tau")
    taus = [kendall_tau(list(s), [-float(v) for v in r]) for s, r in zip(scores, ranks)]
    return sum(taus) / len(taus)


def _ranks(values: Sequence[float]) -> list[float]:
    order = sorted(range(len(values)), key=lambda i: values[i])
    out = [0.0] * len(values)
    i = 0
    while i < len(order):
        j = i
        while j + 1 < len(order) and values[order[j + 1]] == values[order[i]]:
            j += 1
        for k in range(i, j + 1):
            out[order[k]] = (i + j) / 2.0
        i = j + 1
    return out


def pearson(x: Sequence[float], y: Sequence[float]) -> float:
    """Pearson correlation; 0 when either side is constant."""
    _check_same_length(x, y, "pearson")
    n = len(x)
    mx, my = sum(x) / n, sum(y) / n
    sxy = sum((a - mx) * (b - my) for a, b in zip(x, y))
    sxx = sum((a - mx) ** 2 for a in x)
    syy = sum((b - my) ** 2 for b in y)
    return sxy / math.sqrt(sxx * syy) if sxx > 0 and syy > 0 else 0.0


def spearman(x: Sequence[float], y: Sequence[float]) -> float:
    """Spearman rank correlation (average ranks for ties)."""
    return pearson(_ranks(x), _ranks(y))


def win_rate(a: Sequence[float], b: Sequence[float]) -> float:
    """Share of items where a beats b (ties count ½): e.g. gold rewards of policy vs baseline."""
    return pairwise_accuracy(a, b, tie=0.5)


def win_rate_under(reward_fn: RewardFn, prompts: Sequence, responses_a: Sequence[str], responses_b: Sequence[str]) -> float:
    """Win rate of responses_a over responses_b to the same prompts under `reward_fn(prompts, responses)`."""
    _check_same_length(responses_a, responses_b, "win_rate_under")
    return win_rate(reward_fn(prompts, responses_a), reward_fn(prompts, responses_b))
