"""Where steering breaks: steering success as prompt structure and context complexity vary.

The same task prompts are wrapped into conditions — zero-shot, few-shot, one distracting
text, a long distracting context, a multi-step instruction — and each condition is scored
with and without the intervention. Success per condition: the mean shift (steered −
unsteered), the share of prompts the intervention moved the right way, and the shift
kept relative to zero-shot. Any intervention fits: it is a callable that returns
per-prompt scores for (prompts, steered?).
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

CONDITIONS = ("zero_shot", "few_shot", "distractor", "long_context", "multi_step")
Evaluator = Callable[[list[str], bool], list[float]]


@dataclass(frozen=True)
class Condition:
    """Prompts of one condition, aligned with the zero-shot prompts (same order)."""

    name: str
    prompts: list[str]


def build_conditions(
    base: Sequence[str],
    shots: Sequence[str],
    distractors: Sequence[str],
    multi_step: Callable[[str, random.Random], str],
    sep: str = "\n",
    n_shots: int = 3,
    long_factor: int = 6,
    seed: int = 0,
) -> list[Condition]:
    """The five standard conditions around the task prompts `base`."""
    if not base or not shots or not distractors:
        raise ValueError("build_conditions needs task prompts, shot texts and distractor texts")
    rng = random.Random(seed)

    def ctx(pool: Sequence[str], k: int) -> str:
        return sep.join(rng.choice(pool) for _ in range(k)) + sep

    return [
        Condition("zero_shot", list(base)),
        Condition("few_shot", [ctx(shots, n_shots) + b for b in base]),
        Condition("distractor", [ctx(distractors, 1) + b for b in base]),
        Condition("long_context", [ctx(distractors, long_factor) + b for b in base]),
        Condition("multi_step", [multi_step(b, rng) for b in base]),
    ]


def limits_study(conditions: Sequence[Condition], evaluate: Evaluator, tokenizer=None,
                 progress: bool = False) -> list[dict]:
    """One row per condition: unsteered / steered mean score, shift, success rate, retained shift."""
    from alignlab.progress import progress_bar

    rows = []
    with progress_bar("steering limits", total=len(conditions), enabled=progress) as bar:
        for cond in conditions:
            off = evaluate(cond.prompts, False)
            on = evaluate(cond.prompts, True)
            n = len(cond.prompts)
            row = {
                "condition": cond.name,
                "unsteered": sum(off) / n,
                "steered": sum(on) / n,
                "shift": (sum(on) - sum(off)) / n,
                "success_rate": sum(b > a for a, b in zip(off, on)) / n,
            }
            if tokenizer is not None:
                row["prompt_tokens"] = sum(len(tokenizer(p, add_special_tokens=False)["input_ids"]) for p in cond.prompts) / n
            rows.append(row)
            bar.advance()
    ref = rows[0]["shift"] if rows and rows[0]["condition"] == "zero_shot" else None
    for r in rows:
        r["retained"] = r["shift"] / ref if ref else float("nan")
    return rows


def generation_evaluator(model, tokenizer, steer: Callable[[], object], score: Callable[[str], float],
                         max_new_tokens: int = 24, temperature: float = 1.0, seed: int = 0,
                         batch_size: int = 32) -> Evaluator:
    """Scores of sampled continuations; `steer()` returns the hooks context of the intervention."""
    import torch

    from alignlab.generation import sample

    def evaluate(prompts: list[str], steered: bool) -> list[float]:
        g = torch.Generator().manual_seed(seed)
        if steered:
            with steer():
                out = sample(model, tokenizer, prompts, max_new_tokens, temperature, batch_size=batch_size, generator=g)
        else:
            out = sample(model, tokenizer, prompts, max_new_tokens, temperature, batch_size=batch_size, generator=g)
        return [score(t) for t in out.texts]

    return evaluate


def next_token_evaluator(model, tokenizer, steer: Callable[[], object], answers: Sequence[str],
                         prefix: str = " ") -> Evaluator:
    """1.0 where the top-1 next token is the answer's first token (function vectors)."""
    import torch

    from alignlab.interventions.function_vectors import first_token_ids, next_token_logprobs

    targets = torch.tensor(first_token_ids(tokenizer, answers, prefix))

    def evaluate(prompts: list[str], steered: bool) -> list[float]:
        if steered:
            with steer():
                lp = next_token_logprobs(model, tokenizer, prompts)
        else:
            lp = next_token_logprobs(model, tokenizer, prompts)
        return (lp.argmax(-1) == targets).float().tolist()

    return evaluate


def plot_limits(rows: Sequence[dict], path: str | Path, title: str = "steering success by condition") -> Path:
    """Grouped bars: unsteered vs steered score per condition."""
    from alignlab.plots import plt, save_figure

    names = [r["condition"] for r in rows]
    xs = range(len(rows))
    fig, ax = plt.subplots(figsize=(7, 4), dpi=110)
    ax.bar([x - 0.2 for x in xs], [r["unsteered"] for r in rows], width=0.4, label="unsteered")
    ax.bar([x + 0.2 for x in xs], [r["steered"] for r in rows], width=0.4, label="steered")
    ax.set_xticks(list(xs), names, rotation=15)
    ax.set_ylabel("score")
    ax.set_title(title)
    ax.axhline(0, color="grey", lw=0.8)
    ax.legend(fontsize=8)
    return save_figure(fig, path)
