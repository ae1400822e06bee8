"""The SEA rows' untestable rules: headroom, and an edit that actually moves activations."""

from __future__ import annotations

import math

from alignlab.claims.rows.sea import untestable


def _seed(**kw: float) -> dict[str, float]:
    base = {"mc1_before": 0.44, "bias_ambig_before": 0.15, "unknown_rate_before": 0.5,
            "truth_edit_size": 0.2, "bias_edit_size": 0.2}
    return {**base, **kw}


def test_an_identity_edit_on_every_seed_makes_its_test_untestable():
    out = untestable([_seed(truth_edit_size=0.0005), _seed(truth_edit_size=0.004)])
    assert set(out) == {"mc1_gain"} and "≈ the identity" in out["mc1_gain"] and "0.40%" in out["mc1_gain"]
    assert untestable([_seed(truth_edit_size=0.0005), _seed(truth_edit_size=0.05)]) == {}  # one seed acts
    out = untestable([_seed(bias_edit_size=0.001)] * 3)
    assert set(out) == {"abs_bias_change"}


def test_headroom_reasons_come_first_and_old_runs_without_sizes_are_judged_as_before():
    out = untestable([_seed(mc1_before=1.0, truth_edit_size=0.0)] * 2)
    assert "no truthfulness headroom" in out["mc1_gain"]
    old = [{k: v for k, v in _seed().items() if not k.endswith("edit_size")}] * 3
    assert untestable(old) == {}
    assert untestable([_seed(truth_edit_size=math.nan)] * 3) == {}
