"""What several claim rows share: the built-in world, held-out questions, sampling and gold
scoring, drift under a reference model, and the SFT model of each seed (trained once per command)."""

from __future__ import annotations

import json
import random
import statistics
from functools import lru_cache
from pathlib import Path
from typing import Any

from alignlab.claims.row import RowContext


@lru_cache(maxsize=1)
def world():
    """The built-in test world (deterministic; built once per process)."""
    from alignlab.testbed.world import World

    return World()


def gold(texts: list[str]) -> list[float]:
    """The world's gold sentiment reward of each text."""
    from alignlab.testbed.lexicon import sentiment_reward

    return [sentiment_reward(t) for t in texts]


def mean(xs: list[float]) -> float:
    return statistics.fmean(xs) if xs else float("nan")


def write_jsonl(path: Path, rows: list[dict[str, Any]]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def chat_questions(n: int, seed: int) -> list[list[dict[str, str]]]:
    """n user questions in chat form, drawn with a seed no training data uses (10_000 + seed)."""
    from alignlab.testbed.dialogues import QUESTIONS
    from alignlab.testbed.lexicon import SUBJECTS

    rng = random.Random(10_000 + seed)
    return [[{"role": "user", "content": rng.choice(QUESTIONS).format(s=rng.choice(SUBJECTS))}] for _ in range(n)]


def render(tok, queries: list) -> list[str]:
    """Chat queries through the chat template (with the generation prompt); strings as they are."""
    return [q if isinstance(q, str) else tok.apply_chat_template(q, tokenize=False, add_generation_prompt=True)
            for q in queries]


def sample_texts(model, tok, prompts: list[str], max_new_tokens: int, seed: int, temperature: float = 1.0) -> list[str]:
    """Sampled continuations of rendered prompts with a seeded generator on the model's device."""
    import torch

    from alignlab.generation import sample

    device = next(model.parameters()).device
    g = torch.Generator(device=device).manual_seed(seed)
    return sample(model, tok, prompts, max_new_tokens=max_new_tokens, temperature=temperature, generator=g).texts


def nll_per_token(ref_model, tok, prompts: list[str], texts: list[str]) -> float:
    """Mean per-token negative log-likelihood of texts under a reference model: how far a
    policy's samples have drifted from it (1 nat/token ≈ the reference's own samples)."""
    from alignlab.scoring import score_completions

    keep = [i for i, t in enumerate(texts) if t.strip()]
    if not keep:
        return float("nan")
    lp = score_completions(ref_model, tok, [prompts[i] for i in keep], [texts[i] for i in keep], average=True)
    return -mean(lp)


def load(model_dir: str | Path):
    """A frozen (model, tokenizer) for evaluation."""
    from alignlab.models import load_model

    return load_model(str(model_dir), trainable=False)


def load_checkpoint(model_dir: str | Path, checkpoint: Path):
    """A frozen model `model_dir` with a training checkpoint's weights loaded over it."""
    from safetensors.torch import load_file

    model, tok = load(model_dir)
    weights = load_file(str(checkpoint / "trainable.safetensors"))
    device = next(model.parameters()).device
    missing = model.load_state_dict({k: v.to(device) for k, v in weights.items()}, strict=False)
    if missing.unexpected_keys:
        raise RuntimeError(f"{checkpoint}: weights that {model_dir} does not have: {missing.unexpected_keys[:3]}")
    return model, tok


def sft_threads(path: Path) -> Path:
    """The world's OASST-format trees exported as top-1 SFT threads (JSONL at `path`)."""
    from alignlab.data.oasst import ExportFilters, export_sft, read_trees

    trees_path = write_jsonl(path.parent / "trees.jsonl", world().dialogue_trees())
    trees, _ = read_trees(trees_path)
    return write_jsonl(path, export_sft(trees, ExportFilters(top_k=1)))


def sft_steps(quick: bool) -> int:
    return 10 if quick else 120


def sft_model(ctx: RowContext, seed: int) -> str:
    """The SFT model of this seed (base student, top-1 exported threads), trained once per
    command under DIR/runs/sft_model/<seed> and shared by the rows that start from it."""
    from alignlab.config import ModelSettings, TrainSettings
    from alignlab.recipes import sft

    key = f"sft_model/{seed}"
    if key not in ctx.shared:
        root = ctx.out_dir.parent / "sft_model" / str(seed)
        data = sft_threads(root / "sft_threads.jsonl")
        cfg = sft.SFTConfig(
            model=ModelSettings(name_or_path=ctx.models["student"]),
            train=TrainSettings(lr=1e-3, batch_size=16, max_steps=sft_steps(ctx.quick), log_every=5, save_every=0,
                                seed=seed, progress=False),
            data=str(data), max_length=128, output_dir=str(root / "run"))
        ctx.shared[key] = str(sft.run(cfg).model_dir)
    return ctx.shared[key]
