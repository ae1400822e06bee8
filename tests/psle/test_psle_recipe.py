"""The PSLE recipe end to end on the tiny testbed model: it logs every iteration and keeps every
sample, τ decays as τ0·α^i, the principle reaches only generation prompts (never a training
target), runs resume identically, and bad configs or NaN rewards stop with clear errors."""

from __future__ import annotations

import json
import math
import shutil
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from alignlab.config import ModelSettings, TrainSettings, load_config
from alignlab.errors import ConfigError, TrainingError
from alignlab.generation import SamplingSettings
from alignlab.recipes import psle
from alignlab.recipes.psle import PSLEConfig
from alignlab.runs import read_metrics

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
# A positive in-domain demonstration (the one in examples/psle.yaml)
PRINCIPLE = "review : the staff was great and friendly . the room was lovely . i would come back .<|end|>"


def tiny_cfg(out, iterations=3, per_iteration=8, **kw) -> PSLEConfig:
    kw = {"queries": "testbed:reviews", "reward": "gold:sentiment", "principle": PRINCIPLE, **kw}
    return PSLEConfig(
        model=ModelSettings(name_or_path="testbed:tiny"),
        train=TrainSettings(lr=1e-3, batch_size=4, save_every=0, seed=0, progress=False),
        n_queries=32, eval_queries=8, iterations=iterations, queries_per_iteration=per_iteration,
        generation=SamplingSettings(max_new_tokens=6, batch_size=32), output_dir=str(out), **kw)


def _samples(run_dir: Path) -> list[dict]:
    rows = []
    for f in sorted((run_dir / "samples").glob("iteration-*.jsonl")):
        rows += [json.loads(line) for line in f.read_text().splitlines()]
    return rows


def test_run_logs_iterations_keeps_every_sample_and_decays_tau(tmp_path):
    cfg = tiny_cfg(tmp_path / "run", iterations=3, per_iteration=8)
    res = psle.run(cfg)
    recs = read_metrics(res.run_dir / "metrics.jsonl")
    its = [r for r in recs if "tau" in r]
    assert [r["iteration"] for r in its] == [1, 2, 3]
    assert [r["tau"] for r in its] == pytest.approx([0.2, 0.18, 0.162])  # τ0·α^i
    for r in its:
        assert r["n_pairs"] + r["n_sft"] == 8
        assert {"mean_delta", "reward_plain", "reward_principle", "loss", "grad_norm"} <= set(r)
    evals = [r for r in recs if "eval_reward" in r]
    assert [r["iteration"] for r in evals] == [0, 3]  # before and after, on held-out queries
    rows = _samples(res.run_dir)
    assert len(rows) == 2 * 8 * 3 == res.metrics["samples_kept"]  # nothing generated is thrown away
    for it in its:  # the logged statistics are those of the kept samples
        mine = [s for s in rows if s["iteration"] == it["iteration"]]
        assert sum(s["bucket"] == "chosen" for s in mine) == it["n_pairs"]
        plain = [s["reward"] for s in mine if s["source"] == "plain"]
        assert sum(plain) / len(plain) == pytest.approx(it["reward_plain"], abs=1e-5)
    for q in range(0, len(rows), 2):
        yp, y = rows[q], rows[q + 1]
        assert (yp["source"], y["source"]) == ("principle", "plain") and yp["prompt"] == y["prompt"]
        assert yp["delta"] == pytest.approx(yp["reward"] - y["reward"], abs=1e-6)
        if yp["delta"] > yp["tau"]:
            assert (yp["bucket"], y["bucket"]) == ("chosen", "rejected")
        else:
            assert yp["bucket"] == y["bucket"] == "sft"
            e = [math.exp(yp["reward"] / cfg.sft_temperature), math.exp(y["reward"] / cfg.sft_temperature)]
            assert yp["sft_weight"] == pytest.approx(e[0] / sum(e), abs=1e-5)
            assert yp["sft_weight"] + y["sft_weight"] == pytest.approx(1.0, abs=1e-6)
    assert res.metrics["pairs"] + res.metrics["sft_items"] == 24
    assert (res.run_dir / "report.html").exists() and (res.model_dir / "config.json").exists()


def test_principle_is_only_in_generation_prompts_never_in_training_targets(tmp_path, monkeypatch):
    principle = "zebra rule : say great things ."
    queries = tmp_path / "queries.jsonl"
    rows = [{"prompt": f"review : the {s} was"} for s in ("food", "hotel", "movie", "book", "coffee", "game")]
    rows += [{"prompt": [{"role": "user", "content": f"how was the {s} ?"}]} for s in ("room", "show", "trip", "staff", "music", "bread")]
    queries.write_text("".join(json.dumps(r) + "\n" for r in rows))
    generated: list[str] = []
    trained: list[dict] = []
    real_sample = psle.sample

    def recording_sample(model, tokenizer, prompts, **kw):
        generated.extend(prompts)
        return real_sample(model, tokenizer, prompts, **kw)

    class RecordingTrainer(psle.Trainer):
        def step(self, loss_fn, micro_batches):
            trained.extend(micro_batches)
            return super().step(loss_fn, micro_batches)

    monkeypatch.setattr(psle, "sample", recording_sample)
    monkeypatch.setattr(psle, "Trainer", RecordingTrainer)
    cfg = tiny_cfg(tmp_path / "run", iterations=2, per_iteration=8, principle=principle, queries=str(queries))
    cfg.eval_queries = 4
    res = psle.run(cfg)
    _, tok = psle.load_model(cfg.model)
    train_q, _ = psle.load_queries(cfg)
    plain = {psle.plain_prompt(tok, q) for q in train_q}
    assert any("<|user|>" in p for p in plain) and any(p.startswith("review :") for p in plain)
    # generation: y_p's prompts carry the principle (text prefix or system message), nothing else does
    with_principle = [p for p in generated if principle in p]
    assert len(with_principle) == 2 * 8 and all(p.endswith(tuple(plain)) for p in with_principle)
    assert any(p.startswith(f"<|system|>{principle}") for p in with_principle)
    assert sum(p in plain for p in generated) >= 2 * 8
    # training: every optimiser input is (plain x) + response; the principle never appears
    assert trained
    principle_ids = tok(principle, add_special_tokens=False)["input_ids"]
    for mb in trained:
        packed = mb.packed
        for ids, attn in zip(packed.input_ids, packed.attention_mask):
            prompt_ids = ids[: packed.prompt_len][attn[: packed.prompt_len].bool()].tolist()
            assert tok.decode(prompt_ids) in plain
            assert tok(tok.decode(prompt_ids), add_special_tokens=False)["input_ids"] == prompt_ids
            full = tok.decode(ids[attn.bool()].tolist())
            assert principle not in full and "zebra" not in full and "<|system|>" not in full
            assert not any(ids[i:i + len(principle_ids)].tolist() == principle_ids for i in range(len(ids)))
    assert all(s["prompt"] in plain for s in _samples(res.run_dir))  # samples record the plain x


def test_resume_mid_run_is_identical(tmp_path):
    def cfg_for(out):
        cfg = tiny_cfg(out, iterations=4, per_iteration=8)
        cfg.train.save_every = 2
        cfg.train.keep_checkpoints = 5
        return cfg

    full = psle.run(cfg_for(tmp_path / "full"))
    crashed = tmp_path / "crashed"
    shutil.copytree(full.run_dir, crashed)  # crash after iteration 2: keep its checkpoint only
    shutil.rmtree(crashed / "final")
    for ck in (crashed / "checkpoints").iterdir():
        if not ck.name.endswith(f"{2 * 2:07d}"):
            shutil.rmtree(ck)
    psle.run(cfg_for(crashed))

    def strip(recs):
        return [{k: v for k, v in r.items() if not k.startswith("time")} for r in recs]

    assert strip(read_metrics(full.run_dir / "metrics.jsonl")) == strip(read_metrics(crashed / "metrics.jsonl"))
    assert _samples(full.run_dir) == _samples(crashed)


def test_dpo_ranking_reference_is_the_sampling_policy(tmp_path):
    # one step per iteration: its first forward is the policy that sampled, so every pair's
    # log-ratios are 0 and the DPO loss is log 2 — only if each pair meets its own reference rows
    # (32 queries: enough that some pairs pass the selection threshold on any tiny build)
    cfg = tiny_cfg(tmp_path / "run", iterations=1, per_iteration=32, epochs=1, ranking="dpo", beta=0.1)
    cfg.train.batch_size = 32
    rec = [r for r in read_metrics(psle.run(cfg).run_dir / "metrics.jsonl") if "tau" in r][0]
    assert rec["n_pairs"] > 0
    assert rec["ranking_loss"] == pytest.approx(math.log(2), abs=1e-5)


def test_nan_reward_stops_with_a_clear_message(tmp_path, monkeypatch):
    calls = {"n": 0}

    def flaky(prompts, responses):
        calls["n"] += 1
        return [float("nan") if calls["n"] >= 2 else 0.0 for _ in responses]

    monkeypatch.setattr(psle.resolve, "reward_fn", lambda spec: flaky)
    with pytest.raises(TrainingError, match=r"nan for sample 0 at iteration 1.*Last good checkpoint: none yet"):
        psle.run(tiny_cfg(tmp_path / "run", iterations=1))


def test_configs_unknown_keys_and_cli(tmp_path, capsys):
    from alignlab.cli import main

    ex = load_config(PSLEConfig, EXAMPLES / "psle.yaml")
    assert (ex.tau0, ex.alpha, ex.queries, ex.reward) == (0.2, 0.9, "testbed:reviews", "gold:sentiment")
    assert ex.principle == "testbed:positive"
    assert psle.validate(ex) == 8
    with pytest.raises(ConfigError, match="principle 'testbed:postive': choose one of testbed:positive"):
        psle.validate(replace(ex, principle="testbed:postive"))
    with pytest.raises(ConfigError, match="unknown key 'tua0'.*did you mean 'tau0'"):
        load_config(PSLEConfig, None, ["tua0=0.3"])
    with pytest.raises(ConfigError, match="ranking: 'kto' is not one of"):
        load_config(PSLEConfig, None, ["ranking=kto"])
    with pytest.raises(ConfigError, match="multiple of"):
        psle.validate(load_config(PSLEConfig, EXAMPLES / "psle.yaml", ["queries_per_iteration=10", "train.batch_size=4"]))
    for key in ("principle", "queries", "reward"):  # required: no built-in default
        with pytest.raises(ConfigError, match=f"^{key}: give"):
            psle.validate(replace(ex, **{key: ""}))
    assert main(["psle", "sft_wieght=2"]) == 2
    assert "did you mean 'sft_weight'" in capsys.readouterr().err
    out = tmp_path / "cli"
    rc = main(["psle", "-c", str(EXAMPLES / "psle.yaml"), "--out", str(out), "model.name_or_path=testbed:tiny",
               "iterations=1", "queries_per_iteration=16", "eval_queries=8", "generation.max_new_tokens=6",
               "train.progress=false"])
    assert rc == 0 and (out / "samples" / "iteration-0001.jsonl").exists()
    assert "eval_reward_after" in capsys.readouterr().out


@pytest.mark.slow
def test_psle_raises_gold_reward_over_the_starting_model(tmp_path):
    cfg = tiny_cfg(tmp_path / "run", iterations=12, per_iteration=32, epochs=2)
    cfg.train.batch_size, cfg.train.lr = 16, 3e-3
    cfg.eval_queries, cfg.generation.max_new_tokens = 64, 12
    res = psle.run(cfg)
    before, after = res.metrics["eval_reward_before"], res.metrics["eval_reward_after"]
    assert after > before + 0.3, (before, after)
    assert torch.isfinite(torch.tensor(after))


def test_chat_queries_with_a_model_without_chat_template_name_the_queries_file(tiny_dir, tmp_path, capsys):
    from alignlab.cli import main

    model = tmp_path / "model"
    shutil.copytree(tiny_dir, model, ignore=shutil.ignore_patterns("pretrain", "chat_template.jinja"))
    queries = tmp_path / "queries.jsonl"
    rows = [{"prompt": "review : the food"}, {"prompt": "x"}, {"prompt": [{"role": "user", "content": "review :"}]}]
    queries.write_text("".join(json.dumps(r) + "\n" for r in rows))
    rc = main(["psle", "-c", str(EXAMPLES / "psle.yaml"), f"model.name_or_path={model}", f"queries={queries}",
               "eval_queries=1", "--out", str(tmp_path / "run")])
    err = capsys.readouterr().err
    assert rc == 2 and f"{queries}: prompt 3: chat messages need a chat template" in err and "Traceback" not in err


def test_a_built_in_principle_name_is_resolved_to_its_header(tmp_path, monkeypatch):
    """`principle: testbed:positive` puts the world's header text before x, not the name itself."""
    from alignlab.resolve import principle as resolve_principle

    header = resolve_principle("testbed:positive")
    assert header and "testbed" not in header
    generated: list[str] = []
    real_sample = psle.sample

    def recording_sample(model, tokenizer, prompts, **kw):
        generated.extend(prompts)
        return real_sample(model, tokenizer, prompts, **kw)

    monkeypatch.setattr(psle, "sample", recording_sample)
    cfg = tiny_cfg(tmp_path / "run", iterations=1, per_iteration=4, principle="testbed:positive")
    cfg.eval_queries = 4
    psle.run(cfg)
    guided = [p for p in generated if p.startswith(header)]
    assert len(guided) == 4 and not any("testbed:" in p for p in generated)
