"""The steer / fv / sea commands end to end on the tiny model, and the demo stage (quick)."""

from __future__ import annotations

from pathlib import Path

import pytest

from alignlab.cli import main
from alignlab.runs import read_metrics

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def _run_files(out: Path) -> list[dict]:
    """The run's metrics records, after checking the three files every recipe writes."""
    assert (out / "config.yaml").exists() and (out / "report.html").exists()
    return read_metrics(out / "metrics.jsonl")


def _mc(records: list[dict], model: str) -> dict:
    return next({k: r[k] for k in ("mc1", "mc2")} for r in records if r.get("model") == model)


def test_sea_fit_then_eval_round_trip(tiny_dir, tmp_path, capsys):
    out = tmp_path / "sea"
    data = ["data=testbed:facts", "eval_data=testbed:facts"]
    rc = main(["sea", f"model.name_or_path={tiny_dir}", *data, "top_layers=1", "k_pos=0.99", "k_neg=0.99",
               "--out", str(out)])
    printed = capsys.readouterr().out
    assert rc == 0 and "┃ mc1" in printed and "│ SEA" in printed  # the before/after table
    fitted = _run_files(out)
    assert len([r for r in fitted if "site" in r]) == 1 and (out / "editor").is_dir()
    rc = main(["sea", "mode=eval", f"model.name_or_path={tiny_dir}", "eval_data=testbed:facts",
               f"editor={out / 'editor'}", "--out", str(tmp_path / "ev")])
    assert rc == 0
    again = _run_files(tmp_path / "ev")
    for model in ("before", "SEA"):
        assert _mc(again, model) == pytest.approx(_mc(fitted, model))
    summary = again[-1]
    assert summary["after_mc1"] == _mc(again, "SEA")["mc1"] and summary["sites"] == fitted[-1]["sites"]
    size = next(r["edit_size"] for r in fitted if "site" in r)  # saved with the editor, read back by eval
    assert 0 <= size < 2 and summary["edit_size"] == pytest.approx(size)
    assert ("≈ the identity" in printed) == (size < 0.01)  # the warning when the edit barely moves anything
    page = (out / "report.html").read_text()
    assert f"the edit moves activations by {size:.2%}" in page
    assert ("Warning: the edit is ≈ the identity" in page) == (size < 0.01)


@pytest.mark.parametrize("args, message", [
    (["sea", "mode=eval", "eval_data=testbed:facts"], "editor: mode=eval needs editor="),
    (["sea", "mode=eval", "editor=x"], "eval_data: give "),
    (["sea"], "data: give "),
    (["sea", "mode=refit"], "mode: 'refit' is not one of ['fit', 'eval']"),
    (["steer", "data=testbed:sentiment"], "score: give "),
    (["steer", "score=gold:sentiment"], "data: give "),
    (["fv"], "data: give "),
    (["fv", "data=testbed:antonym", "template=chat"], "template: 'chat' is not one of ['arrow', 'qa']"),
])
def test_required_data_and_options_are_clean_errors(args, message, tiny_dir, tmp_path, capsys):
    rc = main([*args, f"model.name_or_path={tiny_dir}", "--out", str(tmp_path / "x")])
    assert rc == 2 and message in capsys.readouterr().err
    assert not (tmp_path / "x").exists()  # refused before anything is written


def test_steer_and_fv_commands(tiny_dir, tmp_path, capsys):
    from alignlab.interventions.function_vectors import FunctionVector

    rc = main(["steer", f"model.name_or_path={tiny_dir}", "data=testbed:sentiment", "eval_prompts=testbed:reviews",
               "score=gold:sentiment", "layers=[1]", "coefficients=[-4.0,0.0,4.0]", "n_eval=4", "max_new_tokens=6",
               "--out", str(tmp_path / "st")])
    assert rc == 0 and "┃ coefficient" in capsys.readouterr().out  # the sweep table
    rows = [r for r in _run_files(tmp_path / "st") if "coefficient" in r]
    assert [r["coefficient"] for r in rows] == [-4.0, 0.0, 4.0] and {r["layer"] for r in rows} == {1}
    assert (tmp_path / "st" / "vector" / "steering.safetensors").exists()
    rc = main(["fv", f"model.name_or_path={tiny_dir}", "data=testbed:antonym", "n_prompts=4", "n_shots=3",
               "top_k=2", "n_eval=5", "--out", str(tmp_path / "fv")])
    assert rc == 0 and "│ few-shot" in capsys.readouterr().out  # the accuracy table
    records = _run_files(tmp_path / "fv")
    assert {r["layer"] for r in records if "accuracy" in r} == {0, 1}
    assert records[-1]["n_test"] == 5 and 0.0 <= records[-1]["zero_shot"] <= 1.0
    assert len(FunctionVector.load(tmp_path / "fv" / "function_vector").heads) == 2


def test_steer_scores_with_the_given_reward(tiny_dir, tmp_path):
    """`score` is the reward the sweep uses (here a reward-model folder, not the built-in sentiment)."""
    from alignlab.config import load_config
    from alignlab.interventions.steering import SteeringVector, steered_texts
    from alignlab.models import load_model
    from alignlab.models.reward import load_reward_model
    from alignlab.recipes import steer
    from alignlab.resolve import prompts, reward_fn

    rm, rm_tok = load_reward_model(str(tiny_dir))
    rm.save_pretrained(tmp_path / "rm")
    rm_tok.save_pretrained(tmp_path / "rm")
    cfg = load_config(steer.SteerConfig, None, [
        f"model.name_or_path={tiny_dir}", "data=testbed:sentiment", "eval_prompts=testbed:reviews",
        f"score={tmp_path / 'rm'}", "layers=[1]", "coefficients=[2.0]", "n_eval=3", "max_new_tokens=5",
        f"output_dir={tmp_path / 'st'}"])
    res = steer.run(cfg)
    model, tok = load_model(str(tiny_dir), trainable=False)
    vec = SteeringVector.load(res.run_dir / "vector")
    steered_from = prompts("testbed:reviews", 3, cfg.seed + 1)  # the recipe draws with seed + 1
    texts = steered_texts(model, tok, steered_from, vec, 2.0, 1, 5, 1.0, cfg.seed)
    want = sum(reward_fn(str(tmp_path / "rm"))(steered_from, texts)) / 3
    gold = sum(reward_fn("gold:sentiment")(steered_from, texts)) / 3
    assert res.metrics["best_score"] == pytest.approx(want) and want != pytest.approx(gold)


def test_bad_data_file_names_the_line(tiny_dir, tmp_path, capsys):
    bad = tmp_path / "pairs.jsonl"
    bad.write_text('{"prompt": "a", "positive": " b", "negative": " c"}\n{"prompt": "a", "positive": " b"}\n')
    rc = main(["steer", f"model.name_or_path={tiny_dir}", f"data={bad}", "score=gold", "--out", str(tmp_path / "s")])
    assert rc == 2 and "pairs.jsonl:2" in capsys.readouterr().err


@pytest.mark.parametrize("name, module", [("steer.yaml", "steer"), ("sea.yaml", "sea"), ("fv_smollm2.yaml", "fv")])
def test_example_configs_load(name, module):
    import importlib

    from alignlab.config import load_config

    mod = importlib.import_module(f"alignlab.recipes.{module}")
    cls = next(v for k, v in vars(mod).items() if k.endswith("Config") and k != "ModelSettings")
    cfg = load_config(cls, str(EXAMPLES / name), [])
    assert cfg.data.startswith("testbed:") and cfg.model.name_or_path


def test_demo_stage_quick(tiny_dir, tmp_path, world):
    from alignlab.demo_stages import DemoContext
    from alignlab.demo_stages.inference import run

    res = run(DemoContext(world, str(tiny_dir), tmp_path, quick=True))
    methods = [r["method"] for r in res.rows]
    assert methods[0] == "base (truthfulness MC)" and any(m.startswith("SEA linear (bias") for m in methods)
    assert sum(m.startswith("limits:") for m in methods) == 5
    assert all(p.exists() for p in res.figures) and len(res.figures) == 3


def test_steer_chat_prompts_with_a_model_without_chat_template_name_the_prompts_file(tiny_dir, tmp_path, capsys):
    import json
    import shutil

    model = tmp_path / "model"
    shutil.copytree(tiny_dir, model, ignore=shutil.ignore_patterns("pretrain", "chat_template.jinja"))
    prompts = tmp_path / "prompts.jsonl"
    rows = [{"prompt": "review : the food"}, {"prompt": [{"role": "user", "content": "review :"}]}]
    prompts.write_text("".join(json.dumps(r) + "\n" for r in rows))
    rc = main(["steer", f"model.name_or_path={model}", "data=testbed:sentiment", f"eval_prompts={prompts}",
               "score=gold:sentiment", "layers=[1]", "--out", str(tmp_path / "st")])
    err = capsys.readouterr().err
    assert rc == 2 and f"{prompts}: prompt 2: chat messages need a chat template" in err and "Traceback" not in err
