"""`alignlab claims --merge`: finished runs combine into one report, each row re-judged from the
per-seed numbers it saved; broken or mismatched inputs are clear errors."""

import json
import math

import pytest

from alignlab.claims.cli import merge_claims
from alignlab.claims.merge import merge_runs
from alignlab.claims.registry import load_rows
from alignlab.claims.report import write_all
from alignlab.claims.row import SeedResult
from alignlab.claims.runner import judge
from alignlab.errors import DataError


def _run(out, key, values, quick=False, extra=None, seconds=60.0):
    """Save a finished run of one registered row whose test numbers are `values` (one per seed)."""
    row = load_rows([key])[0]
    test = row.tests[0].key
    extra = {"before_pass@1": 0.1, **(extra or {})} if key == "akd" else extra  # its headroom rule reads it
    results = [SeedResult({test: v, **(extra or {})}, note=f"seed {i}") for i, v in enumerate(values)]
    o = judge(row, list(range(len(values))), results)
    o.seconds = seconds
    facts = {"seconds": seconds, "load_average_start": "1.00 / 1.00 / 1.00", "load_average_end": "2.00 / 2.00 / 2.00",
             "seeds": list(range(len(values))), "quick": quick, "models": {}, "cpu_count": 2}
    write_all([o], facts, f"alignlab claims --rows {key} --out {out}", out)
    return o


def test_two_runs_merge_in_table_order_with_the_same_intervals_and_verdicts(tmp_path):
    akd = _run(tmp_path / "a", "akd", [0.05, 0.10, 0.08], seconds=120.0)  # first in folder order, last in the table
    sft = _run(tmp_path / "b", "sft", [0.20, -0.30, 0.25], seconds=60.0)
    outcomes, facts = merge_runs([tmp_path / "a", tmp_path / "b"])
    assert [o.row.key for o in outcomes] == ["sft", "akd"]
    for merged, original in zip(outcomes, (sft, akd)):
        assert merged.verdict == original.verdict and merged.reason == original.reason
        k = original.row.tests[0].key
        assert merged.intervals[k].mean == pytest.approx(original.intervals[k].mean)
        assert (merged.intervals[k].lo, merged.intervals[k].hi) == pytest.approx((original.intervals[k].lo, original.intervals[k].hi))
    # hand check: akd values 0.05, 0.10, 0.08 → mean 0.0767, all > 0 with a tight spread → supports
    assert outcomes[1].intervals["akd_minus_plain_pass@1"].mean == pytest.approx(0.23 / 3)
    assert outcomes[1].verdict == "reproduced" and outcomes[0].verdict == "not"
    assert facts["seconds"] == 180.0 and [s["rows"] for s in facts["sources"]] == [["akd"], ["sft"]]
    written = merge_claims([str(tmp_path / "a"), str(tmp_path / "b")], tmp_path / "m")
    md = written["markdown"].read_text()
    assert "Merged from these runs" in md and "--rows akd" in md and "--rows sft" in md and "3.0 min" in md
    assert md.index("## sft") < md.index("## akd")
    assert [r["key"] for r in json.loads(written["json"].read_text())["rows"]] == ["sft", "akd"]
    page = written["html"].read_text()  # one self-contained page: sections per row, verdicts coloured
    assert "id='sft'" in page and "id='akd'" in page and page.index("id='sft'") < page.index("id='akd'")
    assert "<td class='up'>reproduced (1/1 supports)</td>" in page and "<td class='down'>not (" in page
    assert "data:image/png;base64," in page and "2 claims: 1 reproduced, 1 not." in page


def test_a_row_in_two_runs_is_taken_from_the_later_and_the_report_says_so(tmp_path):
    _run(tmp_path / "a", "akd", [0.05, 0.10, 0.08])
    _run(tmp_path / "b", "akd", [-0.05, -0.10, -0.08])
    (o,), facts = merge_runs([tmp_path / "a", tmp_path / "b"])
    assert o.intervals["akd_minus_plain_pass@1"].mean == pytest.approx(-0.23 / 3)
    assert [(s["rows"], s["replaced"]) for s in facts["sources"]] == [([], ["akd"]), (["akd"], [])]
    md = merge_claims([str(tmp_path / "a"), str(tmp_path / "b")], tmp_path / "m")["markdown"].read_text()
    assert "rows none (its akd taken from a later run)" in md


def test_a_nan_saved_as_null_comes_back_as_nan(tmp_path):
    _run(tmp_path / "a", "akd", [0.05, 0.10, 0.08], extra={"teacher_pass@1": float("nan")})
    (o,), _ = merge_runs([tmp_path / "a"])
    assert all(math.isnan(r.numbers["teacher_pass@1"]) for r in o.results)


def test_bad_inputs_are_clear_errors(tmp_path):
    with pytest.raises(DataError, match=r"nowhere/claims.json: no claims.json here"):
        merge_runs([tmp_path / "nowhere"])
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "claims.json").write_text("{not json")
    with pytest.raises(DataError, match=r"broken/claims.json: not readable as claims JSON"):
        merge_runs([tmp_path / "broken"])
    _run(tmp_path / "full", "sft", [0.2, 0.3, 0.25])
    _run(tmp_path / "quick", "akd", [0.1, 0.1, 0.2], quick=True)
    with pytest.raises(DataError, match=r"cannot merge quick and full runs: .*full \(full\), .*quick \(quick\)"):
        merge_runs([tmp_path / "full", tmp_path / "quick"])
    data = json.loads((tmp_path / "full" / "claims.json").read_text())
    (tmp_path / "partial").mkdir()
    (tmp_path / "partial" / "claims.json").write_text(json.dumps({**data, "partial": True}))
    with pytest.raises(DataError, match="a partial run"):
        merge_runs([tmp_path / "partial"])
    data["rows"][0]["key"] = "nonsense"
    (tmp_path / "unknown").mkdir()
    (tmp_path / "unknown" / "claims.json").write_text(json.dumps(data))
    with pytest.raises(DataError, match=r"row 'nonsense' is not a saved claims row"):
        merge_runs([tmp_path / "unknown"])


def test_cli_merge_exits_cleanly_on_a_missing_run(tmp_path, capsys):
    from alignlab.cli import main

    assert main(["claims", "--merge", str(tmp_path / "nowhere"), "--out", str(tmp_path / "m")]) != 0
    err = capsys.readouterr().err
    assert "no claims.json here" in err and "Traceback" not in err


def test_merging_into_a_measured_run_is_refused_and_into_an_earlier_merge_allowed(tmp_path):
    from alignlab.errors import ConfigError

    _run(tmp_path / "a", "akd", [0.05, 0.10, 0.08])
    _run(tmp_path / "b", "sft", [0.20, -0.30, 0.25])
    before = (tmp_path / "a" / "claims.json").read_text()
    with pytest.raises(ConfigError, match="holds a measured claims run"):
        merge_claims([str(tmp_path / "a"), str(tmp_path / "b")], tmp_path / "a")
    assert (tmp_path / "a" / "claims.json").read_text() == before
    merge_claims([str(tmp_path / "a"), str(tmp_path / "b")], tmp_path / "m")
    merge_claims([str(tmp_path / "a"), str(tmp_path / "b")], tmp_path / "m")  # a merge may be redone in place
