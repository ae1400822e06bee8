"""End-to-end: the reward-model and preference recipes on the tiny testbed model, judged against
their own starting point (held-out accuracy, gold reward of samples), plus reference modes and LoRA."""

from __future__ import annotations

import json
import random

import pytest
import torch

from alignlab.config import load_config

COMMON = ["train.progress=false", "train.save_every=0", "train.log_every=5", "max_length=96"]


def gold_of_samples(model, tok, n: int = 48) -> float:
    """Mean gold (sentiment) reward of sampled answers to held-out chat questions."""
    from alignlab.generation import sample
    from alignlab.testbed.dialogues import QUESTIONS
    from alignlab.testbed.lexicon import SUBJECTS, sentiment_reward

    rng = random.Random(7)
    msgs = [[{"role": "user", "content": rng.choice(QUESTIONS).format(s=rng.choice(SUBJECTS))}] for _ in range(n)]
    prompts = [tok.apply_chat_template(m, tokenize=False, add_generation_prompt=True) for m in msgs]
    rewards = []
    for seed in range(2):
        out = sample(model, tok, prompts, max_new_tokens=24, generator=torch.Generator().manual_seed(seed))
        rewards += [sentiment_reward(t) for t in out.texts]
    return sum(rewards) / len(rewards)


def test_reward_model_learns_and_loads_back(tiny_dir, ranking_file, tmp_path):
    from transformers import AutoModelForSequenceClassification

    from alignlab.data.preference import read_rankings, split_records
    from alignlab.data.preference_batches import encode_rankings
    from alignlab.models.reward import RewardModel, load_reward_model
    from alignlab.recipes.rm import RewardConfig, evaluate_rankings, run

    cfg = load_config(RewardConfig, None, [f"model.name_or_path={tiny_dir}", f"data={ranking_file}",
                                           f"output_dir={tmp_path / 'rm'}", "train.max_steps=30", "train.lr=2e-3",
                                           "train.batch_size=8", "eval_fraction=0.15", *COMMON])
    # the untrained head on the same held-out split is the baseline
    start, tok = load_reward_model(str(tiny_dir))
    _, val = split_records(read_rankings(ranking_file)[0], 0.15, 0)
    val_items, _ = encode_rankings(tok, val, 96)
    before = evaluate_rankings(start, val_items, tok.pad_token_id)
    res = run(cfg)
    after = res.metrics["eval_pairwise_accuracy"]
    assert after > before["eval_pairwise_accuracy"] + 0.1 and after > 0.65
    assert res.metrics["eval_kendall_tau"] > before["eval_kendall_tau"]
    # plain transformers loads it back and scores exactly as the scoring function does
    rm = RewardModel.load(res.model_dir)
    prompts = [[{"role": "user", "content": "how was the food ?"}]] * 2
    texts = ["the food was great and wonderful .", "the food was terrible and awful ."]
    ours = rm(prompts, texts)
    hf = AutoModelForSequenceClassification.from_pretrained(res.model_dir).eval()
    ids = [tok.apply_chat_template(p + [{"role": "assistant", "content": t}], tokenize=True, return_dict=False)
           for p, t in zip(prompts, texts)]
    with torch.no_grad():
        theirs = [float(hf(input_ids=torch.tensor([i])).logits[0, 0]) for i in ids]
    assert ours == pytest.approx(theirs, abs=1e-5)
    assert (res.run_dir / "report.html").exists()


def test_reward_model_lora_adapter_saves_and_loads(tiny_dir, ranking_file, tmp_path):
    from alignlab.models.reward import RewardModel
    from alignlab.recipes.rm import RewardConfig, run

    cfg = load_config(RewardConfig, None, [f"model.name_or_path={tiny_dir}", f"data={ranking_file}",
                                           f"output_dir={tmp_path / 'rm_lora'}", "train.max_steps=4", "train.lr=5e-3",
                                           "model.lora.enabled=true", "eval_fraction=0.1", *COMMON])
    res = run(cfg)
    assert (res.model_dir / "adapter_config.json").exists()
    from safetensors.torch import load_file

    saved = load_file(str(res.model_dir / "adapter_model.safetensors"))
    assert any("score" in k for k in saved) and any("lora_A" in k for k in saved)  # the trained head is saved too
    rm = RewardModel.load(res.model_dir)
    s = rm(["review : the food was"] * 2, [" great .", " awful ."])
    assert len(s) == 2 and s[0] != s[1]


@pytest.mark.parametrize("loss", ["dpo", "cal_dpo"])
def test_preference_training_beats_its_start(tiny_dir, ranking_file, tmp_path, loss):
    from alignlab.models import load_model
    from alignlab.recipes.prefs import PrefsConfig, run

    cfg = load_config(PrefsConfig, None, [f"model.name_or_path={tiny_dir}", f"data={ranking_file}", f"preference.loss={loss}",
                                          f"output_dir={tmp_path / loss}", "train.max_steps=30", "train.lr=2e-3",
                                          "train.batch_size=16", "preference.beta=0.3", "eval_fraction=0.1",
                                          "pairs=best_vs_worst", "max_prompt_length=48", *COMMON])
    # β 0.3, not 0.1: at 0.1 DPO's gold lift on one machine was -0.01 / +0.49 / +0.07 over seeds 0/1/2
    # (float rounding differs by CPU). At 0.3, measured on that machine (AMD EPYC), seeds 0/1/2:
    # gold +0.005 → DPO 0.89 / 0.61 / 0.51, Cal-DPO 0.33 / 0.38 / 0.28.
    res = run(cfg)
    m = res.metrics
    assert m["eval_accuracy_before"] == 0.5  # policy == reference: every implicit reward is 0
    assert m["eval_accuracy"] > 0.65 and m["eval_margin"] > 0
    start, tok = load_model(str(tiny_dir), trainable=False)
    trained, _ = load_model(str(res.model_dir), trainable=False)
    g_after, g_before = gold_of_samples(trained, tok), gold_of_samples(start, tok)
    print(f"gold {loss}: {g_before:.3f} -> {g_after:.3f}")
    assert g_after > g_before + 0.05
    recs = [json.loads(line) for line in (res.run_dir / "metrics.jsonl").read_text().splitlines()]
    assert recs[0]["step"] == 0 and recs[0]["eval_accuracy"] == 0.5
    assert all(k in recs[1] for k in ("chosen_reward", "rejected_reward", "margin", "accuracy"))
    assert (res.run_dir / "implicit_rewards.png").exists()


def test_reference_modes_agree(tiny_dir, ranking_file, tmp_path):
    """A frozen copy, precomputed log-probs and (for LoRA) the disabled adapter give the same losses."""
    from alignlab.recipes.prefs import PrefsConfig, run

    small = tmp_path / "small.jsonl"
    small.write_text("".join(ranking_file.read_text().splitlines(keepends=True)[:24]))

    def losses(name: str, *extra: str) -> list[float]:
        cfg = load_config(PrefsConfig, None, [f"model.name_or_path={tiny_dir}", f"data={small}",
                                              f"output_dir={tmp_path / name}", "train.max_steps=3", "train.lr=1e-3",
                                              "train.batch_size=4", "eval_fraction=0.1", "train.log_every=1",
                                              "max_prompt_length=48", "train.progress=false", "max_length=96",
                                              "train.save_every=0", *extra])
        res = run(cfg)
        return [r["loss"] for r in map(json.loads, (res.run_dir / "metrics.jsonl").read_text().splitlines())
                if "loss" in r]

    pre, copy = losses("pre", "reference=precomputed"), losses("copy", "reference=copy")
    assert pre == pytest.approx(copy, abs=1e-5)
    assert pre[0] == pytest.approx(0.693147, abs=1e-5)
    lora_pre = losses("lora_pre", "reference=precomputed", "model.lora.enabled=true")
    lora_adapter = losses("lora_adapter", "reference=adapter", "model.lora.enabled=true")
    assert lora_pre == pytest.approx(lora_adapter, abs=1e-5)
    assert lora_pre[-1] != pytest.approx(lora_pre[0])  # the adapter did train
    assert (tmp_path / "lora_adapter" / "final" / "adapter_config.json").exists()
    from peft import AutoPeftModelForCausalLM

    assert AutoPeftModelForCausalLM.from_pretrained(tmp_path / "lora_adapter" / "final") is not None


def test_config_and_data_errors_are_clean(tiny_dir, tmp_path, capsys):
    from alignlab.cli import main

    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"prompt": "q", "chosen": "a", "rejected": "b"}\n{"prompt": "q", "chosen": "a"}\n')
    assert main(["prefs", f"model.name_or_path={tiny_dir}", f"data={bad}", "--out", str(tmp_path / "r")]) == 2
    assert f"{bad}:2: missing field(s) ['rejected']" in capsys.readouterr().err
    assert main(["prefs", "preference.loss=kto", f"data={bad}", "--out", str(tmp_path / "r")]) == 2
    assert "preference.loss" in capsys.readouterr().err
    assert main(["prefs", "reference=adapter", f"data={bad}", "--out", str(tmp_path / "r")]) == 2
    assert "needs model.lora.enabled" in capsys.readouterr().err
