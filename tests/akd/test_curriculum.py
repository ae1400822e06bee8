"""The adversarial curriculum: buckets by pass rate, harder buckets drawn more, every occupied
bucket possible, seeded draws repeat; skill statistics decay and checkpoint."""

from __future__ import annotations

import random
from collections import Counter

import pytest

from alignlab.akd.curriculum import (
    SkillStats,
    bucket_of,
    bucket_probabilities,
    bucket_skills,
    curriculum_draw,
    draw_skills,
)


def test_bucket_of_edges():
    assert [bucket_of(r, 4) for r in (0.0, 0.24, 0.25, 0.5, 0.74, 0.75, 1.0)] == [0, 0, 1, 2, 2, 3, 3]
    assert bucket_of(0.3, 1) == 0
    with pytest.raises(ValueError):
        bucket_of(1.5, 4)


def test_harder_buckets_get_more_probability_and_none_gets_zero():
    p = bucket_probabilities([True] * 5, temperature=0.3)
    assert all(x > 0 for x in p) and sum(p) == pytest.approx(1.0)
    assert all(a > b for a, b in zip(p, p[1:]))  # bucket 0 (hardest) first
    assert bucket_probabilities([True, False, True], 0.3)[1] == 0.0  # empty bucket
    flat = bucket_probabilities([True] * 4, temperature=1e6)
    assert flat == pytest.approx([0.25] * 4, abs=1e-5)
    tiny_t = bucket_probabilities([True] * 4, temperature=0.01)
    assert tiny_t[0] > 0.999 and tiny_t[3] > 0  # still non-zero, no underflow to NaN
    weighted = bucket_probabilities([True] * 2, temperature=1e6, weights=[1.0, 3.0])
    assert weighted == pytest.approx([0.25, 0.75], abs=1e-5)
    for bad in ([0.0, 1.0], [1.0], [-1.0, 1.0]):
        with pytest.raises(ValueError):
            bucket_probabilities([True, True], 0.3, weights=bad)


def test_draws_favour_hard_buckets_reach_every_bucket_and_repeat_with_a_seed():
    rates = {f"s{i:02d}": i / 40 for i in range(40)}  # 10 skills per bucket
    buckets = bucket_skills(rates, 4)
    assert [len(b) for b in buckets] == [10, 10, 10, 10]
    probs = bucket_probabilities([True] * 4, 0.25)
    draws = draw_skills(buckets, 4000, probs, random.Random(0))
    counts = Counter(b for _, b in draws)
    assert counts[0] > counts[1] > counts[2] > counts[3] > 0
    for b in range(4):
        assert counts[b] / 4000 == pytest.approx(probs[b], abs=0.03)
    assert all(rates[s] < (b + 1) / 4 + 1e-9 and s in buckets[b] for s, b in draws)
    assert draw_skills(buckets, 50, probs, random.Random(7)) == draw_skills(buckets, 50, probs, random.Random(7))
    assert draw_skills(buckets, 50, probs, random.Random(7)) != draw_skills(buckets, 50, probs, random.Random(8))


def test_a_round_draws_distinct_skills_until_a_bucket_runs_out():
    buckets = [["a", "b"], [], ["c"]]
    draws = draw_skills(buckets, 3, [1.0, 0.0, 0.0], random.Random(0))
    assert sorted(s for s, _ in draws[:2]) == ["a", "b"] and draws[2][0] in ("a", "b")
    with pytest.raises(ValueError, match="no skills"):
        draw_skills(buckets, 1, [0.5, 0.5, 0.0], random.Random(0))


def test_skill_stats_decay_prior_and_state():
    st = SkillStats()
    assert st.rate("new") == 0.5  # unseen: the prior's mean
    st.update("x", 0, 4, memory=0.5)
    assert st.rate("x") == pytest.approx(0.5 / 5)
    st.update("x", 4, 4, memory=0.5)  # older attempts count half
    assert st.rate("x") == pytest.approx((4 + 0.5) / (6 + 1))
    st.update("x", 2, 2, memory=0.0)  # forget
    assert st.rate("x", prior=(1, 1)) == pytest.approx(3 / 4)
    other = SkillStats()
    other.load_state_dict(st.state_dict())
    assert other.rate("x") == st.rate("x")
    with pytest.raises(ValueError):
        st.update("x", 3, 2, memory=0.5)


def test_curriculum_draw_reports_what_it_saw():
    st = SkillStats()
    for s in ("easy1", "easy2"):
        st.update(s, 4, 4, 0.5)
    st.update("hard", 0, 4, 0.5)
    drawn, info = curriculum_draw(st, ["easy1", "easy2", "hard", "new"], 20, 4, 0.25, random.Random(0))
    assert info["bucket0_skills"] == 1 and info["bucket2_skills"] == 1 and info["bucket3_skills"] == 2
    assert info["bucket1_prob"] == 0.0 and info["bucket1_rate"] is None
    assert sum(info[f"bucket{b}_drawn"] for b in range(4)) == 20
    assert info["bucket0_drawn"] > info["bucket3_drawn"]
    assert {s for s, b in drawn if b == 0} == {"hard"}
