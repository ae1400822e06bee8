"""Reports people read: a verdict line, small tables of each part's own metrics, plots inlined
beside them, notes folded; the demo's headline table and one section per stage."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from alignlab.demo_stages import StageResult
from alignlab.report import Section, auto_verdict, headline_table, html_table, write_report


@pytest.fixture
def png(tmp_path) -> Path:
    from alignlab.plots import line_plot

    return line_plot({"a": ([0, 1], [1.0, 0.5])}, tmp_path / "figs" / "curve.png", title="a curve")


def _run(tmp_path: Path, records: list[dict]) -> Path:
    run = tmp_path / "run"
    run.mkdir()
    (run / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    (run / "config.yaml").write_text("model:\n  name_or_path: tiny\n")
    return run


def _sections(doc: str) -> list[str]:
    return re.findall(r"<section.*?</section>", doc, re.S)


def test_run_report_has_verdict_compact_table_plots_and_folded_notes(tmp_path, png):
    run = _run(tmp_path, [{"step": 1, "loss": 2.0}, {"step": 2, "loss": 1.0},
                          {"step": 2, "final": True, "eval_loss": 1.1, "eval_accuracy": 0.75}])
    # the positional shape recipes use stays valid
    out = write_report(run, "SFT", ["a note"], [png], {"Summary": [{f"m{i}": float(i) for i in range(12)}]})
    doc = out.read_text()
    assert "<p class='verdict'>2 steps; loss 2 → 1; held-out accuracy 0.75, loss 1.1.</p>" in doc
    # one wide row becomes a metric | value table, which fits beside the plots
    assert "<table class='kv'>" in doc and doc.count("<tr>") == 1 + 12
    assert doc.count("data:image/png;base64,") == 2  # the loss curve drawn from metrics.jsonl + the figure
    assert "<details><summary>Notes (1)</summary><p>a note</p></details>" in doc
    assert "<summary>config.yaml</summary><pre>model:" in doc
    assert "src=" not in doc.replace("src='data:", "")  # self-contained: no external files


def test_explicit_verdict_wins_and_empty_is_allowed(tmp_path):
    run = _run(tmp_path, [{"step": 1, "loss": 2.0}])
    assert "<p class='verdict'>all good</p>" in write_report(run, "x", verdict="all good", curve_keys=()).read_text()
    assert "class='verdict'" not in write_report(run, "x", verdict="", curve_keys=()).read_text()


def test_auto_verdict_ranks_what_matters():
    recs = [{"step": 10, "loss": 0.5, "eval_loss": 0.6, "eval_margin": 0.2, "eval_gold_reward": 0.3,
             "eval_accuracy": 0.7}]
    assert auto_verdict(recs) == "10 steps; loss 0.5; held-out gold_reward 0.3, accuracy 0.7, loss 0.6."
    assert auto_verdict([]) == ""


def test_tables_align_numbers_and_show_missing_cells():
    doc = html_table([{"method": "a", "x": 0.123456}, {"method": "b", "y": 2}])
    assert "<td>a</td><td class='num'>0.1235</td><td class='num'>—</td>" in doc


def test_headline_colours_a_change_by_which_way_is_better():
    doc = headline_table([{"stage": "rlhf", "method": "PPO", "measure": "KL", "before": 1.0, "after": 0.5,
                           "better": "lower"},
                          {"method": "SFT", "measure": "gold reward", "before": 0.5, "after": 0.25}])
    assert "<a href='#rlhf'>PPO</a>" in doc and "<span class='up'>▼ -0.5</span>" in doc
    assert "<span class='down'>▼ -0.25</span>" in doc


def test_stage_rows_split_into_small_tables():
    res = StageResult("prefs", rows=[
        {"stage": "prefs", "method": "reward model", "pairwise_acc": 0.7, "kendall_tau": 0.3},
        {"stage": "prefs", "method": "SFT", "gold_reward": 0.3, "nll": 1.0},
        {"stage": "prefs", "method": "DPO", "gold_reward": 0.5, "nll": 1.2, "win_rate": 0.6, "extra": None},
        {"stage": "prefs", "table": "Limits", "method": "zero-shot", "gold_reward": 0.1},
        {"stage": "prefs", "table": "Limits", "method": "many-shot", "shift": 0.2},
    ])
    tables = res.tables()
    assert [[r["method"] for r in rows] for rows in tables.values()] == [
        ["reward model"], ["SFT", "DPO"], ["zero-shot", "many-shot"]]
    assert list(tables)[2] == "Limits" and not list(tables)[0].strip()
    assert all("stage" not in r and "extra" not in r for rows in tables.values() for r in rows)


def test_demo_report_opens_with_headline_then_one_section_per_stage(tmp_path, png):
    from alignlab.demo import write_demo_report

    results = [
        StageResult("sft", rows=[{"stage": "sft", "method": "base", "gold_reward": 0.1},
                                 {"stage": "sft", "method": "SFT", "gold_reward": 0.4, "loss": 1.0}],
                    figures=[png], notes=["sft note"], seconds=12.0, verdict="SFT helped.",
                    headline=[{"method": "SFT", "measure": "gold reward", "before": 0.1, "after": 0.4}]),
        StageResult("akd", rows=[{"stage": "akd", "method": "student", "pass@1": 0.2, "pass@5": 0.5}],
                    seconds=3.0, headline=[{"method": "AKD", "measure": "pass@1", "before": 0.0, "after": 0.2}]),
    ]
    doc = write_demo_report(tmp_path, [StageResult("testbed")] + results, 15.0, quick=True, seed=0).read_text()
    head, sft, akd = _sections(doc)[0], _sections(doc)[2], _sections(doc)[3]
    assert ">Headline<" in head and "<a href='#sft'>SFT</a>" in head and "<a href='#akd'>AKD</a>" in head
    assert doc.index(">Headline<") < doc.index("id='sft'") < doc.index("id='akd'")
    assert "<p class='verdict'>SFT helped.</p>" in sft and "data:image/png" in sft and "sft note" in sft
    assert "pass@1" not in sft and "gold_reward" not in akd  # each section only its own metrics
    assert "<p class='verdict'>AKD: pass@1 0 → 0.2</p>" in akd  # no verdict given: from the headline
    assert "quick settings" in doc and "<nav>" in doc


def test_sections_render_without_a_run_section(tmp_path):
    out = write_report(tmp_path, "only sections", verdict="", curve_keys=(),
                       sections=[Section(title="A", verdict="fine", tables={"t": [{"method": "m", "x": 1}]})],
                       anchors=["a"])
    doc = out.read_text()
    assert len(_sections(doc)) == 1 and "id='a'" in doc and "<h3>t</h3>" in doc
