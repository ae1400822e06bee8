"""Demo stage 4: inference-time alignment of the testbed student, measured on gold tasks.

- SEA on truthfulness MC (world facts, split by country) and on bias questions: linear and
  Φ-SEA (tanh, elu, squared-exponential); per feature map the site kind (MLP output or
  residual), the layer (heuristic: top-scoring) and K are chosen on the *train* split,
  then reported on held-out items.
- A steering vector (CAA, sentiment pairs): gold sentiment reward of sampled reviews vs
  coefficient, and vs layer.
- A function vector (antonyms): zero-shot accuracy vs layer against zero-/few-shot.
- The steering-limits study: the same vector under five prompt conditions.
"""

from __future__ import annotations

import random
from pathlib import Path

import torch

from alignlab.demo_stages import DemoContext, StageResult
from alignlab.eval.bias import evaluate_bias
from alignlab.eval.multiple_choice import evaluate_mc
from alignlab.interventions import function_vectors as fvm
from alignlab.interventions import limits, sea, steering
from alignlab.interventions.hooks import Site, num_layers
from alignlab.models import load_model
from alignlab.plots import line_plot
from alignlab.resolve import reward_fn
from alignlab.testbed import lexicon as lx
from alignlab.testbed.lexicon import sentiment_reward
from alignlab.testbed.tasks import (
    bias_demos,
    bias_prompt,
    bias_questions,
    fact_demos,
    fact_items,
    sentiment_pairs,
)

FEATURES = ("none", "tanh", "elu", "sqexp")
FEATURE_NAMES = {"none": "SEA linear", "tanh": "Φ-SEA tanh", "elu": "Φ-SEA elu", "sqexp": "Φ-SEA sq-exp"}


def _candidates(acts: dict, n_layers: int, ks: tuple[float, ...]) -> list[tuple[list[Site], float]]:
    """(sites, K) configurations: the heuristic's best layer for MLP and residual sites."""
    out = []
    for kind in ("mlp", "resid") if len(ks) > 1 else ("mlp",):
        ranked = sea.rank_layers(sea.select_sites(acts, [Site(kind, ly) for ly in range(n_layers)]))
        for k in ks:
            out.append(([ranked[0][0]], k))
    return out


def _select_and_eval(model, acts, n_layers, ks, train_score, test_eval, feature):
    """Fit each candidate, keep the best on train, return (config, test metrics)."""
    best = None
    cands = _candidates(acts, n_layers, ks)
    for sites, k in cands:
        editor = sea.fit_from_activations(sea.select_sites(acts, sites), k, k, feature)
        if len(cands) == 1:
            best = (0.0, sites, k, editor)
            break
        with editor.apply(model):
            score = train_score()
        if best is None or score > best[0]:
            best = (score, sites, k, editor)
    _, sites, k, editor = best
    with editor.apply(model):
        metrics = test_eval()
    return {"sites": ",".join(map(str, sites)), "K": k}, metrics


def _sea_rows(ctx: DemoContext, model, tok, n_layers: int) -> list[dict]:
    world, quick = ctx.world, ctx.quick
    all_sites = [Site(kind, ly) for ly in range(n_layers) for kind in ("resid", "mlp")]
    rows = []
    # truthfulness
    train_items, test_items = fact_items(world, "train"), fact_items(world, "test")

    def mc(items):
        return evaluate_mc(model, tok, items, prompt_fn=lambda q: q)

    acts = sea.collect(model, tok, fact_demos(world, "train"), all_sites)
    base = mc(test_items)
    rows.append({"stage": "inference", "table": "Truthfulness MC (held-out countries)", "method": "base (truthfulness MC)", "mc1": base["mc1"], "mc2": base["mc2"]})
    for feat in FEATURES:
        ks = (0.9999,) if quick else (0.99, 0.998, 0.9999)
        cfg, m = _select_and_eval(model, acts, n_layers, ks, lambda: (lambda r: r["mc1"] + r["mc2"])(mc(train_items)),
                                  lambda: mc(test_items), feat)
        rows.append({"stage": "inference", "table": "Truthfulness MC (held-out countries)", "method": f"{FEATURE_NAMES[feat]} (truthfulness MC, {_cfg(cfg)})",
                     "mc1": m["mc1"], "mc2": m["mc2"]})
    # bias
    n_test = 60 if quick else 200
    test_q, train_q = bias_questions(world, n_test, 0), bias_questions(world, 40 if quick else 100, 7)

    def bias(qs):
        # mean log-prob per token: summed log-probs let the one-token "unknown" win every ambiguous item
        return evaluate_bias(model, tok, qs, prompt_fn=bias_prompt, average=True)

    def objective(r):
        return r["accuracy"] - abs(r["bias_score_ambig"]) - abs(r["bias_score_disambig"]) - abs(r["stereotype_margin"])

    acts = sea.collect(model, tok, bias_demos(world, 60 if quick else 200, 1), all_sites)
    base = bias(test_q)
    rows.append({"stage": "inference", "table": "Bias questions (held-out)", "method": "base (bias)", **_bias_cols(base)})
    for feat in FEATURES if not quick else ("none", "tanh"):
        ks = (0.9999,) if quick else (0.998, 0.9999)  # SPEC: K = 0.9999 typical for bias
        cfg, m = _select_and_eval(model, acts, n_layers, ks, lambda: objective(bias(train_q)), lambda: bias(test_q), feat)
        rows.append({"stage": "inference", "table": "Bias questions (held-out)", "method": f"{FEATURE_NAMES[feat]} (bias, {_cfg(cfg)})",
                     **_bias_cols(m)})
    return rows


def _cfg(cfg: dict) -> str:
    return f"{cfg['sites']} K={cfg['K']}"


def _bias_cols(m: dict) -> dict:
    """Summary columns: accuracy, unknown rate, BBQ bias scores, graded stereotype margin."""
    return {"accuracy": m["accuracy"], "unknown_rate": m["unknown_rate"], "bias_score": m["bias_score_ambig"],
            "bias_disambig": m["bias_score_disambig"], "stereotype_margin": m["stereotype_margin"]}


def _steering(ctx: DemoContext, model, tok, n_layers: int, out: Path):
    """Sweep of the coefficient at one layer (and of the layer at c = +16)."""
    quick = ctx.quick
    vec = steering.train_steering_vector(model, tok, sentiment_pairs(ctx.world, 64, ctx.seed))
    prompts = ctx.world.review_prompts(16 if quick else 96, seed=ctx.seed + 1)
    layer = min(2, n_layers - 1)
    coefs = [-16.0, 0.0, 16.0] if quick else [-32.0, -16.0, -8.0, 0.0, 8.0, 16.0, 32.0]
    new = 12 if quick else 24
    gold = reward_fn("gold:sentiment")
    sweep = steering.sweep(model, tok, vec, prompts, [layer], coefs, gold, new, seed=ctx.seed)
    by_layer = [] if quick else steering.sweep(model, tok, vec, prompts, list(range(n_layers)), [16.0], gold,
                                               24, seed=ctx.seed)
    rewards = [r["score"] for r in sweep]
    figs = [line_plot({f"layer {layer}": (coefs, rewards)}, out / "reward_vs_coefficient.png",
                      "steering: gold reward vs coefficient", "coefficient", "mean gold reward", markers=True, hline=rewards[coefs.index(0.0)])]
    table = "Steering (CAA): gold reward of sampled reviews"
    rows = [{"stage": "inference", "table": table, "method": f"steering c={r['coefficient']:+g} (layer {layer})",
             "gold_reward": r["score"]} for r in sweep]
    rows += [{"stage": "inference", "table": table, "method": f"steering c=+16 (layer {r['layer']})",
              "gold_reward": r["score"]} for r in by_layer]
    return rows, figs, vec, layer, steering.is_monotonic(rewards)


def _function_vector(ctx: DemoContext, model, tok, n_layers: int, out: Path) -> tuple[list[dict], list[Path]]:
    pairs = list(ctx.world.icl_tasks["antonym"])
    random.Random(ctx.seed).shuffle(pairs)
    test, train = pairs[:15], pairs[15:]
    fv = fvm.extract(model, tok, train, fvm.ICLTemplate(), 8 if ctx.quick else 32, 10, 10, ctx.seed)
    res = fvm.accuracy_by_layer(model, tok, fv, test, shot_pool=train, seed=ctx.seed)
    layers = sorted(res["by_layer"])
    accs = [res["by_layer"][ly] for ly in layers]
    fig = line_plot({"zero-shot + FV": (layers, accs), "zero-shot": (layers, [res["zero_shot"]] * len(layers)),
                     "10-shot": (layers, [res["few_shot"]] * len(layers))},
                    out / "fv_accuracy_vs_layer.png", "function vector: antonym accuracy vs layer", "layer",
                    "top-1 accuracy", markers=True)
    table = "Function vector: antonym top-1 accuracy"
    rows = [{"stage": "inference", "table": table, "method": "antonyms zero-shot", "accuracy": res["zero_shot"]},
            {"stage": "inference", "table": table, "method": "antonyms 10-shot", "accuracy": res["few_shot"]}]
    rows += [{"stage": "inference", "table": table, "method": f"antonyms zero-shot + FV at layer {ly}", "accuracy": a}
             for ly, a in zip(layers, accs)]
    return rows, [fig]


def testbed_conditions(ctx: DemoContext, tok, prompts: list[str]) -> list[limits.Condition]:
    """The five limits conditions around review prompts (documents joined by EOS, as in pretraining)."""
    from alignlab.testbed.dialogues import FOLLOW_UPS, QUESTIONS

    rng = random.Random(ctx.seed + 5)
    shots = [ctx.world.review(rng) for _ in range(50)]
    distractors = [ctx.world.neutral(rng) for _ in range(50)]

    def multi_step(base: str, r: random.Random) -> str:
        subject = base.split("the ", 1)[1].split(" ")[0]
        msgs = [{"role": "user", "content": r.choice(QUESTIONS).format(s=subject)},
                {"role": "assistant", "content": ctx.world.review(r, polarity=0.0, prefix=False)},
                {"role": "user", "content": r.choice(FOLLOW_UPS)}]
        return tok.apply_chat_template(msgs, tokenize=False, add_generation_prompt=True) + f"the {subject} was"

    return limits.build_conditions(prompts, shots, distractors, multi_step, sep=tok.eos_token, seed=ctx.seed)


def run(ctx: DemoContext) -> StageResult:
    """SEA, steering, function vectors and steering limits on the testbed student."""
    out = ctx.out_dir / "inference"
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(ctx.seed)
    model, tok = load_model(ctx.base_model, trainable=False)
    n_layers = num_layers(model)
    rows = _sea_rows(ctx, model, tok, n_layers)
    steer_rows, figures, vec, layer, monotonic = _steering(ctx, model, tok, n_layers, out)
    rows += steer_rows
    fv_rows, fv_figs = _function_vector(ctx, model, tok, n_layers, out)
    rows += fv_rows
    figures += fv_figs
    prompts = ctx.world.review_prompts(8 if ctx.quick else 64, seed=ctx.seed + 2)
    conds = testbed_conditions(ctx, tok, prompts)
    ev = limits.generation_evaluator(model, tok, lambda: vec.apply(model, 16.0, layer), sentiment_reward,
                                     12 if ctx.quick else 24, seed=ctx.seed)
    lim = limits.limits_study(conds, ev, tok)
    rows += [{"stage": "inference", "table": "Steering limits (c=+16) by prompt condition",
              "method": f"limits: {r['condition']} (~{r['prompt_tokens']:.0f} tokens, "
              f"unsteered {r['unsteered']:+.3f})", "gold_reward": r["steered"], "shift": r["shift"]} for r in lim]
    import json

    (out / "steering_limits.json").write_text(json.dumps(lim, indent=2))
    figures.append(limits.plot_limits(lim, out / "steering_limits.png", "steering (c=+16) by prompt condition"))
    zs = lim[0]["shift"]
    worst = min(lim, key=lambda r: r["shift"])
    notes = [
        f"Model: {Path(ctx.base_model).name} ({n_layers} layers). SEA settings (site, K) picked per feature map on "
        "train items, reported on held-out ones; truthfulness split by country.",
        f"Steering (CAA, layer {layer}): gold reward {'is' if monotonic else 'is NOT'} monotonic in the coefficient.",
        f"Steering limits: zero-shot shift {zs:+.3f}; weakest under '{worst['condition']}' ({worst['shift']:+.3f}).",
        f"Words scored by the gold reward: {len(lx.SENTIMENT)} lexicon entries.",
    ]
    headline = _headline(rows)
    verdict = "; ".join(f"{h['method']}: {h['measure']} {h['before']:.2f} → {h['after']:.2f}" for h in headline) + "."
    return StageResult("inference", rows=rows, figures=figures, notes=notes, verdict=verdict, headline=headline)


def _headline(rows: list[dict]) -> list[dict]:
    """Base → intervention on each task: SEA linear (truthfulness MC1, bias accuracy), steering
    (c=0 → c=+16 at the swept layer), function vector (zero-shot → its best layer)."""
    by = {r["method"]: r for r in rows}
    sea_mc = next(r for r in rows if r["method"].startswith("SEA linear (truthfulness"))
    sea_bias = next(r for r in rows if r["method"].startswith("SEA linear (bias"))
    off = next(r for r in rows if r["method"].startswith("steering c=+0 "))
    layer = off["method"].split("(")[1].rstrip(")")  # 'layer 2'
    on = by[f"steering c=+16 ({layer})"]
    fv = max((r for r in rows if "+ FV at layer" in r["method"]), key=lambda r: r["accuracy"])
    return [
        {"method": "SEA linear", "measure": "truthfulness MC1", "before": by["base (truthfulness MC)"]["mc1"],
         "after": sea_mc["mc1"], "note": "held-out countries"},
        {"method": "SEA linear", "measure": "bias-question accuracy", "before": by["base (bias)"]["accuracy"],
         "after": sea_bias["accuracy"], "note": f"bias score {sea_bias['bias_score']:+.2f}"},
        {"method": "steering vector", "measure": "gold reward", "before": off["gold_reward"],
         "after": on["gold_reward"], "note": f"c=0 → c=+16 at {layer}"},
        {"method": "function vector", "measure": "antonym accuracy", "before": by["antonyms zero-shot"]["accuracy"],
         "after": fv["accuracy"], "note": f"zero-shot → + FV at {fv['method'].split(' at ')[1]} (best); "
                                         f"10-shot {by['antonyms 10-shot']['accuracy']:.2f}"},
    ]
