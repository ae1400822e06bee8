"""The steer / fv / sea commands end to end on the tiny model, and the demo stage (quick)."""

from __future__ import annotations

import json

import pytest

from alignlab.cli import main


def test_sea_fit_then_eval_round_trip(tiny_dir, tmp_path, capsys):
    out = tmp_path / "sea"
    rc = main(["sea", "fit", f"model.name_or_path={tiny_dir}", "top_layers=1", "k_pos=0.99", "k_neg=0.99",
               "--out", str(out)])
    assert rc == 0
    fitted = json.loads((out / "sea_metrics.json").read_text())
    assert len(fitted["sites"]) == 1 and set(fitted["before"]) >= {"mc1", "mc2"}
    rc = main(["sea", "eval", f"model.name_or_path={tiny_dir}", f"editor={out / 'editor'}", "--out", str(tmp_path / "ev")])
    assert rc == 0
    again = json.loads((tmp_path / "ev" / "sea_metrics.json").read_text())
    assert again["after"] == pytest.approx(fitted["after"]) and again["before"] == pytest.approx(fitted["before"])


def test_sea_eval_without_editor_is_a_clean_error(tiny_dir, tmp_path, capsys):
    rc = main(["sea", "eval", f"model.name_or_path={tiny_dir}", "--out", str(tmp_path / "x")])
    assert rc == 2 and "editor=" in capsys.readouterr().err


def test_steer_and_fv_commands(tiny_dir, tmp_path):
    rc = main(["steer", f"model.name_or_path={tiny_dir}", "layers=[1]", "coefficients=[-4.0,0.0,4.0]", "n_eval=4",
               "max_new_tokens=6", "--out", str(tmp_path / "st")])
    assert rc == 0
    rows = json.loads((tmp_path / "st" / "sweep.json").read_text())
    assert [r["coefficient"] for r in rows] == [-4.0, 0.0, 4.0]
    assert (tmp_path / "st" / "vector" / "steering.safetensors").exists()
    rc = main(["fv", f"model.name_or_path={tiny_dir}", "n_prompts=4", "n_shots=3", "top_k=2", "n_eval=5",
               "--out", str(tmp_path / "fv")])
    assert rc == 0
    acc = json.loads((tmp_path / "fv" / "accuracy.json").read_text())
    assert set(acc["by_layer"]) == {"0", "1"} and len(acc["heads"]) == 2


def test_bad_data_file_names_the_line(tiny_dir, tmp_path, capsys):
    bad = tmp_path / "pairs.jsonl"
    bad.write_text('{"prompt": "a", "positive": " b", "negative": " c"}\n{"prompt": "a", "positive": " b"}\n')
    rc = main(["steer", f"model.name_or_path={tiny_dir}", f"data={bad}", "--out", str(tmp_path / "s")])
    assert rc == 2 and "pairs.jsonl:2" in capsys.readouterr().err


def test_demo_stage_quick(tiny_dir, tmp_path, world):
    from alignlab.demo_stages import DemoContext
    from alignlab.demo_stages.inference import run

    res = run(DemoContext(world, str(tiny_dir), tmp_path, quick=True))
    methods = [r["method"] for r in res.rows]
    assert methods[0] == "base (truthfulness MC)" and any(m.startswith("SEA linear (bias") for m in methods)
    assert sum(m.startswith("limits:") for m in methods) == 5
    assert all(p.exists() for p in res.figures) and len(res.figures) == 3
