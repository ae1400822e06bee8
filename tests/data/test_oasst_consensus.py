"""Ranked pairs (Tideman) consensus on textbook elections, including ones whose majorities form cycles."""

from __future__ import annotations

import pytest

from alignlab.data.oasst import consensus_ranks, pairwise_wins, ranked_pairs


def ballots(*groups: tuple[int, str]) -> list[list[str]]:
    """Expand (count, 'ABC') groups into one ranking per voter."""
    return [list(order) for count, order in groups for _ in range(count)]


def test_three_way_cycle_is_broken_at_its_weakest_majority():
    # A>B 11:5, B>C 12:4, C>A 9:7 — a Condorcet cycle; the weakest link C>A is not locked
    votes = ballots((7, "ABC"), (5, "BCA"), (4, "CAB"))
    _, wins = pairwise_wins(votes)
    assert (wins[("A", "B")], wins[("B", "C")], wins[("C", "A")]) == (11, 12, 9)
    assert ranked_pairs(votes) == ["A", "B", "C"]


def test_the_cycle_is_broken_by_strength_not_by_order_seen():
    # A>B 9:7 is the weakest majority, and the first one met: it is the one left unlocked
    votes = ballots((4, "ABC"), (7, "BCA"), (5, "CAB"))
    assert ranked_pairs(votes) == ["B", "C", "A"]


def test_wikipedia_five_candidates_two_cycles():
    # the 45-voter example of the Schulze-method article; ranked pairs gives A > C > E > B > D
    votes = ballots(
        (5, "ACBED"),
        (5, "ADECB"),
        (8, "BEDAC"),
        (3, "CABED"),
        (7, "CAEBD"),
        (2, "CBADE"),
        (7, "DCEBA"),
        (8, "EBADC"),
    )
    assert ranked_pairs(votes) == list("ACEBD")


def test_tennessee_capital_with_weights():
    cities = {
        42: ["Memphis", "Nashville", "Chattanooga", "Knoxville"],
        26: ["Nashville", "Chattanooga", "Knoxville", "Memphis"],
        15: ["Chattanooga", "Knoxville", "Nashville", "Memphis"],
        17: ["Knoxville", "Chattanooga", "Nashville", "Memphis"],
    }
    order = ranked_pairs(list(cities.values()), weights=list(cities))
    assert order == ["Nashville", "Chattanooga", "Knoxville", "Memphis"]
    assert consensus_ranks(list(cities.values()), list(cities))["Memphis"] == 3


def test_annotators_ranking_subsets_of_siblings():
    # three annotators, each ranking only some replies (message ids), best first
    rankings = [["m2", "m1"], ["m2", "m3", "m1"], ["m3", "m1"]]
    assert ranked_pairs(rankings) == ["m2", "m3", "m1"]
    assert ranked_pairs([["x", "y", "z"]]) == ["x", "y", "z"]
    assert ranked_pairs([["a", "b"], ["b", "a"]]) == ["a", "b"]  # a tie goes to the first seen
    assert ranked_pairs([]) == []


def test_bad_input():
    with pytest.raises(ValueError, match="twice"):
        ranked_pairs([["a", "b", "a"]])
    with pytest.raises(ValueError, match="weights"):
        ranked_pairs([["a", "b"]], weights=[1, 2])
