"""final/README.md is a Hub model card: front matter the Hub reads (base model, library, datasets,
tags, license), then the method, data, metrics, how to load it, the config and the command."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from alignlab.model_card import hub_id, write_model_card
from alignlab.runs import read_metrics

ModelCard = pytest.importorskip("huggingface_hub", reason="huggingface_hub (a transformers dependency) is missing").ModelCard


def test_an_sft_run_from_the_command_line_leaves_a_model_card_in_final(tiny_dir, tmp_path):
    from alignlab.cli import main

    data = tmp_path / "sft.jsonl"
    data.write_text("".join(f'{{"prompt": "say {i}", "response": "ok {i}"}}\n' for i in range(8)))
    out = tmp_path / "run"
    assert main(["sft", f"model.name_or_path={tiny_dir}", f"data={data}", "train.batch_size=4", "train.max_steps=2",
                 "train.log_every=1", "train.progress=false", "--out", str(out)]) == 0
    card = ModelCard.load(out / "final" / "README.md")
    meta = card.data.to_dict()
    assert meta == {"library_name": "transformers", "pipeline_tag": "text-generation", "tags": ["alignlab", "sft"]}
    # a local base model and a local data file are named in the text, not in the Hub's metadata
    assert f"Fine-tuned from `{tiny_dir}` with alignlab's `sft` recipe." in card.text
    assert f"- `data`: `{data}`" in card.text
    assert "Supervised fine-tuning (SFT)" in card.text
    config = card.text.split("```yaml\n", 1)[1].split("```", 1)[0]
    assert yaml.safe_load(config) == yaml.safe_load((out / "config.yaml").read_text())
    assert (out / "command.txt").read_text().strip() in card.text
    losses = [r["loss"] for r in read_metrics(out / "metrics.jsonl") if "loss" in r]
    row = next(line for line in card.text.splitlines() if line.startswith("| loss |"))
    assert row == f"| loss | {losses[0]:.4g} | {losses[-1]:.4g} |"
    assert "AutoModelForCausalLM.from_pretrained(path)" in card.text


def fake_run(tmp_path: Path, cfg: dict, records: list[dict], files: dict[str, dict]) -> Path:
    """A finished run folder as a recipe leaves it, with final/ holding `files` (JSON)."""
    run = tmp_path / "my-run"
    (run / "final").mkdir(parents=True)
    (run / "config.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))
    (run / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    for name, content in files.items():
        (run / "final" / name).write_text(json.dumps(content))
    return run


def test_a_lora_cal_dpo_run_on_hub_data_gets_hub_metadata(tmp_path):
    cfg = {"model": {"name_or_path": "HuggingFaceTB/SmolLM2-135M-Instruct", "lora": {"enabled": True}},
           "preference": {"loss": "cal_dpo", "beta": 0.1}, "pairs": "all",
           "data": "HuggingFaceH4/ultrafeedback_binarized", "eval_data": str(tmp_path / "held.jsonl"),
           "train": {"lr": 5e-5}, "output_dir": str(tmp_path / "my-run")}
    records = [{"step": 0, "eval_accuracy": 0.5, "eval_margin": 0.0},
               {"step": 10, "loss": 0.69, "lr": 5e-5, "time": 1.0},
               {"step": 20, "loss": 0.41, "eval_accuracy": 0.75, "eval_margin": 1.25, "final": True}]
    run = fake_run(tmp_path, cfg, records, {"adapter_config.json": {"task_type": "CAUSAL_LM", "peft_type": "LORA"}})
    (run / "command.txt").write_text(f"cd /work && alignlab prefs -c dpo.yaml --out {run}\n")
    card = ModelCard.load(write_model_card(run / "final", run))
    meta = card.data.to_dict()
    assert meta["base_model"] == "HuggingFaceTB/SmolLM2-135M-Instruct"
    assert meta["library_name"] == "peft" and meta["pipeline_tag"] == "text-generation"
    assert meta["datasets"] == ["HuggingFaceH4/ultrafeedback_binarized"]  # the local eval file is not a Hub id
    assert meta["tags"] == ["alignlab", "cal-dpo"] and "license" not in meta
    assert "Cal-DPO (Xiao et al. 2024)" in card.text and "A LoRA adapter for" in card.text
    assert "| eval_accuracy | 0.5 | 0.75 |" in card.text and "| loss | 0.69 | 0.41 |" in card.text
    assert "| lr |" not in card.text and "| time |" not in card.text
    assert "AutoPeftModelForCausalLM" in card.text
    assert f"alignlab prefs -c dpo.yaml --out {run}" in card.text


def test_without_a_command_the_recipe_comes_from_the_config_and_given_metrics_replace_the_log(tmp_path):
    base = tmp_path / "base"
    base.mkdir()
    (base / "README.md").write_text("---\nlicense: apache-2.0\n---\n# a base model\n")
    cfg = {"model": {"name_or_path": str(base)}, "prompts": "prompts.jsonl", "reward": "rm-folder",
           "ppo": {"kl_coef": 0.05}, "elastic_reset": {"enabled": True, "reset_every": 36}}
    run = fake_run(tmp_path, cfg, [{"step": 4, "iteration": 1, "reward": 0.1}],
                   {"config.json": {"architectures": ["LlamaForCausalLM"]}})
    (run / "final" / "value_head.safetensors").write_bytes(b"")
    card = ModelCard.load(write_model_card(run / "final", metrics={"eval_reward": 0.42, "resets": 2}))
    meta = card.data.to_dict()
    assert meta["tags"] == ["alignlab", "elastic-reset"] and meta["license"] == "apache-2.0"
    assert "base_model" not in meta and "datasets" not in meta
    assert "Elastic Reset (Noukhovitch et al. 2023)" in card.text
    assert "| eval_reward | 0.42 |" in card.text and "| reward |" not in card.text
    assert f"alignlab ppo -c {run / 'config.yaml'} --out {run}-again" in card.text
    assert "value_head.safetensors" in card.text


def test_a_reward_model_card_is_a_text_classification_card(tmp_path):
    run = fake_run(tmp_path, {"model": {"name_or_path": "gpt2"}, "data": "ranks.jsonl", "score_penalty": 0.001},
                   [], {"config.json": {"architectures": ["GPT2ForSequenceClassification"]}})
    meta = ModelCard.load(write_model_card(run / "final", recipe="rm")).data.to_dict()
    assert meta == {"base_model": "gpt2", "library_name": "transformers", "pipeline_tag": "text-classification",
                    "tags": ["alignlab", "reward-model"]}


def test_hub_ids_and_what_is_not_one(tmp_path):
    snap = tmp_path / "hub" / "models--org--model-x" / "snapshots" / "abc123"
    snap.mkdir(parents=True)
    (tmp_path / "local-model").mkdir()
    assert hub_id(str(snap)) == "org/model-x"  # a Hub-cache snapshot folder names its repo
    assert hub_id("org/data-set") == "org/data-set" and hub_id("gpt2") == "gpt2"
    for not_hub in (str(tmp_path / "local-model"), "data/train.jsonl", "testbed:tiny", "gold:sentiment",
                    "./x", "a/b/c", "prompts.txt"):
        assert hub_id(not_hub) is None, not_hub
