"""`alignlab sea`: fit a SEA editor (`mode=fit`) or evaluate a saved one (`mode=eval`).

    alignlab sea -c examples/sea.yaml
    alignlab sea mode=eval editor=runs/sea/editor eval_data=TruthfulQA.csv model.name_or_path=real:smollm2

Data, resolved by `alignlab.resolve`: fit demonstrations `{"prompt", "positive", "negative"}`
(+ optional `"neutral"`, JSONL) or a built-in name; multiple-choice items to score with and
without the editor (`eval_data`: JSONL `{"question", "best", "correct", "incorrect"}`, a
TruthfulQA CSV, or a built-in name; optional when fitting, required for `mode=eval`).
RUN/metrics.jsonl holds the edited sites with their ranks and edit sizes (a warning when every
edit is ≈ the identity) and the before/after MC rows;
RUN/editor is the fitted editor.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass, field
from typing import Any, Literal

from alignlab.config import ModelSettings, bounded
from alignlab.progress import say
from alignlab.recipe import RunResult, default_run_dir, register_recipe
from alignlab.runs import RunDir


@dataclass
class SEAConfig:
    """Fit a SEA editor on demonstrations (mode=fit) or load one (mode=eval); MC1/MC2 before and after."""

    model: ModelSettings = field(default_factory=ModelSettings)
    mode: Literal["fit", "eval"] = "fit"  # fit: fit and save an editor; eval: evaluate a saved one
    data: str = ""  # fit demonstrations: JSONL of {prompt, positive, negative[, neutral]} or a built-in name
    eval_data: str = ""  # MC JSONL / TruthfulQA CSV / built-in name; empty when fitting = no evaluation
    sites: list[str] = field(default_factory=list)  # e.g. [resid.2]; empty = every resid layer
    top_layers: int = bounded(0, ge=0)  # >0: keep the best-scoring layers (layer heuristic)
    feature: Literal["none", "tanh", "elu", "sqexp"] = "none"
    k_pos: float = bounded(0.998, gt=0, le=1)  # energy share kept (1 = every direction)
    k_neg: float = bounded(0.998, gt=0, le=1)
    center: bool = False  # fit on mean-centred activations (see interventions/sea.py)
    editor: str = ""  # mode=eval: folder of a fitted editor
    seed: int = 0
    output_dir: str = ""


def _fit(model, tok, cfg: SEAConfig, demos: list):
    """Collect activations at the candidate sites, keep the top layers, fit the editor."""
    from alignlab.interventions import sea
    from alignlab.interventions.hooks import Site, num_layers

    sites = [Site.parse(s) for s in cfg.sites] or [Site("resid", ly) for ly in range(num_layers(model))]
    acts, ranked = sea.top_sites(sea.collect(model, tok, demos, sites, progress=True), cfg.top_layers)
    editor = sea.fit_from_activations(acts, cfg.k_pos, cfg.k_neg, cfg.feature, cfg.center)
    editor.meta["layer_scores"] = {str(s): v for s, v in ranked}
    return editor


def run(cfg: SEAConfig) -> RunResult:
    """`fit`: fit and save an editor (and evaluate it when eval_data is given); `eval`: load and evaluate."""
    from alignlab import resolve
    from alignlab.errors import ConfigError
    from alignlab.eval.multiple_choice import evaluate_mc
    from alignlab.interventions import sea
    from alignlab.models import load_model
    from alignlab.report import write_report

    if cfg.mode == "fit":
        demos = resolve.sea_demos(cfg.data, key="data")
    elif not cfg.editor:
        raise ConfigError("editor: mode=eval needs editor=<folder of a fitted editor>")
    mc = resolve.mc_items(cfg.eval_data, key="eval_data") if cfg.eval_data or cfg.mode == "eval" else None
    run_dir = RunDir(cfg.output_dir or default_run_dir(f"sea-{cfg.mode}"))
    run_dir.save_config(cfg)
    model, tok = load_model(cfg.model, trainable=False)
    if cfg.mode == "fit":
        editor = _fit(model, tok, cfg, demos)
        editor.save(run_dir.path / "editor")
    else:
        editor = sea.SEAEditor.load(cfg.editor)
    for s, e in editor.edits.items():
        run_dir.log({"site": str(s), "k_pos": e.k_pos, "k_neg": e.k_neg, "edit_size": e.strength})
    metrics: dict[str, Any] = {"sites": " ".join(str(s) for s in editor.edits), "feature": editor.feature,
                               "edit_size": editor.strength}
    notes = [f"Editor: {cfg.editor or run_dir.path / 'editor'}. Items: {cfg.eval_data or 'none'}."]
    weak = editor.weak_sites()
    all_weak = len(weak) == len(editor.edits)
    if all_weak:
        notes.append(weak_edit_note(weak, editor.k_pos, editor.k_neg))
        say(f"warning: {notes[-1]}")
    if mc is not None:
        kw = {"prompt_fn": mc.prompt_fn} if mc.prompt_fn else {}
        before = evaluate_mc(model, tok, mc.items, **kw)
        with editor.apply(model):
            after = evaluate_mc(model, tok, mc.items, **kw)
        run_dir.log({"model": "before", **before})
        run_dir.log({"model": "SEA", **after})
        metrics.update({f"{k}_{m}": r[m] for k, r in (("before", before), ("after", after)) for m in ("mc1", "mc2")})
        metrics["n_items"] = before["n"]
    run_dir.log(metrics)
    write_report(run_dir.path, f"SEA ({cfg.mode})", curve_keys=(),
                 tables={"multiple choice": mc_rows(run_dir.metrics()), "edited sites": site_rows(run_dir.metrics())},
                 notes=notes, verdict=sea_verdict(metrics, weak_all=all_weak))
    return RunResult(run_dir.path, metrics, run_dir.path / "editor" if cfg.mode == "fit" else None)


def sea_verdict(metrics: dict[str, Any], weak_all: bool) -> str:
    """The report's headline: MC before → after and how far the edit moves activations."""
    parts = []
    if "before_mc1" in metrics:
        parts.append(f"MC1 {metrics['before_mc1']:.3f} → {metrics['after_mc1']:.3f}, MC2 {metrics['before_mc2']:.3f} → "
                     f"{metrics['after_mc2']:.3f} on {metrics['n_items']} items")
    parts.append(f"the edit moves activations by {metrics['edit_size']:.2%} (mean ‖h′ − h‖ / ‖h‖)")
    text = "; ".join(parts) + "."
    return ("Warning: the edit is ≈ the identity (see the notes). " + text) if weak_all else text


def weak_edit_note(weak: list, k_pos: float, k_neg: float) -> str:
    """Why an editor that barely moves activations changes nothing, and what to try instead."""
    sizes = ", ".join(f"{s} {v:.2%}" for s, v in weak)
    return (f"the SEA edit is ≈ the identity (mean ‖h′ − h‖ / ‖h‖: {sizes}): one shared direction holds ≥ "
            f"K (k_pos={k_pos}, k_neg={k_neg}) of both covariances' energy, so P⁻ removes what P⁺ keeps; "
            "try center=true or smaller k_pos / k_neg")


def mc_rows(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """MC1 / MC2 without and with the editor (empty when no items were scored)."""
    return [r for r in ({k: v for k, v in rec.items() if k != "time"} for rec in records) if "model" in r]


def site_rows(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The edited sites with the ranks kept (k⁺, k⁻)."""
    return [{"site": r["site"], "k_pos": r["k_pos"], "k_neg": r["k_neg"], "edit_size": r.get("edit_size")}
            for r in records if "site" in r]


def register(sub: argparse._SubParsersAction) -> None:
    register_recipe(sub, "sea", "Spectral editing of activations: fit (mode=fit) or evaluate (mode=eval) an editor",
                    SEAConfig, run, rows_fn=mc_rows, rows_title="SEA: MC before / after")
