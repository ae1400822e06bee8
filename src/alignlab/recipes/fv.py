"""`alignlab fv`: extract a function vector and report zero-shot accuracy vs layer.

    alignlab fv model.name_or_path=real:smollm2 data=../shared/data/function_vectors/antonym.json template=qa

Data: a JSON list of `{"input", "output"}` pairs (the function-vectors task format) or a
built-in task name, resolved by `alignlab.resolve.word_pairs`. The pairs are shuffled with
`seed`; `n_eval` of them (at most half) are held out as zero-shot queries, the rest build the
ICL prompts. RUN/metrics.jsonl holds one row per layer; RUN/function_vector is the vector.
"""

from __future__ import annotations

import argparse
import random
from dataclasses import dataclass, field
from typing import Any, Literal

from alignlab.config import ModelSettings, bounded
from alignlab.recipe import RunResult, default_run_dir, register_recipe
from alignlab.runs import RunDir


@dataclass
class FVConfig:
    """Extract a function vector from ICL prompts; zero-shot accuracy with it added at each layer."""

    model: ModelSettings = field(default_factory=ModelSettings)
    data: str = ""  # JSON list of {input, output}, or a built-in task name (required)
    template: Literal["arrow", "qa"] = "arrow"  # arrow: 'x -> y ; '  |  qa: 'Q: x\nA: y\n\n'
    n_prompts: int = bounded(32, ge=1)  # ICL prompts averaged into the vector
    n_shots: int = bounded(10, ge=1)  # demonstrations per ICL prompt
    top_k: int = bounded(10, ge=1)  # attention heads summed into the vector
    n_eval: int = bounded(100, ge=1)  # held-out zero-shot queries (at most half the pairs)
    seed: int = 0
    output_dir: str = ""


def run(cfg: FVConfig) -> RunResult:
    """Extract the FV from the training pairs, evaluate zero-shot accuracy by layer on held-out pairs."""
    from alignlab import resolve
    from alignlab.interventions import function_vectors as fvm
    from alignlab.models import load_model

    pairs = resolve.word_pairs(cfg.data, key="data")
    run_dir = RunDir(cfg.output_dir or default_run_dir("fv"))
    run_dir.save_config(cfg)
    model, tok = load_model(cfg.model, trainable=False)
    rng = random.Random(cfg.seed)
    pairs = pairs[:]
    rng.shuffle(pairs)
    n_test = min(cfg.n_eval, len(pairs) // 2)
    test, train = pairs[:n_test], pairs[n_test:]
    template = fvm.QA_TEMPLATE if cfg.template == "qa" else fvm.ICLTemplate()
    fv = fvm.extract(model, tok, train, template, cfg.n_prompts, cfg.n_shots, cfg.top_k, cfg.seed, progress=True)
    fv.save(run_dir.path / "function_vector")
    res = fvm.accuracy_by_layer(model, tok, fv, test, template, shot_pool=train, n_shots_baseline=cfg.n_shots,
                                seed=cfg.seed)
    for ly, acc in sorted(res["by_layer"].items()):
        run_dir.log({"layer": ly, "accuracy": acc})
    best = max(sorted(res["by_layer"]), key=lambda ly: res["by_layer"][ly])
    metrics: dict[str, Any] = {"zero_shot": res["zero_shot"], "few_shot": res["few_shot"], "best_layer": best,
                               "best_accuracy": res["by_layer"][best], "n_test": len(test), "n_train": len(train),
                               "heads": " ".join(f"{ly}.{hd}" for ly, hd in fv.heads)}
    run_dir.log(metrics)
    _report(run_dir, cfg, res)
    return RunResult(run_dir.path, metrics, run_dir.path / "function_vector")


def _report(run_dir: RunDir, cfg: FVConfig, res: dict) -> None:
    from alignlab.plots import line_plot
    from alignlab.report import write_report

    layers = sorted(res["by_layer"])
    fig = line_plot({"zero-shot + FV": (layers, [res["by_layer"][ly] for ly in layers]),
                     "zero-shot": (layers, [res["zero_shot"]] * len(layers)),
                     f"{cfg.n_shots}-shot": (layers, [res["few_shot"]] * len(layers))},
                    run_dir.path / "accuracy_vs_layer.png", "function vector: accuracy vs layer", "layer",
                    "top-1 accuracy", markers=True)
    write_report(run_dir.path, "Function vector", figures=[fig], tables={"accuracy": layer_rows(run_dir.metrics())},
                 curve_keys=(), notes=[f"Task: {cfg.data} ({cfg.template} template)."])


def layer_rows(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Top-1 accuracy with the FV at each layer, then the zero- and few-shot baselines."""
    rows: list[dict[str, Any]] = [{"layer": r["layer"], "zero-shot + FV": r["accuracy"]}
                                  for r in records if "layer" in r and "accuracy" in r]
    for r in records:
        if "zero_shot" in r:
            rows += [{"layer": "zero-shot", "zero-shot + FV": r["zero_shot"]},
                     {"layer": "few-shot", "zero-shot + FV": r["few_shot"]}]
    return rows


def register(sub: argparse._SubParsersAction) -> None:
    register_recipe(sub, "fv", "Extract a function vector; zero-shot accuracy vs layer", FVConfig, run,
                    rows_fn=layer_rows, rows_title="function vector: top-1 accuracy")
