"""Inference-time methods on a real model: SmolLM2-135M-Instruct on TruthfulQA, BBQ, antonyms.

    pip install 'alignlab[real]'
    python benchmarks/real_inference_eval.py --data ../shared/data --out runs/real_inference

Subsampled to stay near 10 minutes on 2 CPU cores; every size is a flag. Prints and
writes (results.json) every figure: SEA before/after on held-out TruthfulQA (MC1/MC2)
and BBQ (accuracy, unknown rate, bias scores), function-vector zero-shot accuracy vs layer
against zero- and few-shot baselines, and the steering-limits table (+ plots).
"""

from __future__ import annotations

import argparse
import json
import random
import time
from pathlib import Path

import torch

from alignlab.eval.benchmarks import load_bbq, load_truthfulqa, load_word_pairs
from alignlab.eval.bias import default_prompt as bbq_prompt
from alignlab.eval.bias import evaluate_bias
from alignlab.eval.multiple_choice import default_prompt as qa_prompt
from alignlab.eval.multiple_choice import evaluate_mc
from alignlab.interventions import function_vectors as fvm
from alignlab.interventions import limits, sea, steering
from alignlab.interventions.hooks import Site, num_layers
from alignlab.models import load_model
from alignlab.plots import line_plot
from alignlab.resolve import reward_fn
from alignlab.testbed.lexicon import NEGATIVE, POSITIVE, sentiment_reward

SUBJECTS = ["food", "hotel", "movie", "service", "concert", "room", "staff", "book", "museum", "coffee"]


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def first_line(texts: list[str]) -> list[str]:
    """Neutral answers: the model's greedy answer up to its first newline."""
    return [" " + t.strip().split("\n")[0].strip() for t in texts]


def sea_sites(model, tok, demos, kind: str, top: int) -> tuple[dict, list]:
    sites = [Site(kind, ly) for ly in range(num_layers(model))]
    acts = sea.collect(model, tok, demos, sites, progress=True)
    ranked = sea.rank_layers(acts)
    keep = [s for s, _ in ranked[:top]]
    return {k: {s: v[s] for s in keep} for k, v in acts.items()}, ranked


def sea_study(model, tok, demos: list, evaluate, k: float, args, label: str) -> dict:
    """Fit SEA at the chosen sites from `demos`, then `evaluate()` unedited and under each feature map."""
    acts, ranked = sea_sites(model, tok, demos, args.site_kind, args.top_layers)
    out = {"n_fit": len(demos), "layer_scores_top5": [(str(s), v) for s, v in ranked[:5]], "base": evaluate()}
    log(f"{label} base {out['base']}")
    for feat in args.features:
        editor = sea.fit_from_activations(acts, k, k, feat)
        with editor.apply(model):
            m = evaluate()
        m["ranks"] = {str(s): [e.k_pos, e.k_neg] for s, e in editor.edits.items()}
        out[f"sea_{feat}"] = m
        log(f"{label} SEA {feat} {m}")
    return out


def truthfulqa(model, tok, args, res: dict) -> None:
    items = load_truthfulqa(Path(args.data) / "truthfulqa" / "TruthfulQA.csv")
    random.Random(0).shuffle(items)
    fit, test = items[: args.tqa_fit], items[args.tqa_fit : args.tqa_fit + args.tqa_eval]
    prompts = [qa_prompt(it.question) for it in fit]
    neutral = first_line(sea.neutral_answers(model, tok, prompts, max_new_tokens=20))
    demos = [sea.Demo(p, " " + it.best, " " + it.incorrect[0], n) for p, it, n in zip(prompts, fit, neutral)]
    res["truthfulqa"] = {"n_eval": len(test), **sea_study(model, tok, demos, lambda: evaluate_mc(model, tok, test),
                                                          args.k_truth, args, "TruthfulQA")}


def bbq(model, tok, args, res: dict) -> None:
    qs = load_bbq(Path(args.data) / "bbq")
    random.Random(1).shuffle(qs)
    test = qs[: args.bbq_eval]
    pool = [q for q in qs[args.bbq_eval :] if q.stereotyped >= 0 and q.stereotyped != q.label][: args.bbq_fit]
    prompts = [bbq_prompt(q) for q in pool]
    neutral = first_line(sea.neutral_answers(model, tok, prompts, max_new_tokens=12))
    demos = [sea.Demo(p, " " + q.options[q.label], " " + q.options[q.stereotyped], n) for p, q, n in zip(prompts, pool, neutral)]
    res["bbq"] = {"n_eval": len(test), **sea_study(model, tok, demos, lambda: evaluate_bias(model, tok, test),
                                                   args.k_bias, args, "BBQ")}


def function_vectors(model, tok, args, res: dict, out: Path) -> None:
    pairs = load_word_pairs(Path(args.data) / "function_vectors" / "antonym.json")
    random.Random(2).shuffle(pairs)
    test, train = pairs[: args.fv_eval], pairs[args.fv_eval : args.fv_eval + 400]
    t = fvm.ICLTemplate() if args.fv_template == "arrow" else fvm.QA_TEMPLATE
    fv = fvm.extract(model, tok, train, t, args.fv_prompts, 10, 10, seed=0, progress=True)
    acc = fvm.accuracy_by_layer(model, tok, fv, test, t, shot_pool=train)
    res["function_vectors"] = {"template": args.fv_template, "top_heads": fv.heads, **acc}
    layers = sorted(acc["by_layer"])
    line_plot({"zero-shot + FV": (layers, [acc["by_layer"][ly] for ly in layers]),
               "zero-shot": (layers, [acc["zero_shot"]] * len(layers)),
               "10-shot": (layers, [acc["few_shot"]] * len(layers))},
              out / "fv_accuracy_vs_layer.png", "SmolLM2-135M: antonym FV accuracy vs layer", "layer", "top-1 accuracy",
              markers=True)
    best = max(layers, key=lambda ly: acc["by_layer"][ly])
    log(f"FV zero-shot {acc['zero_shot']:.3f} few-shot {acc['few_shot']:.3f} best layer {best}: {acc['by_layer'][best]:.3f}")


def steering_limits(model, tok, args, res: dict, out: Path, shakespeare: list[str]) -> None:
    rng = random.Random(3)
    pos, neg = ["great", "wonderful", "excellent", "amazing", "lovely"], ["terrible", "awful", "horrible", "bad", "boring"]
    assert all(w in POSITIVE for w in pos) and all(w in NEGATIVE for w in neg)
    pairs = [steering.ContrastPair(f"I visited last week. The {rng.choice(SUBJECTS)} was", f" {rng.choice(pos)}",
                                   f" {rng.choice(neg)}") for _ in range(48)]
    layer = args.steer_layer if args.steer_layer >= 0 else num_layers(model) // 3
    vec = steering.train_steering_vector(model, tok, pairs, [layer])
    base = [f"Here is my short review. The {s} was" for s in SUBJECTS]
    base = (base * (args.limit_prompts // len(base) + 1))[: args.limit_prompts]
    sweep = steering.sweep(model, tok, vec, base, [layer], args.coefficients, reward_fn("gold:sentiment"), 24, 0.7,
                           seed=0)
    res["steering_sweep"] = sweep
    log(f"steering sweep layer {layer}: {[(r['coefficient'], round(r['score'], 3)) for r in sweep]}")
    shots = [f"Here is my short review. The {s} was {rng.choice(['fine', 'ok', 'average'])} and the staff were polite."
             for s in SUBJECTS]

    def multi_step(b: str, r: random.Random) -> str:
        subject = b.split("The ", 1)[1].split(" ")[0]
        msgs = [{"role": "user", "content": f"First, name three cities in Europe. Second, summarise the plot of a "
                                            f"famous play in one sentence. Third, write a one-sentence review of the {subject}."}]
        return tok.apply_chat_template(msgs, tokenize=False, add_generation_prompt=True) + \
            f"1. Paris, Rome, Berlin.\n2. A prince seeks revenge for his father.\n3. The {subject} was"

    conds = limits.build_conditions(base, shots, shakespeare, multi_step, sep="\n\n", long_factor=6, seed=0)
    ev = limits.generation_evaluator(model, tok, lambda: vec.apply(model, args.limit_coefficient, layer),
                                     sentiment_reward, 24, 0.7, seed=0)
    rows = limits.limits_study(conds, ev, tok, progress=True)
    res["steering_limits"] = {"layer": layer, "coefficient": args.limit_coefficient, "rows": rows}
    limits.plot_limits(rows, out / "steering_limits.png", f"SmolLM2-135M: steering (layer {layer}, c={args.limit_coefficient:g})")
    for r in rows:
        log(f"limits {r['condition']:13s} tokens {r['prompt_tokens']:6.1f} unsteered {r['unsteered']:+.3f} "
            f"steered {r['steered']:+.3f} shift {r['shift']:+.3f} success {r['success_rate']:.2f}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=str(Path(__file__).resolve().parents[2] / "shared" / "data"))
    ap.add_argument("--out", default="runs/real_inference")
    ap.add_argument("--model", default="real:smollm2")
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--parts", default="tqa,bbq,fv,limits")
    ap.add_argument("--features", default="none,tanh", help="SEA feature maps to evaluate")
    ap.add_argument("--site-kind", default="mlp")
    ap.add_argument("--top-layers", type=int, default=3)
    ap.add_argument("--k-truth", type=float, default=0.99)
    ap.add_argument("--k-bias", type=float, default=0.9999)
    ap.add_argument("--tqa-fit", type=int, default=80)
    ap.add_argument("--tqa-eval", type=int, default=40)
    ap.add_argument("--bbq-fit", type=int, default=100)
    ap.add_argument("--bbq-eval", type=int, default=100)
    ap.add_argument("--fv-eval", type=int, default=50)
    ap.add_argument("--fv-prompts", type=int, default=16)
    ap.add_argument("--fv-template", default="arrow", choices=["arrow", "qa"])
    ap.add_argument("--steer-layer", type=int, default=-1)
    ap.add_argument("--coefficients", default="-2,-1,-0.5,0,0.5,1,2")
    ap.add_argument("--limit-coefficient", type=float, default=1.0)
    ap.add_argument("--limit-prompts", type=int, default=20)
    args = ap.parse_args()
    args.features = args.features.split(",")
    args.coefficients = [float(c) for c in args.coefficients.split(",")]
    if args.threads:
        torch.set_num_threads(args.threads)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    model, tok = load_model(args.model, trainable=False)
    log(f"loaded {args.model}: {num_layers(model)} layers, threads={torch.get_num_threads()}")
    res: dict = {"model": args.model, "args": vars(args)}
    parts = args.parts.split(",")
    if "tqa" in parts:
        truthfulqa(model, tok, args, res)
    if "bbq" in parts:
        bbq(model, tok, args, res)
    if "fv" in parts:
        function_vectors(model, tok, args, res, out)
    if "limits" in parts:
        text = (Path(args.data) / "corpus" / "tinyshakespeare_input.txt").read_text()[:200_000]
        paras = [p.strip() for p in text.split("\n\n") if 150 < len(p.strip()) < 500]
        steering_limits(model, tok, args, res, out, paras)
    res["seconds"] = time.time() - t0
    (out / "results.json").write_text(json.dumps(res, indent=2, default=str))
    log(f"done in {res['seconds']:.0f} s; results in {out / 'results.json'}")


if __name__ == "__main__":
    main()
