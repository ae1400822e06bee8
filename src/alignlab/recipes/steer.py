"""`alignlab steer`: train a CAA steering vector and sweep layers × coefficients.

    alignlab steer -c examples/steer.yaml
    alignlab steer model.name_or_path=real:smollm2 data=pairs.jsonl eval_prompts=prompts.txt score=runs/rm/model

Data: contrast pairs `{"prompt", "positive", "negative"}` (JSONL) or a built-in name; the
prompts to steer from (`eval_prompts`: .jsonl / .txt, or a built-in name; empty = the
pairs' prompts); `score`: the reward of each steered sample (a reward-model folder or a gold
reward), all resolved by `alignlab.resolve`. RUN/metrics.jsonl holds one row per
(layer, coefficient); RUN/vector is the saved vector.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass, field
from typing import Any

from alignlab.config import ModelSettings, bounded
from alignlab.recipe import RunResult, default_run_dir, register_recipe
from alignlab.runs import RunDir


@dataclass
class SteerConfig:
    """Train a CAA steering vector on contrast pairs; sweep layers × coefficients, scoring steered samples."""

    model: ModelSettings = field(default_factory=ModelSettings)
    data: str = ""  # contrast pairs: JSONL of {prompt, positive, negative}, or a built-in name
    n_pairs: int = bounded(64, ge=1)  # pairs drawn from a built-in source (a file is used whole)
    eval_prompts: str = ""  # prompts to steer from (.jsonl / .txt / built-in); empty = the pairs' prompts
    score: str = ""  # reward of each steered sample: a reward-model folder or a gold reward (required)
    layers: list[int] = bounded([], ge=0)  # empty = every layer
    coefficients: list[float] = field(default_factory=lambda: [-4.0, -2.0, 0.0, 2.0, 4.0])
    n_eval: int = bounded(48, ge=1)
    max_new_tokens: int = bounded(24, ge=1)
    temperature: float = bounded(1.0, ge=0)  # 0 = greedy
    seed: int = 0
    output_dir: str = ""


def run(cfg: SteerConfig) -> RunResult:
    """Train the vector, sweep, save the vector; rows to metrics.jsonl, plot and table to the report."""
    from alignlab import resolve
    from alignlab.data.chat import check_chat_template, format_query
    from alignlab.interventions.steering import sweep, train_steering_vector
    from alignlab.models import load_model

    pairs = resolve.contrast_pairs(cfg.data, cfg.n_pairs, cfg.seed, key="data")
    score = resolve.reward_fn(cfg.score, key="score")
    run_dir = RunDir(cfg.output_dir or default_run_dir("steer"))
    run_dir.save_config(cfg)
    model, tok = load_model(cfg.model, trainable=False)
    if cfg.eval_prompts:
        queries = resolve.prompts(cfg.eval_prompts, cfg.n_eval, cfg.seed + 1, "eval_prompts")
        check_chat_template(tok, queries, cfg.eval_prompts)
        prompts = [format_query(tok, q) for q in queries]
    else:
        prompts = [p.prompt for p in pairs][: cfg.n_eval]
    vec = train_steering_vector(model, tok, pairs, cfg.layers or None)
    vec.save(run_dir.path / "vector")
    layers = cfg.layers or sorted(vec.vectors)
    rows = sweep(model, tok, vec, prompts, layers, cfg.coefficients, score, cfg.max_new_tokens,
                 cfg.temperature, cfg.seed, progress=True)
    for r in rows:
        run_dir.log(r)
    best = max(rows, key=lambda r: r["score"])
    unsteered = [r["score"] for r in rows if r["coefficient"] == 0.0]
    metrics: dict[str, Any] = {"best_layer": best["layer"], "best_coefficient": best["coefficient"],
                               "best_score": best["score"], "unsteered_score": unsteered[0] if unsteered else None,
                               "n_pairs": len(pairs), "n_prompts": len(prompts)}
    _report(run_dir, cfg, rows, layers)
    return RunResult(run_dir.path, metrics, run_dir.path / "vector")


def _report(run_dir: RunDir, cfg: SteerConfig, rows: list[dict], layers: list[int]) -> None:
    from alignlab.plots import line_plot
    from alignlab.report import write_report

    series = {f"layer {ly}": ([r["coefficient"] for r in rows if r["layer"] == ly],
                              [r["score"] for r in rows if r["layer"] == ly]) for ly in layers}
    fig = line_plot(series, run_dir.path / "reward_vs_coefficient.png", "score vs steering coefficient",
                    "coefficient", f"mean score ({cfg.score})", markers=True)
    write_report(run_dir.path, "Steering vector (CAA) sweep", figures=[fig], tables={"sweep": sweep_rows(rows)},
                 curve_keys=(), notes=[f"Pairs: {cfg.data}. Prompts: {cfg.eval_prompts or 'the pairs’ prompts'}. "
                                       f"Score: {cfg.score}."])


def sweep_rows(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The sweep table: layer, coefficient, mean score (one row per metrics record of the sweep)."""
    return [{"layer": r["layer"], "coefficient": r["coefficient"], "score": r["score"]}
            for r in records if "coefficient" in r]


def register(sub: argparse._SubParsersAction) -> None:
    register_recipe(sub, "steer", "Train a steering vector (CAA) and sweep layers x coefficients", SteerConfig, run,
                    rows_fn=sweep_rows, rows_title="steering sweep (mean score)")
