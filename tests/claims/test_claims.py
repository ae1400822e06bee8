"""`alignlab claims`: the interval maths and verdict rule against hand values, and one quick run
of every row through the CLI (outputs' structure; verdicts follow from the written numbers)."""

from __future__ import annotations

import json
import math

import pytest

from alignlab.claims.row import ClaimRow, ClaimTest, SeedResult
from alignlab.claims.runner import judge
from alignlab.claims.stats import Interval, frontier_at, outcome, t_interval, verdict


def test_t_interval_matches_hand_values():
    # [1, 2, 3]: mean 2, sd 1, t(2, .975) = 4.302653 → half width 4.302653 / √3 = 2.484138
    iv = t_interval([1.0, 2.0, 3.0])
    assert (iv.mean, iv.sd, iv.n) == (2.0, 1.0, 3)
    assert iv.lo == pytest.approx(2 - 2.484138, abs=1e-6) and iv.hi == pytest.approx(2 + 2.484138, abs=1e-6)
    # [0.1, 0.3]: sd = 0.141421, t(1, .975) = 12.706205 → half width 12.706205 · 0.141421 / √2 = 1.270620
    iv = t_interval([0.1, 0.3])
    assert iv.lo == pytest.approx(0.2 - 1.270620, abs=1e-5) and iv.hi == pytest.approx(0.2 + 1.270620, abs=1e-5)
    one = t_interval([0.5, float("nan")])  # a seed that could not measure is dropped
    assert one.n == 1 and one.mean == 0.5 and math.isnan(one.lo)


def test_outcome_and_verdict_rule():
    up, down, across = Interval(1, 0.5, 1.5, 3, 1), Interval(-1, -1.5, -0.5, 3, 1), Interval(0, -1, 1, 3, 1)
    assert [outcome(up, "greater"), outcome(down, "greater"), outcome(across, "greater")] == \
        ["supports", "contradicts", "inconclusive"]
    assert [outcome(up, "less"), outcome(down, "less")] == ["contradicts", "supports"]
    assert outcome(Interval(1, math.nan, math.nan, 1, math.nan), "greater") == "unmeasured"
    assert verdict(["supports", "supports"])[0] == "reproduced"
    assert verdict(["supports", "inconclusive"])[0] == "partly"
    assert verdict(["supports", "untestable"])[0] == "partly"  # never "reproduced" with half the claim untested
    assert verdict(["inconclusive", "contradicts"])[0] == "not"
    assert verdict(["untestable"])[0] == "untestable here"
    assert verdict(["supports", "unmeasured"])[0] == "untestable here"


def test_frontier_is_the_best_reward_within_the_drift_budget():
    pts = [(0.0, 0.0), (2.0, 1.0), (4.0, 0.5)]
    assert frontier_at(pts, 1.0) == pytest.approx(0.5)  # halfway up the first segment
    assert frontier_at(pts, 3.0) == pytest.approx(1.0)  # the peak at drift 2 beats 0.75 at drift 3
    assert frontier_at(pts, 10.0) == pytest.approx(1.0)
    assert frontier_at(pts, 0.0) == 0.0
    assert math.isnan(frontier_at([(1.0, 0.3)], 0.5))


def test_judge_applies_the_rule_and_a_rows_untestable_reason():
    row = ClaimRow("toy", "paper", "claim", (ClaimTest("gain", "greater", "gain"), ClaimTest("drop", "less", "drop")),
                   measure=lambda ctx, seed: SeedResult({}),
                   untestable=lambda per_seed: {"drop": "no headroom"} if all(r["base"] == 0 for r in per_seed) else {})
    results = [SeedResult({"gain": g, "drop": d, "base": 0.0}) for g, d in ((0.30, -0.1), (0.32, 0.1), (0.31, 0.0))]
    out = judge(row, [0, 1, 2], results)
    assert out.outcomes == {"gain": "supports", "drop": "untestable"}
    assert out.verdict == "partly" and "no headroom" in out.reason
    results = [SeedResult({"gain": g, "drop": -0.5 - g, "base": 1.0}) for g in (0.30, 0.32, 0.31)]
    assert judge(row, [0, 1, 2], results).verdict == "reproduced"


def test_quick_claims_run_writes_every_row_and_its_verdict_follows_the_numbers(tmp_path, capsys):
    from alignlab.claims.registry import default_keys
    from alignlab.cli import main

    out = tmp_path / "claims"
    assert main(["claims", "--quick", "--seeds", "2", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "seed papers' headline claims" in printed and "verdict" in printed
    data = json.loads((out / "claims.json").read_text())
    assert [r["key"] for r in data["rows"]] == default_keys(quick=True)  # the real-model rows are not quick
    assert data["seeds"] == [0, 1] and data["quick"] is True and data["seconds"] > 0
    md = (out / "CLAIMS.md").read_text()
    assert "| paper | model | claim | our measurement" in md and "Verdict rule:" in md
    for r in data["rows"]:
        assert not r["error"], (r["key"], r["error"])
        assert r["verdict"] in ("reproduced", "partly", "not", "untestable here")
        assert set(r["per_seed"]) == {"0", "1"}
        for t in r["tests"]:
            assert t["outcome"] in ("supports", "inconclusive", "contradicts", "untestable")
            if t["outcome"] != "untestable" and t["lo"] is not None:  # recompute the outcome from the interval
                iv = Interval(t["mean"], t["lo"], t["hi"], t["n"], t["sd"])
                assert outcome(iv, t["direction"]) == t["outcome"]
                per_seed = [r["per_seed"][s]["numbers"][t["key"]] for s in ("0", "1")]
                assert t["mean"] == pytest.approx(sum(per_seed) / 2)
        assert r["verdict"] == verdict([t["outcome"] for t in r["tests"]])[0]
        assert (out / "plots" / f"{r['key']}_intervals.png").exists()
        assert r["paper"] in md
    assert (out / "runs" / "cal_dpo" / "0" / "cal_dpo").is_dir()  # runs go under DIR/runs/<row>/<seed>
