"""Demo stage 1: export the testbed's OASST trees to SFT threads and fine-tune the student."""

from __future__ import annotations

import json
import random

import torch

from alignlab.config import ModelSettings, TrainSettings
from alignlab.demo_stages import DemoContext, StageResult
from alignlab.generation import sample
from alignlab.models import load_model
from alignlab.recipes import sft
from alignlab.testbed.lexicon import sentiment_reward


def chat_prompts(ctx: DemoContext, n: int, seed: int = 123) -> list[list[dict[str, str]]]:
    """Held-out user questions in chat form (the demo's evaluation prompts)."""
    from alignlab.testbed.dialogues import QUESTIONS
    from alignlab.testbed.lexicon import SUBJECTS

    rng = random.Random(seed)
    return [[{"role": "user", "content": rng.choice(QUESTIONS).format(s=rng.choice(SUBJECTS))}] for _ in range(n)]


def gold_reward_of(model_dir: str, ctx: DemoContext, n: int = 64) -> float:
    """Mean gold reward of sampled answers to held-out questions."""
    model, tok = load_model(ModelSettings(name_or_path=str(model_dir)), trainable=False)
    prompts = [tok.apply_chat_template(m, tokenize=False, add_generation_prompt=True) for m in chat_prompts(ctx, n)]
    g = torch.Generator().manual_seed(ctx.seed)
    out = sample(model, tok, prompts, max_new_tokens=32, temperature=1.0, generator=g)
    return sum(sentiment_reward(t) for t in out.texts) / len(out.texts)


def run(ctx: DemoContext) -> StageResult:
    from alignlab.data.oasst import ExportFilters, export_sft, read_trees

    stage_dir = ctx.out_dir / "sft"
    stage_dir.mkdir(parents=True, exist_ok=True)
    trees_path = stage_dir / "trees.jsonl"
    trees_path.write_text("".join(json.dumps(t) + "\n" for t in ctx.world.dialogue_trees()))
    trees, _report = read_trees(trees_path)
    threads = export_sft(trees, ExportFilters(top_k=1))
    data_path = stage_dir / "sft_threads.jsonl"
    data_path.write_text("".join(json.dumps(t) + "\n" for t in threads))
    cfg = sft.SFTConfig(
        model=ModelSettings(name_or_path=ctx.base_model),
        train=TrainSettings(lr=1e-3, batch_size=16, epochs=1, max_steps=20 if ctx.quick else 120,
                            log_every=5, save_every=0, seed=ctx.seed),
        data=str(data_path), max_length=128, output_dir=str(stage_dir / "run"),
    )
    res = sft.run(cfg)
    ctx.artifacts["sft_model"] = str(res.model_dir)
    n = 16 if ctx.quick else 96
    before, after = gold_reward_of(ctx.base_model, ctx, n), gold_reward_of(str(res.model_dir), ctx, n)
    ctx.artifacts["sft_reward"] = after
    return StageResult(
        "sft",
        rows=[{"stage": "sft", "method": "base", "gold_reward": before},
              {"stage": "sft", "method": "SFT (top-1 threads)", "gold_reward": after, "loss": res.metrics.get("loss")}],
        figures=[res.run_dir / "loss_curve.png"],
        notes=[f"SFT on {len(threads)} top-ranked threads exported from {len(trees)} OASST-format trees."],
        verdict=f"SFT on {len(threads)} exported threads moved the gold reward of answers to held-out questions "
                f"{before:.2f} → {after:.2f} ({cfg.train.max_steps} steps).",
        headline=[{"method": "SFT", "measure": "gold reward of answers", "before": before, "after": after,
                   "note": "base student → SFT"}],
    )
