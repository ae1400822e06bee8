"""Merge several annotators' orderings of sibling replies into one order by ranked pairs (Tideman)."""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from typing import TypeVar

C = TypeVar("C", bound=Hashable)


def pairwise_wins(
    rankings: Sequence[Sequence[C]], weights: Sequence[float] | None = None
) -> tuple[list[C], dict[tuple[C, C], float]]:
    """Candidates (in first-seen order) and wins[(a, b)]: weight of rankings placing a above b.

    A ranking may leave candidates out; it then says nothing about them.
    """
    if weights is not None and len(weights) != len(rankings):
        raise ValueError(f"{len(weights)} weights for {len(rankings)} rankings")
    candidates: list[C] = []
    seen: set[C] = set()
    wins: dict[tuple[C, C], float] = {}
    for r, ranking in enumerate(rankings):
        if len(set(ranking)) != len(ranking):
            raise ValueError(f"ranking {r} lists a candidate twice: {list(ranking)}")
        weight = 1.0 if weights is None else float(weights[r])
        for i, a in enumerate(ranking):
            if a not in seen:
                seen.add(a)
                candidates.append(a)
            for b in ranking[i + 1 :]:
                wins[(a, b)] = wins.get((a, b), 0.0) + weight
    return candidates, wins


def _reaches(edges: dict[C, set[C]], start: C, goal: C) -> bool:
    """Whether `goal` can be reached from `start` along locked edges."""
    stack, visited = [start], {start}
    while stack:
        node = stack.pop()
        if node == goal:
            return True
        for nxt in edges[node] - visited:
            visited.add(nxt)
            stack.append(nxt)
    return False


def ranked_pairs(
    rankings: Sequence[Sequence[C]], weights: Sequence[float] | None = None
) -> list[C]:
    """One consensus order, best first, of everything the rankings mention (each given best first).

    Tally head-to-head wins; sort the pairwise majorities by strength (winning votes, then the
    smaller opposition); lock each unless it closes a cycle; read the order off the locked graph.
    Ties the locked graph leaves open go to the candidate seen first.
    """
    candidates, wins = pairwise_wins(rankings, weights)
    position = {c: i for i, c in enumerate(candidates)}
    majorities = []
    for a in candidates:
        for b in candidates:
            for_a, for_b = wins.get((a, b), 0.0), wins.get((b, a), 0.0)
            if for_a > for_b:
                majorities.append((-for_a, for_b, position[a], position[b], a, b))
    majorities.sort(key=lambda item: item[:4])
    locked: dict[C, set[C]] = {c: set() for c in candidates}
    for *_, winner, loser in majorities:
        if not _reaches(locked, loser, winner):
            locked[winner].add(loser)
    order: list[C] = []
    remaining = list(candidates)
    while remaining:
        beaten = {loser for c in remaining for loser in locked[c]}
        source = next(c for c in remaining if c not in beaten)
        order.append(source)
        remaining.remove(source)
    return order


def consensus_ranks(
    rankings: Sequence[Sequence[C]], weights: Sequence[float] | None = None
) -> dict[C, int]:
    """The ranked-pairs order as OpenAssistant ranks: {candidate: 0 for the best, 1, ...}."""
    return {c: rank for rank, c in enumerate(ranked_pairs(rankings, weights))}
