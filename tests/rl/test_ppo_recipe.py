"""The PPO recipe end to end on the tiny testbed model: it raises the gold reward, resumes
mid-run with identical results (EMA, reset counter, KL controller, RNG), stops cleanly on
NaN rewards or losses, and `alignlab compare` overlays runs."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from alignlab.config import ModelSettings, TrainSettings, load_config
from alignlab.errors import TrainingError
from alignlab.generation import SamplingSettings
from alignlab.recipes import ppo
from alignlab.recipes.ppo import DriftEvalSettings, PPOConfig, PPOSettings
from alignlab.rl.elastic_reset import ElasticResetSettings
from alignlab.runs import read_metrics

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def tiny_cfg(tiny_dir, out, iterations=4, **ppo_kw) -> PPOConfig:
    return PPOConfig(
        model=ModelSettings(name_or_path=str(tiny_dir)),
        train=TrainSettings(lr=3e-4, batch_size=8, log_every=1, save_every=0, seed=0, progress=False),
        prompts="testbed:reviews", reward="gold:sentiment", n_prompts=64,
        generation=SamplingSettings(max_new_tokens=8, batch_size=16),
        ppo=PPOSettings(iterations=iterations, rollout_batch=16, epochs=2, **ppo_kw),
        eval=DriftEvalSettings(every=2, n_prompts=16, n_reference=16, reference_text="testbed:neutral"),
        output_dir=str(out),
    )


def _strip(records):
    return [{k: v for k, v in r.items() if not k.startswith("time")} for r in records]


def test_ppo_raises_gold_reward_and_drift_grows(tiny_dir, tmp_path):
    cfg = tiny_cfg(tiny_dir, tmp_path / "run", iterations=8, kl_coef=0.0)
    cfg.train.lr = 3e-3
    cfg.eval.every = 8
    cfg.eval.n_prompts = 32
    res = ppo.run(cfg)
    evals = [r for r in read_metrics(res.run_dir / "metrics.jsonl") if "eval_reward" in r]
    start, end = evals[0], evals[-1]
    assert start["iteration"] == 0 and start["eval_kl"] == 0.0
    assert end["eval_reward"] > start["eval_reward"] + 0.3, (start, end)  # measured: 0.13 → 1.06
    assert end["eval_kl"] > 2.0  # drift grows with the reward (measured KL ≈ 20)
    assert (res.model_dir / "value_head.safetensors").exists() and (res.model_dir / "config.json").exists()
    assert (res.run_dir / "reward_vs_drift_kl.png").exists() and (res.run_dir / "report.html").exists()


def test_resume_mid_run_is_identical_with_elastic_reset(tiny_dir, tmp_path):
    def cfg_for(out):
        cfg = tiny_cfg(tiny_dir, out, iterations=4, kl_target=0.5, kl_horizon=100.0, reward_norm="running")
        cfg.train.save_every = 2
        cfg.train.keep_checkpoints = 5
        cfg.elastic_reset = ElasticResetSettings(enabled=True, decay=0.8, reset_every=3, ema_update="step",
                                                 kl_anchor="ema", reset_optimizer=True)
        return cfg

    full = ppo.run(cfg_for(tmp_path / "full"))
    # simulate a crash after iteration 2 (step 8): keep only that checkpoint and the log
    crashed = tmp_path / "crashed"
    shutil.copytree(full.run_dir, crashed)
    shutil.rmtree(crashed / "final")
    for ck in (crashed / "checkpoints").iterdir():
        if not ck.name.endswith("0000008"):
            shutil.rmtree(ck)
    resumed = ppo.run(cfg_for(crashed))
    a, b = read_metrics(full.run_dir / "metrics.jsonl"), read_metrics(crashed / "metrics.jsonl")
    assert _strip(a) == _strip(b)
    assert sum(r.get("event") == "elastic_reset" for r in a) == 5  # 16 steps, n = 3
    wa = load_file(str(full.model_dir / "model.safetensors"))
    wb = load_file(str(resumed.model_dir / "model.safetensors"))
    assert all(torch.equal(wa[k], wb[k]) for k in wa)


def test_nan_reward_stops_with_clear_message_and_intact_checkpoint(tiny_dir, tmp_path, monkeypatch):
    calls = {"n": 0}

    def flaky(prompts, responses):
        calls["n"] += 1
        return [float("nan") if calls["n"] >= 4 else 0.0 for _ in responses]

    monkeypatch.setattr(ppo.resolve, "reward_fn", lambda spec, key="reward": flaky)
    cfg = tiny_cfg(tiny_dir, tmp_path / "run", iterations=4)
    cfg.eval.every = 0
    cfg.train.save_every = 1
    with pytest.raises(TrainingError, match=r"nan for sample 0 at iteration 4.*Last good checkpoint: .*step-0000012"):
        ppo.run(cfg)
    ckpts = sorted((tmp_path / "run" / "checkpoints").glob("step-*"))
    assert ckpts[-1].name == "step-0000012" and (ckpts[-1] / "COMPLETE").exists()
    assert load_file(str(ckpts[-1] / "trainable.safetensors"))


def test_nan_loss_stops_the_run(tiny_dir, tmp_path, monkeypatch):
    real = ppo.ppo_loss

    def nan_loss(model, mb, cfg):
        loss, m = real(model, mb, cfg)
        return loss * float("nan"), m

    monkeypatch.setattr(ppo, "ppo_loss", nan_loss)
    cfg = tiny_cfg(tiny_dir, tmp_path / "run", iterations=1)
    with pytest.raises(TrainingError, match="loss is nan at step 1"):
        ppo.run(cfg)


def test_compare_overlays_runs_and_rejects_runs_without_evals(tmp_path, capsys):
    from alignlab.cli import main

    dirs = []
    for name, er, drift in (("a", False, 0.5), ("b", True, 0.25)):
        d = tmp_path / name
        d.mkdir()
        (d / "config.yaml").write_text(json.dumps({"ppo": {"kl_coef": 0.05}, "elastic_reset": {"enabled": er, "reset_every": 9}}))
        recs = [{"step": i, "iteration": i, "eval_reward": 0.1 * i, "eval_kl": drift * i, "eval_ppl": 4 + drift * i} for i in range(4)]
        (d / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in recs))
        dirs.append(str(d))
    assert main(["compare", *dirs, "--out", str(tmp_path / "cmp")]) == 0
    html = (tmp_path / "cmp" / "report.html").read_text()
    assert "Elastic Reset n=9" in html and "PPO β=0.05" in html
    assert (tmp_path / "cmp" / "reward_vs_drift_kl.png").exists() and (tmp_path / "cmp" / "reward_vs_drift_ppl.png").exists()
    empty = tmp_path / "empty"
    empty.mkdir()
    assert main(["compare", str(empty), "--out", str(tmp_path / "cmp2")]) == 2
    assert "no evaluation records" in capsys.readouterr().err


def test_example_configs_load_and_bad_keys_are_named():
    from alignlab.errors import ConfigError

    p = load_config(PPOConfig, EXAMPLES / "ppo.yaml")
    e = load_config(PPOConfig, EXAMPLES / "elastic_reset.yaml")
    assert not p.elastic_reset.enabled and e.elastic_reset.enabled
    assert ppo.validate(p) > 0 and ppo.validate(e) > 0
    with pytest.raises(ConfigError, match="ppo.rollout_batch"):
        ppo.validate(load_config(PPOConfig, None, ["ppo.rollout_batch=10", "train.batch_size=4", "reward=x"]))
    with pytest.raises(ConfigError, match="elastic_reset.kl_anchor"):
        load_config(PPOConfig, None, ["elastic_reset.kl_anchor=ref"])
    with pytest.raises(ConfigError, match="reward"):
        ppo.validate(load_config(PPOConfig, None, []))


def test_learned_reward_model_folder_drives_ppo(tiny_dir, tmp_path):
    import math

    from alignlab.errors import ConfigError
    from alignlab.models.reward import load_reward_model
    from alignlab.resolve import reward_fn as load_reward_fn

    rm, tok = load_reward_model(str(tiny_dir))  # the tiny LM's backbone + a fresh scalar head
    rm.save_pretrained(tmp_path / "rm")
    tok.save_pretrained(tmp_path / "rm")
    fn = load_reward_fn(str(tmp_path / "rm"))
    scores = fn(["review : the food was"] * 2, [" great .", " awful ."])
    assert len(scores) == 2 and all(math.isfinite(s) for s in scores) and scores[0] != scores[1]
    cfg = tiny_cfg(tiny_dir, tmp_path / "run", iterations=1)
    cfg.reward = str(tmp_path / "rm")
    res = ppo.run(cfg)
    last = [r for r in read_metrics(res.run_dir / "metrics.jsonl") if "eval_reward" in r][-1]
    assert "eval_gold_reward" in last  # the gold reward is still measured on the testbed task
    with pytest.raises(ConfigError, match="no such reward-model folder"):
        load_reward_fn(str(tmp_path / "missing"))


def test_cli_ppo_with_example_config_and_clean_config_errors(tiny_dir, tmp_path, capsys):
    from alignlab.cli import main

    out = tmp_path / "cli"
    rc = main(["ppo", "-c", str(EXAMPLES / "elastic_reset.yaml"), "--out", str(out),
               f"model.name_or_path={tiny_dir}", "ppo.iterations=1", "ppo.rollout_batch=16",
               "generation.max_new_tokens=6", "eval.every=1", "eval.n_prompts=8", "eval.n_reference=8",
               "train.progress=false"])
    assert rc == 0 and (out / "report.html").exists() and (out / "final" / "value_head.safetensors").exists()
    assert main(["ppo", "ppo.kl_estimator=k9"]) == 2
    assert "ppo.kl_estimator" in capsys.readouterr().err


def test_lora_policy_with_ema_anchor_runs_and_saves_an_adapter(tiny_dir, tmp_path):
    cfg = tiny_cfg(tiny_dir, tmp_path / "lora", iterations=2)
    cfg.model.lora.enabled = True
    cfg.eval.every = 0
    cfg.elastic_reset = ElasticResetSettings(enabled=True, decay=0.5, reset_every=3, kl_anchor="ema")
    res = ppo.run(cfg)
    assert res.metrics["resets"] == 2  # 8 optimiser steps, reset every 3
    assert (res.model_dir / "adapter_config.json").exists()
    assert (res.model_dir / "value_head.safetensors").exists()


def test_fused_scoring_matches_a_separate_scoring_pass(tiny_dir, tmp_path):
    """epochs=1 with one minibatch: taking π_old, V_old from the update's forward gives the same
    run (metrics and weights) as the separate no-grad scoring pass, with Elastic Reset on."""
    def cfg_for(out, fuse):
        cfg = tiny_cfg(tiny_dir, out, iterations=3, fuse_scoring=fuse, kl_target=0.5,
                       kl_horizon=100.0, reward_norm="running")
        cfg.ppo.epochs = 1
        cfg.train.batch_size = cfg.ppo.rollout_batch  # one minibatch
        cfg.elastic_reset = ElasticResetSettings(enabled=True, decay=0.9, reset_every=2, ema_update="step")
        return cfg

    fused_cfg, plain_cfg = cfg_for(tmp_path / "fused", True), cfg_for(tmp_path / "plain", False)
    lin = torch.nn.Linear(1, 1)
    assert ppo.can_fuse_scoring(fused_cfg, lin) and not ppo.can_fuse_scoring(plain_cfg, lin)
    assert not ppo.can_fuse_scoring(fused_cfg, torch.nn.Sequential(lin, torch.nn.Dropout(0.1)))
    a, b = ppo.run(fused_cfg), ppo.run(plain_cfg)
    ra, rb = _strip(read_metrics(a.run_dir / "metrics.jsonl")), _strip(read_metrics(b.run_dir / "metrics.jsonl"))
    assert [sorted(r) for r in ra] == [sorted(r) for r in rb]
    # The two paths differ only by float noise (no-grad chunked vs autograd kernels, ~1e-7). Adam
    # amplifies it on the zero-initialised value head, whose gradients start near zero (measured:
    # LM weights agree to 9e-8, value-head weights of size ~1e-3 to 1.5e-5).
    for x, y in zip(ra, rb):
        for k in x:
            if isinstance(x[k], float):
                assert x[k] == pytest.approx(y[k], rel=1e-3, abs=1e-4), k
            else:
                assert x[k] == y[k], k
    for name, atol in (("model.safetensors", 1e-6), ("value_head.safetensors", 1e-4)):
        wa, wb = load_file(str(a.model_dir / name)), load_file(str(b.model_dir / name))
        for k in wa:
            torch.testing.assert_close(wa[k], wb[k], rtol=0, atol=atol)


def test_chat_prompts_with_a_model_without_chat_template_name_the_prompts_file(tiny_dir, tmp_path, capsys):
    from alignlab.cli import main

    model = tmp_path / "model"
    shutil.copytree(tiny_dir, model, ignore=shutil.ignore_patterns("pretrain", "chat_template.jinja"))
    prompts = tmp_path / "prompts.jsonl"
    rows = [{"prompt": "review : the food"}, {"prompt": [{"role": "user", "content": "review :"}]}, {"prompt": "x"}]
    prompts.write_text("".join(json.dumps(r) + "\n" for r in rows))
    rc = main(["ppo", f"model.name_or_path={model}", f"prompts={prompts}", "reward=gold:sentiment",
               "eval.n_prompts=1", "--out", str(tmp_path / "run")])
    err = capsys.readouterr().err
    assert rc == 2 and f"{prompts}: prompt 2: chat messages need a chat template" in err and "Traceback" not in err
