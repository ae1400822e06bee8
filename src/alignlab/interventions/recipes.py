"""Inference-time recipes behind `alignlab steer | fv | sea`: config dataclasses + run().

Data files (JSONL) the recipes read:
- steer: `{"prompt", "positive", "negative"}` contrast pairs; prompts to steer from
  `eval_prompts` (one `{"prompt"}` per line) or, when empty, the pairs' prompts.
- fv: a JSON list of `{"input", "output"}` pairs (the function-vectors task format).
- sea fit: `{"prompt", "positive", "negative"}` (+ optional `"neutral"`);
  sea eval: multiple choice `{"question", "best", "correct": [...], "incorrect": [...]}`
  or a TruthfulQA CSV, scored with and without the editor.
The testbed (`data: testbed`) supplies all of these from the built-in world.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from alignlab.config import ModelSettings
from alignlab.errors import ConfigError, DataError
from alignlab.recipe import RunResult, default_run_dir


@dataclass
class SteerConfig:
    """Train a CAA steering vector and sweep layers × coefficients."""

    model: ModelSettings = field(default_factory=ModelSettings)
    data: str = "testbed"  # JSONL of {prompt, positive, negative}, or 'testbed' (sentiment pairs)
    eval_prompts: str = ""  # JSONL of {prompt}; empty = the pairs' prompts (testbed: review prompts)
    layers: list[int] = field(default_factory=list)  # empty = every layer
    coefficients: list[float] = field(default_factory=lambda: [-4.0, -2.0, 0.0, 2.0, 4.0])
    n_eval: int = 48
    max_new_tokens: int = 24
    temperature: float = 1.0
    seed: int = 0
    output_dir: str = ""


@dataclass
class FVConfig:
    """Extract a function vector and report zero-shot accuracy vs layer."""

    model: ModelSettings = field(default_factory=ModelSettings)
    data: str = "testbed"  # JSON list of {input, output}, or 'testbed' (antonyms)
    template: str = "arrow"  # arrow: 'x -> y ; '  |  qa: 'Q: x\\nA: y\\n\\n'
    n_prompts: int = 32
    n_shots: int = 10
    top_k: int = 10
    n_eval: int = 100
    seed: int = 0
    output_dir: str = ""


@dataclass
class SEAConfig:
    """Fit (and evaluate) a SEA editor."""

    model: ModelSettings = field(default_factory=ModelSettings)
    data: str = "testbed"  # fit demos JSONL, or 'testbed' (truth vs myth)
    eval_data: str = ""  # MC JSONL / TruthfulQA CSV; empty with testbed = held-out facts
    sites: list[str] = field(default_factory=list)  # e.g. [resid.2]; empty = every resid layer
    top_layers: int = 0  # >0: keep the best-scoring layers (layer heuristic)
    feature: str = "none"  # none | tanh | elu | sqexp
    k_pos: float = 0.998
    k_neg: float = 0.998
    center: bool = False  # fit on mean-centred activations (see interventions/sea.py)
    editor: str = ""  # sea eval: folder of a fitted editor
    seed: int = 0
    output_dir: str = ""


def _jsonl(path: str) -> list[dict]:
    from alignlab.train.sft import read_jsonl

    return read_jsonl(path)


def _need(row: dict, keys: tuple[str, ...], where: str) -> None:
    missing = [k for k in keys if not isinstance(row.get(k), str)]
    if missing:
        raise DataError(f"{where}: needs string field(s) {missing} (has {sorted(row)})")


def run_steer(cfg: SteerConfig) -> RunResult:
    """Train the vector, sweep, save vector + sweep table + plot."""
    from alignlab.interventions.steering import (
        ContrastPair,
        SteeringVector,
        sweep,
        train_steering_vector,
    )
    from alignlab.models import load_model
    from alignlab.plots import line_plot
    from alignlab.testbed.lexicon import sentiment_reward

    out = Path(cfg.output_dir or default_run_dir("steer"))
    model, tok = load_model(cfg.model, trainable=False)
    if cfg.data == "testbed":
        from alignlab.interventions.testbed_tasks import sentiment_pairs
        from alignlab.testbed.world import World

        world = World()
        pairs = sentiment_pairs(world, 64, cfg.seed)
        prompts = world.review_prompts(cfg.n_eval, seed=cfg.seed + 1)
    else:
        rows = _jsonl(cfg.data)
        for i, r in enumerate(rows, 1):
            _need(r, ("prompt", "positive", "negative"), f"{cfg.data}:{i}")
        pairs = [ContrastPair(r["prompt"], r["positive"], r["negative"]) for r in rows]
        if cfg.eval_prompts:
            ev = _jsonl(cfg.eval_prompts)
            for i, r in enumerate(ev, 1):
                _need(r, ("prompt",), f"{cfg.eval_prompts}:{i}")
            prompts = [r["prompt"] for r in ev][: cfg.n_eval]
        else:
            prompts = [p.prompt for p in pairs][: cfg.n_eval]
    vec: SteeringVector = train_steering_vector(model, tok, pairs, cfg.layers or None)
    vec.save(out / "vector")
    layers = cfg.layers or sorted(vec.vectors)
    rows = sweep(model, tok, vec, prompts, layers, cfg.coefficients, sentiment_reward, cfg.max_new_tokens,
                 cfg.temperature, cfg.seed, progress=True)
    (out / "sweep.json").write_text(json.dumps(rows, indent=2))
    series = {f"layer {ly}": ([r["coefficient"] for r in rows if r["layer"] == ly],
                              [r["score"] for r in rows if r["layer"] == ly]) for ly in layers}
    line_plot(series, out / "reward_vs_coefficient.png", "gold reward vs steering coefficient", "coefficient",
              "mean gold reward", markers=True)
    best = max(rows, key=lambda r: r["score"])
    return RunResult(out, {"best": best, "rows": rows}, out / "vector")


def _template(name: str):
    from alignlab.interventions.function_vectors import QA_TEMPLATE, ICLTemplate

    if name == "arrow":
        return ICLTemplate()
    if name == "qa":
        return QA_TEMPLATE
    raise ConfigError(f"template '{name}': choose arrow or qa")


def run_fv(cfg: FVConfig) -> RunResult:
    """Extract the FV from train pairs, evaluate zero-shot accuracy by layer on held-out pairs."""
    import random

    from alignlab.interventions import function_vectors as fvm
    from alignlab.models import load_model
    from alignlab.plots import line_plot

    out = Path(cfg.output_dir or default_run_dir("fv"))
    model, tok = load_model(cfg.model, trainable=False)
    if cfg.data == "testbed":
        from alignlab.testbed.world import World

        pairs = list(World().icl_tasks["antonym"])
    else:
        from alignlab.eval.benchmarks import load_word_pairs

        pairs = load_word_pairs(cfg.data)
    rng = random.Random(cfg.seed)
    pairs = pairs[:]
    rng.shuffle(pairs)
    n_test = min(cfg.n_eval, len(pairs) // 2)
    test, train = pairs[:n_test], pairs[n_test:]
    template = _template(cfg.template)
    fv = fvm.extract(model, tok, train, template, cfg.n_prompts, cfg.n_shots, cfg.top_k, cfg.seed, progress=True)
    fv.save(out / "function_vector")
    res = fvm.accuracy_by_layer(model, tok, fv, test, template, shot_pool=train, n_shots_baseline=cfg.n_shots,
                                seed=cfg.seed)
    layers = sorted(res["by_layer"])
    line_plot({"zero-shot + FV": (layers, [res["by_layer"][ly] for ly in layers]),
               "zero-shot": (layers, [res["zero_shot"]] * len(layers)),
               f"{cfg.n_shots}-shot": (layers, [res["few_shot"]] * len(layers))},
              out / "accuracy_vs_layer.png", "function vector: accuracy vs layer", "layer", "top-1 accuracy",
              markers=True)
    (out / "accuracy.json").write_text(json.dumps({**res, "heads": fv.heads}, indent=2))
    return RunResult(out, res, out / "function_vector")


def _mc_items(cfg: SEAConfig):
    from alignlab.eval.multiple_choice import MCItem

    path = cfg.eval_data
    if path.endswith(".csv"):
        from alignlab.eval.benchmarks import load_truthfulqa

        return load_truthfulqa(path)
    items = []
    for i, r in enumerate(_jsonl(path), 1):
        _need(r, ("question", "best"), f"{path}:{i}")
        if not isinstance(r.get("incorrect"), list) or not r["incorrect"]:
            raise DataError(f"{path}:{i}: 'incorrect' must be a non-empty list of answers")
        items.append(MCItem(r["question"], r["best"], tuple(r.get("correct", [r["best"]])), tuple(r["incorrect"])))
    return items


def run_sea(cfg: SEAConfig, mode: str) -> RunResult:
    """`fit`: fit and save an editor (and evaluate it when eval data is known); `eval`: load and evaluate."""
    from alignlab.eval.multiple_choice import evaluate_mc
    from alignlab.interventions import sea
    from alignlab.interventions.hooks import Site, num_layers
    from alignlab.models import load_model

    out = Path(cfg.output_dir or default_run_dir(f"sea-{mode}"))
    model, tok = load_model(cfg.model, trainable=False)
    prompt_fn = None
    test_items = None
    if cfg.data == "testbed":
        from alignlab.interventions.testbed_tasks import fact_demos, fact_items
        from alignlab.testbed.world import World

        world = World()
        demos, test_items = fact_demos(world, split="train"), fact_items(world, split="test")
        prompt_fn = lambda q: q  # noqa: E731  (testbed questions carry their own 'a :')
    elif mode == "fit":
        rows = _jsonl(cfg.data)
        for i, r in enumerate(rows, 1):
            _need(r, ("prompt", "positive", "negative"), f"{cfg.data}:{i}")
        demos = [sea.Demo(r["prompt"], r["positive"], r["negative"], r.get("neutral")) for r in rows]
    if cfg.eval_data:
        test_items = _mc_items(cfg)
    if mode == "fit":
        sites = [Site.parse(s) for s in cfg.sites] or [Site("resid", ly) for ly in range(num_layers(model))]
        acts = sea.collect(model, tok, demos, sites, progress=True)
        ranked = sea.rank_layers(acts)
        if cfg.top_layers > 0:
            keep = {s for s, _ in ranked[: cfg.top_layers]}
            acts = {k: {s: v for s, v in d.items() if s in keep} for k, d in acts.items()}
        editor = sea.fit_from_activations(acts, cfg.k_pos, cfg.k_neg, cfg.feature, cfg.center)
        editor.meta["layer_scores"] = {str(s): v for s, v in ranked}
        editor.save(out / "editor")
    else:
        if not cfg.editor:
            raise ConfigError("sea eval needs editor=<folder of a fitted editor>")
        editor = sea.SEAEditor.load(cfg.editor)
    metrics: dict = {"sites": [str(s) for s in editor.edits],
                     "ranks": {str(s): [e.k_pos, e.k_neg] for s, e in editor.edits.items()}}
    if test_items is not None:
        kw = {"prompt_fn": prompt_fn} if prompt_fn else {}
        metrics["before"] = evaluate_mc(model, tok, test_items, **kw)
        with editor.apply(model):
            metrics["after"] = evaluate_mc(model, tok, test_items, **kw)
    out.mkdir(parents=True, exist_ok=True)
    (out / "sea_metrics.json").write_text(json.dumps(metrics, indent=2))
    return RunResult(out, metrics, out / "editor")
