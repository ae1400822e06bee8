"""The AKD recipe end to end on the tiny testbed model (teacher and student alike; the teacher's
attempts are scripted so that pairs exist): every attempt is kept, pairs are only (passing
teacher ≻ failing student), held-out pass@k is logged per round, and bad configs are errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from alignlab.cli import build_parser
from alignlab.config import ModelSettings, TrainSettings, load_config
from alignlab.errors import ConfigError, DataError
from alignlab.generation import SamplingSettings
from alignlab.recipes import akd
from alignlab.recipes.akd import AKDConfig, PassAtKSettings
from alignlab.runs import launched, read_metrics

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def tiny_cfg(tiny_dir, out, rounds=2, **kw) -> AKDConfig:
    model = ModelSettings(name_or_path=str(tiny_dir))
    settings = dict(exercises_per_round=4, student_samples=2, teacher_samples=2, epochs=1,
                    train=TrainSettings(lr=1e-3, batch_size=4, save_every=1, seed=0, progress=False),
                    generation=SamplingSettings(max_new_tokens=10, temperature=0.8, top_p=0.95, batch_size=64),
                    eval=PassAtKSettings(n=2, ks=[1, 2], limit=3))
    return AKDConfig(student=model, teacher=model, problems="testbed", output_dir=str(out), rounds=rounds,
                     **{**settings, **kw})


def _script_teacher(monkeypatch, wrong: bool) -> None:
    """The frozen teacher answers every exercise with its reference solution (every other sample
    wrong when `wrong`); the student samples as usual."""
    real = akd.attempt

    def attempt(model, tokenizer, problems, n, cfg, generator):
        if any(p.requires_grad for p in model.parameters()):
            return real(model, tokenizer, problems, n, cfg, generator)
        return [["\n    return None\n" if wrong and j % 2 else "\n" + p.canonical_solution for j in range(n)]
                for p in problems]

    monkeypatch.setattr(akd, "attempt", attempt)


@pytest.fixture
def scripted_teacher(monkeypatch):
    """The frozen teacher answers every exercise with one right and one wrong solution."""
    _script_teacher(monkeypatch, wrong=True)


def _rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_run_keeps_every_attempt_and_pairs_only_teacher_passes_over_student_failures(tiny_dir, tmp_path,
                                                                                     scripted_teacher, world):
    res = akd.run(tiny_cfg(tiny_dir, tmp_path / "run"))
    run = res.run_dir
    probe = _rows(run / "attempts" / "round-0000.jsonl")
    assert {r["skill"] for r in probe} == {e.task_id for e in world.train_code}
    assert {r["role"] for r in probe} == {"student"} and len(probe) == 2 * len(world.train_code)
    recs = read_metrics(run / "metrics.jsonl")
    rounds = [r for r in recs if r["round"] > 0]
    assert [r["round"] for r in recs] == [r["iteration"] for r in recs] == [0, 1, 2]
    assert {"eval_pass@1", "eval_pass@2", "teacher_pass@1", "probe_student_pass_rate"} <= set(recs[0])
    for rec in rounds:
        rows = _rows(run / "attempts" / f"round-{rec['round']:04d}.jsonl")
        assert len(rows) == 4 * (2 + 2) and all(k in rows[0] for k in ("status", "reason", "seconds", "completion"))
        assert sum(rec[f"bucket{b}_drawn"] for b in range(4)) == 4 == rec["exercises"]
        chosen = [r for r in rows if "chosen" in r["use"]]
        rejected = [r for r in rows if "rejected" in r["use"]]
        assert all(r["role"] == "teacher" and r["passed"] for r in chosen)
        assert all(r["role"] == "student" and not r["passed"] for r in rejected)
        assert len(rejected) == rec["pairs"] > 0
        assert {r["task_id"] for r in rejected} <= {r["task_id"] for r in chosen}
        assert rec["teacher_pass_rate"] == 0.5 and rec["teacher_solved"] == 1.0
        assert rec["distill"] == 4 and rec["steps"] == -(-(rec["pairs"] + 4) // 4)  # one epoch of batch 4
        assert {"loss", "pref_loss", "distill_nll", "chosen_reward", "eval_pass@1"} <= set(rec)
    assert (run / "eval" / "round-0000-teacher.jsonl").exists()
    assert res.metrics["pairs"] == sum(r["pairs"] for r in rounds) and "student_pass@1_after" in res.metrics
    assert (run / "report.html").exists() and (run / "pass_at_k.png").exists()
    assert (res.model_dir / "model.safetensors").exists()


@pytest.mark.slow
def test_resumed_run_repeats_the_uninterrupted_one(tiny_dir, tmp_path, scripted_teacher):
    def cfg(out, rounds):
        c = tiny_cfg(tiny_dir, out, rounds=rounds)
        c.curriculum.probe, c.eval.teacher, c.eval.every, c.eval.limit = False, False, 0, 2
        return c

    full = akd.run(cfg(tmp_path / "full", 2))
    akd.run(cfg(tmp_path / "split", 1))
    with launched(None, resume_anyway=True):  # more rounds is a changed config: go on explicitly
        split = akd.run(cfg(tmp_path / "split", 2))  # resumes after round 1
    a, b = read_metrics(full.run_dir / "metrics.jsonl"), read_metrics(split.run_dir / "metrics.jsonl")
    assert [r["round"] for r in b] == [0, 1, 2]
    for ra, rb in zip(a, b):  # every number of every round (the split run also evaluated after round 1)
        shared = [k for k in ra if k in rb and not k.startswith("time") and isinstance(ra[k], (int, float))]
        assert {"pairs", "loss", "pref_loss", "distill_nll", "student_pass_rate"} <= set(shared) or ra["round"] == 0
        for key in shared:
            assert ra[key] == pytest.approx(rb[key], rel=1e-5), (ra["round"], key)
    wa, wb = (load_file(str(r.model_dir / "model.safetensors")) for r in (full, split))
    assert all(torch.equal(wa[k], wb[k]) for k in wa)


@pytest.mark.slow
def test_distilling_a_teacher_that_solves_its_exercises_lifts_held_out_pass_at_k(tiny_dir, tmp_path, monkeypatch):
    _script_teacher(monkeypatch, wrong=False)
    cfg = tiny_cfg(tiny_dir, tmp_path / "run", rounds=6, exercises_per_round=16, student_samples=2, teacher_samples=1)
    cfg.epochs, cfg.train.lr, cfg.train.batch_size, cfg.generation.max_new_tokens = 4, 3e-3, 8, 16
    cfg.curriculum.probe, cfg.eval.teacher, cfg.eval.every, cfg.eval.limit = False, False, 0, 0
    cfg.eval.n, cfg.eval.ks = 4, [1, 4]
    # 6 rounds, not 4: after 4 the lift depended on the CPU's float rounding (seed 0 reached pass@1
    # 0.33 on one machine, 0.13 on an AMD EPYC one). After 6, measured on that EPYC, seeds 0/1/2:
    # pass@1 0.00 → 0.43 / 0.53 / 0.40, pass@4 0.00 → 0.67 / 0.73 / 0.60 on the 15 held-out problems.
    m = akd.run(cfg).metrics
    assert m["student_pass@1_after"] >= m["student_pass@1_before"] + 0.15
    assert m["student_pass@4_after"] >= m["student_pass@4_before"] + 0.3


def test_config_errors_name_the_key(tmp_path):
    with pytest.raises(ConfigError, match="unknown key 'curriculum.bukets'.*did you mean 'curriculum.buckets'"):
        load_config(AKDConfig, overrides=["curriculum.bukets=3"])
    with pytest.raises(ConfigError, match="unknown key 'student_sample'"):
        load_config(AKDConfig, overrides=["student_sample=3"])
    with pytest.raises(ConfigError, match="unknown key 'loss'"):  # the loss lives in the preference block
        load_config(AKDConfig, overrides=["loss=dpo"])
    bad = {"preference.loss=simpo": "preference.loss", "preference.calibration_reduction=sum": "calibration_reduction",
           "preference.beta=0": "preference.beta", "eval.ks=[1,11]": "eval.ks", "train.lr_schedule=cosine":
           "lr_schedule", "rounds=0": "rounds", "curriculum.weights=[1.0]": "curriculum.weights",
           "sandbox.timeout_s=0": "sandbox", "problems=": "problems", "student.name_or_path=": "student.name_or_path",
           "teacher.name_or_path=": "teacher.name_or_path"}
    for override, key in bad.items():
        with pytest.raises(ConfigError, match=key):
            akd.validate(load_config(AKDConfig, EXAMPLES / "akd.yaml", [override]))
    with pytest.raises(ConfigError, match="student.name_or_path"):  # no default model
        akd.validate(AKDConfig(problems="testbed"))
    with pytest.raises(ConfigError, match="problems"):  # no default problems
        akd.validate(AKDConfig(student=ModelSettings(name_or_path="a"), teacher=ModelSettings(name_or_path="b")))
    cfg = load_config(AKDConfig, EXAMPLES / "akd.yaml", ["preference.loss=cal_dpo", "preference.beta=0.01"])
    akd.validate(cfg)
    assert (cfg.student.name_or_path, cfg.teacher.name_or_path) == ("testbed:tiny", "testbed:student")
    assert (cfg.preference.loss, cfg.preference.beta, cfg.preference.calibration_reduction) == (
        "cal_dpo", 0.01, "example")
    assert (cfg.generation.temperature, cfg.generation.top_p) == (0.8, 0.95)
    defaults = AKDConfig().generation
    assert (defaults.max_new_tokens, defaults.temperature, defaults.top_p, defaults.batch_size) == (48, 0.8, 0.95, 64)
    args = build_parser().parse_args(["akd", "-c", str(EXAMPLES / "akd.yaml"), "rounds=1"])
    assert callable(args.func)


def test_humaneval_format_file_splits_into_skills_and_held_out(tmp_path):
    rows = [{"task_id": f"T/{i}", "prompt": f"def f{i}(x):\n", "entry_point": f"f{i}",
             "test": "def check(candidate):\n    assert candidate(1) == 1\n"} for i in range(10)]
    path = tmp_path / "problems.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    proposer, held = akd.load_problems(AKDConfig(problems=str(path)))
    assert [p.task_id for p in held] == ["T/0", "T/5"] and len(proposer.skills) == 8
    with pytest.raises(DataError, match="overlap"):
        akd.load_problems(AKDConfig(problems=str(path), eval_problems=str(path)))
