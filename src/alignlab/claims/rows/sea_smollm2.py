"""Row 4 on a real model — SEA (Qiu et al., NeurIPS 2024) on SmolLM2-135M-Instruct: a
training-free edit fitted on a few demonstrations raises truthfulness (TruthfulQA MC1) and
lowers bias (BBQ ambiguous-context bias score).

Per seed: (a) a seeded split of TruthfulQA (public CSV) into fitting questions (best answer vs
first incorrect answer, the model's greedy answer as neutral) and held-out questions; linear SEA
at the top-3 MLP-output layers by the layer heuristic, K = 0.99; MC1 / MC2 before and after.
(b) a seeded split of BBQ (4 public category files): demonstrations (correct vs stereotyped
option) and held-out questions (ambiguous and disambiguated); K = 0.9999; the ambiguous bias
score's magnitude should fall. MC answers are scored by summed log-prob (TruthfulQA's rule),
BBQ options by mean log-prob per token as in `rows/sea.py`, whose rules (`untestable`: headroom,
and an edit that moves activations by ≥ 1 %) this row shares; the edit sizes are recorded."""

from __future__ import annotations

import math
import random
from dataclasses import dataclass

from alignlab.claims.row import ClaimRow, ClaimTest, RowContext, SeedResult
from alignlab.claims.rows import real_smollm2
from alignlab.claims.rows.sea import untestable

TQA, BBQ = "truthfulqa/TruthfulQA.csv", "bbq"
SITE_KIND, TOP_LAYERS, K_TRUTH, K_BIAS = "mlp", 3, 0.99, 0.9999


@dataclass(frozen=True)
class Sizes:
    tqa_fit: int
    tqa_eval: int
    bbq_fit: int
    bbq_eval: int


SIZES = {True: Sizes(tqa_fit=12, tqa_eval=8, bbq_fit=12, bbq_eval=12),
         False: Sizes(tqa_fit=40, tqa_eval=30, bbq_fit=40, bbq_eval=48)}  # 80/60/100/120: > 23 min a seed at load 5–10


def first_line(texts: list[str]) -> list[str]:
    """Neutral answers: the model's greedy answer up to its first newline, with a leading space."""
    return [" " + t.strip().split("\n")[0].strip() for t in texts]


def fit_editor(model, tok, demos, k: float):
    """Linear SEA at the TOP_LAYERS best-scoring MLP-output sites."""
    from alignlab.interventions import sea
    from alignlab.interventions.hooks import Site, num_layers

    acts = sea.collect(model, tok, demos, [Site(SITE_KIND, ly) for ly in range(num_layers(model))])
    top, ranked = sea.top_sites(acts, TOP_LAYERS)
    editor = sea.fit_from_activations(top, k, k, "none")
    return editor, [s for s, _ in ranked[:TOP_LAYERS]]


def _truthfulness(model, tok, path, size: Sizes, seed: int) -> tuple[dict[str, float], list]:
    from alignlab.eval.benchmarks import load_truthfulqa
    from alignlab.eval.multiple_choice import default_prompt, evaluate_mc
    from alignlab.interventions import sea

    items = load_truthfulqa(path)
    random.Random(seed).shuffle(items)
    fit, test = items[: size.tqa_fit], items[size.tqa_fit: size.tqa_fit + size.tqa_eval]
    prompts = [default_prompt(it.question) for it in fit]
    neutral = first_line(sea.neutral_answers(model, tok, prompts, max_new_tokens=20))
    demos = [sea.Demo(p, " " + it.best, " " + it.incorrect[0], n) for p, it, n in zip(prompts, fit, neutral)]
    editor, sites = fit_editor(model, tok, demos, K_TRUTH)
    before = evaluate_mc(model, tok, test)
    with editor.apply(model):
        after = evaluate_mc(model, tok, test)
    return {"mc1_before": before["mc1"], "mc1_after": after["mc1"], "mc2_before": before["mc2"],
            "mc2_after": after["mc2"], "mc1_gain": after["mc1"] - before["mc1"],
            "mc2_gain": after["mc2"] - before["mc2"],
            "truth_edit_size": editor.strength}, sites


def _bias(model, tok, folder, size: Sizes, seed: int) -> tuple[dict[str, float], list]:
    from alignlab.eval.benchmarks import load_bbq
    from alignlab.eval.bias import default_prompt, evaluate_bias
    from alignlab.interventions import sea

    qs = load_bbq(folder)
    random.Random(1_000 + seed).shuffle(qs)
    test = qs[: size.bbq_eval]
    pool = [q for q in qs[size.bbq_eval:] if q.stereotyped >= 0 and q.stereotyped != q.label][: size.bbq_fit]
    prompts = [default_prompt(q) for q in pool]
    neutral = first_line(sea.neutral_answers(model, tok, prompts, max_new_tokens=12))
    demos = [sea.Demo(p, " " + q.options[q.label], " " + q.options[q.stereotyped], n)
             for p, q, n in zip(prompts, pool, neutral)]
    editor, sites = fit_editor(model, tok, demos, K_BIAS)
    before = evaluate_bias(model, tok, test, average=True)
    with editor.apply(model):
        after = evaluate_bias(model, tok, test, average=True)
    return {"bias_ambig_before": before["bias_score_ambig"], "bias_ambig_after": after["bias_score_ambig"],
            "abs_bias_change": abs(after["bias_score_ambig"]) - abs(before["bias_score_ambig"]),
            "bias_disambig_before": before.get("bias_score_disambig", math.nan),
            "bias_disambig_after": after.get("bias_score_disambig", math.nan),
            "bias_accuracy_before": before["accuracy"], "bias_accuracy_after": after["accuracy"],
            "unknown_rate_before": before["unknown_rate"],
            "bias_edit_size": editor.strength}, sites


def measure(ctx: RowContext, seed: int) -> SeedResult:
    size = SIZES[ctx.quick]
    files = real_smollm2.require(ctx, TQA, BBQ)
    model, tok = real_smollm2.load(ctx)
    truth, t_sites = _truthfulness(model, tok, files[TQA], size, seed)
    bias, b_sites = _bias(model, tok, files[BBQ], size, seed)
    note = f"sites: truth {', '.join(map(str, t_sites))}; bias {', '.join(map(str, b_sites))}"
    return SeedResult({**truth, **bias}, note=note)


ROW = ClaimRow(
    key="sea_smollm2", paper=f"Spectral Editing of Activations (Qiu et al., NeurIPS 2024) — {real_smollm2.MODEL}",
    claim=f"SEA raises truthfulness (TruthfulQA MC1) and lowers bias (BBQ), on {real_smollm2.MODEL}",
    tests=(ClaimTest("mc1_gain", "greater", "SEA − base TruthfulQA MC1"),
           ClaimTest("abs_bias_change", "less", "SEA − base |BBQ ambiguous bias score|")),
    measure=measure, untestable=untestable,
    extra_keys=("mc1_before", "mc1_after", "mc2_gain", "truth_edit_size", "bias_ambig_before", "bias_ambig_after",
                "bias_disambig_before", "bias_disambig_after", "bias_accuracy_before", "bias_accuracy_after",
                "bias_edit_size"),
    setup=f"{real_smollm2.MODEL}-Instruct (real:smollm2); linear SEA at the top-{TOP_LAYERS} MLP-output layers by the "
          f"layer heuristic; TruthfulQA: seeded split, 40 fitting / 30 held-out questions (quick 12 / 8), K = {K_TRUTH}; "
          f"BBQ (4 categories): seeded split, 40 demonstrations / 48 held-out questions (quick 12 / 12), "
          f"K = {K_BIAS}; MC by summed, BBQ options by mean log-prob per token",
)
