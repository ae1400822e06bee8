"""Every recipe for a few steps on CUDA with tiny random Llama and Qwen2 models (bf16 autocast for the
trained ones, bf16 weights for the inference ones): it runs on the GPU and every logged loss is
finite. And one SFT step and one DPO step agree between the GPU and the CPU for the same seed, to
fp32 tolerance in fp32 and to bf16 tolerance under bf16 autocast. Skipped without CUDA (conftest)."""

from __future__ import annotations

import gc
import json
import math
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import torch

from alignlab.config import load_config
from alignlab.runs import read_metrics

pytestmark = pytest.mark.gpu

ARCHS = ["llama", "qwen2"]
TRAIN = ["train.mixed_precision=bf16", "train.progress=false", "train.save_every=0", "train.seed=0",
         "train.log_every=1"]
PRINCIPLE = "review : the staff was great and friendly . the room was lovely . i would come back .<|end|>"
ROLLOUTS = ["generation.max_new_tokens=8", "generation.batch_size=16"]


@dataclass
class Inputs:
    """What a recipe's overrides are written from."""

    model: Path
    sft: Path
    rm: Path
    out: Path


# recipe -> (module, config class, overrides); the model, data and run folder come from Inputs
RECIPES: dict[str, tuple[str, str, Callable[[Inputs], list[str]]]] = {
    "sft": ("sft", "SFTConfig", lambda i: [
        f"model.name_or_path={i.model}", f"data={i.sft}", "train.max_steps=3", "train.batch_size=4",
        "max_length=96", *TRAIN]),
    "rm": ("rm", "RewardConfig", lambda i: [
        f"model.name_or_path={i.model}", f"data={i.rm}", "train.max_steps=3", "train.batch_size=4",
        "eval_fraction=0.1", "max_length=96", *TRAIN]),
    **{f"prefs-{loss}": ("prefs", "PrefsConfig", lambda i, loss=loss: [
        f"model.name_or_path={i.model}", f"data={i.rm}", f"preference.loss={loss}", "train.max_steps=3",
        "train.batch_size=4", "eval_fraction=0.1", "pairs=best_vs_worst", "max_length=96",
        "max_prompt_length=48", *TRAIN]) for loss in ("dpo", "ipo", "cal_dpo")},
    "ppo-elastic_reset": ("ppo", "PPOConfig", lambda i: [
        f"model.name_or_path={i.model}", "prompts=testbed:reviews", "reward=gold:sentiment", "n_prompts=32",
        *ROLLOUTS, "ppo.iterations=2", "ppo.rollout_batch=16", "ppo.epochs=2", "train.batch_size=8",
        "eval.every=2", "eval.n_prompts=8", "eval.n_reference=8", "eval.reference_text=testbed:neutral",
        "elastic_reset.enabled=true", "elastic_reset.reset_every=2", *TRAIN]),
    "psle": ("psle", "PSLEConfig", lambda i: [
        f"model.name_or_path={i.model}", "queries=testbed:reviews", "reward=gold:sentiment",
        f"principle={json.dumps(PRINCIPLE)}", "n_queries=32", "eval_queries=8", "iterations=2", "queries_per_iteration=8",
        "train.batch_size=4", "generation.max_new_tokens=6", "generation.batch_size=32", *TRAIN]),
    "akd": ("akd", "AKDConfig", lambda i: [
        f"student.name_or_path={i.model}", f"teacher.name_or_path={i.model}", "problems=testbed", "rounds=1",
        "exercises_per_round=4", "student_samples=2", "teacher_samples=2", "epochs=1", "train.batch_size=4",
        "generation.max_new_tokens=10", "generation.batch_size=64", "eval.n=2", "eval.ks=[1,2]", "eval.limit=3",
        *TRAIN]),
}
INFERENCE: dict[str, tuple[str, str, Callable[[Inputs], list[str]]]] = {
    "steer": ("steer", "SteerConfig", lambda i: [
        f"model.name_or_path={i.model}", "model.dtype=bfloat16", "data=testbed:sentiment",
        "eval_prompts=testbed:reviews", "score=gold:sentiment", "layers=[1]", "coefficients=[-4.0,0.0,4.0]",
        "n_eval=4", "max_new_tokens=6"]),
    "fv": ("fv", "FVConfig", lambda i: [
        f"model.name_or_path={i.model}", "model.dtype=bfloat16", "data=testbed:antonym", "n_prompts=4",
        "n_shots=3", "top_k=2", "n_eval=5"]),
    "sea": ("sea", "SEAConfig", lambda i: [
        f"model.name_or_path={i.model}", "model.dtype=bfloat16", "data=testbed:facts",
        "eval_data=testbed:facts", "top_layers=1", "k_pos=0.99", "k_neg=0.99"]),
}


def _run(module: str, cls: str, overrides: list[str], out: Path):
    import importlib

    mod = importlib.import_module(f"alignlab.recipes.{module}")
    cfg = load_config(getattr(mod, cls), None, [*overrides, f"output_dir={out}"])
    return mod.run(cfg)


def _inputs(tiny_models, dialogue_files, arch: str, out: Path) -> Inputs:
    return Inputs(tiny_models[arch], dialogue_files["sft"], dialogue_files["rm"], out)


def _numbers(metrics: dict[str, Any]) -> dict[str, float]:
    return {k: float(v) for k, v in metrics.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}


def assert_finite_losses(run_dir: Path) -> None:
    """Every loss-like number in RUN/metrics.jsonl is finite, and there is at least one."""
    losses = [(r.get("step"), k, v) for r in read_metrics(run_dir / "metrics.jsonl")
              for k, v in _numbers(r).items() if "loss" in k]
    assert losses, f"{run_dir}: no loss logged"
    bad = [x for x in losses if not math.isfinite(x[2])]
    assert not bad, f"non-finite losses: {bad[:5]}"


@contextmanager
def runs_on(device: torch.device):
    """Asserts that the block allocated GPU memory (its peak rose above what was held before it)."""
    if device.type != "cuda":
        yield
        return
    gc.collect()
    torch.cuda.synchronize()
    before = torch.cuda.memory_allocated()
    torch.cuda.reset_peak_memory_stats()
    yield
    torch.cuda.synchronize()
    assert torch.cuda.max_memory_allocated() > before, "nothing was allocated on the GPU: it ran on the CPU"


@pytest.fixture
def scripted_teacher(monkeypatch):
    """AKD's frozen teacher answers with each exercise's reference solution (every other one wrong), so a
    random student still gets (teacher > student) pairs and distillation examples to train on."""
    from alignlab.recipes import akd

    real = akd.attempt

    def attempt(model, tokenizer, problems, n, cfg, generator):
        if any(p.requires_grad for p in model.parameters()):
            return real(model, tokenizer, problems, n, cfg, generator)
        return [["\n    return None\n" if j % 2 else "\n" + p.canonical_solution for j in range(n)] for p in problems]

    monkeypatch.setattr(akd, "attempt", attempt)


@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("recipe", list(RECIPES))
def test_trained_recipe_runs_in_bf16_with_finite_losses(recipe, arch, tiny_models, dialogue_files, device,
                                                        tmp_path, request):
    if recipe == "akd":
        request.getfixturevalue("scripted_teacher")
    module, cls, overrides = RECIPES[recipe]
    with runs_on(device):
        res = _run(module, cls, overrides(_inputs(tiny_models, dialogue_files, arch, tmp_path)), tmp_path / recipe)
    assert_finite_losses(res.run_dir)
    assert res.model_dir is not None and Path(res.model_dir).is_dir()
    saved = load_config_yaml(res.run_dir)
    assert saved["train"]["mixed_precision"] == "bf16"


def load_config_yaml(run_dir: Path) -> dict[str, Any]:
    import yaml

    return yaml.safe_load((run_dir / "config.yaml").read_text())


@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("recipe", list(INFERENCE))
def test_inference_recipe_runs_in_bf16_with_finite_results(recipe, arch, tiny_models, dialogue_files, device,
                                                           tmp_path):
    module, cls, overrides = INFERENCE[recipe]
    with runs_on(device):
        res = _run(module, cls, overrides(_inputs(tiny_models, dialogue_files, arch, tmp_path)), tmp_path / recipe)
    numbers = _numbers(res.metrics)
    assert numbers, res.metrics
    assert all(math.isfinite(v) for v in numbers.values()), numbers


@pytest.mark.parametrize("arch", ARCHS)
def test_embed_then_erm_on_the_device(arch, tiny_models, pool_file, device, tmp_path):
    with runs_on(device):
        emb = _run("embed", "EmbedConfig", [f"model={tiny_models[arch]}", f"data={pool_file}",
                                            f"cache_dir={tmp_path / 'cache'}", "progress=false"], tmp_path / "emb")
    assert emb.metrics["rows"] == 60 and emb.metrics["dim"] == 64
    res = _run("erm", "ERMConfig", ["mode=train", f"embeddings={emb.run_dir}", "quality=10", "n_pairs=300",
                                    "members=2", "test_frac=0.25", "mlp.hidden=[32,16]", "progress=false"],
               tmp_path / "erm")
    numbers = _numbers(res.metrics)
    assert numbers and all(math.isfinite(v) for v in numbers.values()), numbers


# --- GPU and CPU agree on one step ---------------------------------------------------------------


def _one_step(model_dir: Path, rm_file: Path, kind: str, cpu: bool, mixed: str, out: Path) -> dict[str, float]:
    """Loss and gradient norm of a first step, and the loss of a second step (after one AdamW update),
    for SFT or DPO (reference: a frozen copy on the same device), from the same seed and batch."""
    from accelerate import Accelerator
    from accelerate.state import AcceleratorState

    from alignlab.config import TrainSettings
    from alignlab.data.chat import collate, encode_pair
    from alignlab.data.preference import read_preferences
    from alignlab.data.preference_batches import encode_pairs
    from alignlab.losses.lm import causal_lm_loss
    from alignlab.models import load_model
    from alignlab.recipes.prefs import PrefsConfig, make_loss_fn, pair_collator
    from alignlab.runs import RunDir
    from alignlab.train.loop import Trainer, seed_everything

    AcceleratorState._reset_state(reset_partial_state=True)
    seed_everything(0)
    model, tok = load_model(str(model_dir))
    acc = Accelerator(cpu=cpu, mixed_precision=mixed)
    cfg = TrainSettings(lr=1e-4, batch_size=4, progress=False, save_every=0, max_grad_norm=0.0)
    trainer = Trainer(model, cfg, RunDir(out, lock=False), accelerator=acc)
    if kind == "sft":
        pairs = [("how was the food ?", "the food was great ."), ("how was the room ?", "the room was awful ."),
                 ("review :", "the staff was friendly and the view was lovely ."), ("hi", "hello .")]
        batch = collate([encode_pair(tok, p, r, 64) for p, r in pairs], tok.pad_token_id)
        loss_fn = causal_lm_loss
    else:
        recs, _ = read_preferences(str(rm_file), "error", "best_vs_worst")
        items, _ = encode_pairs(tok, recs[:4], 96, 48, "truncate")
        batch = pair_collator(trainer.unwrapped, tok.pad_token_id)(items)
        ref, _ = load_model(str(model_dir), trainable=False)
        ref.to(acc.device)
        loss_fn = make_loss_fn(PrefsConfig(reference="copy"), ref)
    first = trainer.step(loss_fn, [batch])
    second = trainer.step(loss_fn, [batch])
    return {"loss": first["loss"], "grad_norm": first["grad_norm"], "loss_after_update": second["loss"]}


@pytest.mark.parametrize("kind", ["sft", "dpo"])
@pytest.mark.parametrize("mixed,rel", [("no", 1e-4), ("bf16", 3e-2)])
def test_gpu_and_cpu_agree_on_one_step(kind, mixed, rel, tiny_models, dialogue_files, device, tmp_path):
    """The GPU run (fp32, or bf16 autocast) against the CPU in fp32, same seed and batch: fp32 agrees to
    1e-4 relative, bf16 to 3e-2 (bf16 keeps 8 bits of mantissa: ~4e-3 per rounding)."""
    gpu = _one_step(tiny_models["llama"], dialogue_files["rm"], kind, device.type == "cpu", mixed, tmp_path / "gpu")
    cpu = _one_step(tiny_models["llama"], dialogue_files["rm"], kind, True, "no", tmp_path / "cpu")
    assert all(math.isfinite(v) for v in (*gpu.values(), *cpu.values())), (gpu, cpu)
    if kind == "dpo":
        assert cpu["loss"] == pytest.approx(math.log(2), abs=1e-5)  # policy == reference at the first step
    for key in cpu:
        assert gpu[key] == pytest.approx(cpu[key], rel=rel, abs=1e-6), (key, gpu, cpu)
    assert cpu["loss_after_update"] != pytest.approx(cpu["loss"], abs=1e-7)  # the update did move the loss
