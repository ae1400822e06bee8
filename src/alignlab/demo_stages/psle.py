"""Demo stage: PSLE on the testbed sentiment task — principle-guided self-labelling.

From the pretrained student: each iteration samples y for the plain review prompt and y_p
with the principle prefixed, scores both with the gold reward on the plain prompt, turns
Δ > τ into ranking pairs and everything else into reward-weighted SFT, and decays τ.
Reported: held-out gold reward before → after, pairs vs SFT items, all samples kept.
"""

from __future__ import annotations

from alignlab.config import ModelSettings, TrainSettings
from alignlab.demo_stages import DemoContext, StageResult
from alignlab.generation import SamplingSettings
from alignlab.plots import line_plot
from alignlab.recipes import psle
from alignlab.runs import read_metrics
from alignlab.threads import cpu_threads

# The world's instruction header "write a positive review" (as in examples/psle.yaml): the v2 base
# student obeys it (gold sentiment of its samples ≈ 0.03 → 0.49), so y_p is a better sample than y.
PRINCIPLE = "testbed:positive"


def stage_config(ctx: DemoContext) -> psle.PSLEConfig:
    """Settings small enough for a 2-core CPU (quick mode is a smoke test)."""
    q = ctx.quick
    return psle.PSLEConfig(
        model=ModelSettings(name_or_path=ctx.base_model),
        principle=PRINCIPLE, queries="testbed:reviews", reward="gold:sentiment",
        train=TrainSettings(lr=3e-4, batch_size=8 if q else 16, save_every=0, seed=ctx.seed, progress=not q),
        n_queries=64 if q else 512, eval_queries=8 if q else 64,
        iterations=2 if q else 12, queries_per_iteration=8 if q else 64, epochs=1 if q else 2,
        generation=SamplingSettings(max_new_tokens=8 if q else 16, batch_size=128),
        output_dir=str(ctx.out_dir / "psle"),
    )


def run(ctx: DemoContext) -> StageResult:
    """Run PSLE on one torch thread (restored afterwards; the student's matmuls are small)."""
    with cpu_threads(1):
        return _run(ctx)


def _run(ctx: DemoContext) -> StageResult:
    res = psle.run(stage_config(ctx))
    m = res.metrics
    its = [r for r in read_metrics(res.run_dir / "metrics.jsonl") if "tau" in r]
    xs = [r["iteration"] for r in its]
    fig = line_plot({"R(x, y) plain": (xs, [r["reward_plain"] for r in its]),
                     "R(x, y_p) with principle": (xs, [r["reward_principle"] for r in its]),
                     "τ": (xs, [r["tau"] for r in its]),
                     "pair share": (xs, [r["n_pairs"] / max(1, r["n_pairs"] + r["n_sft"]) for r in its])},
                    ctx.out_dir / "psle" / "psle_iterations.png", title="PSLE: rewards, threshold, pair share",
                    xlabel="iteration", markers=True)
    rows = [{"stage": "psle", "method": "start (student)", "gold_reward": m["eval_reward_before"]},
            {"stage": "psle", "method": "PSLE", "gold_reward": m["eval_reward_after"], "pairs": m["pairs"],
             "sft_items": m["sft_items"], "samples_kept": m["samples_kept"]}]
    first = its[0] if its else {"reward_plain": float("nan"), "reward_principle": float("nan")}
    note = (f"PSLE: held-out gold reward {m['eval_reward_before']:.2f} → {m['eval_reward_after']:.2f} after "
            f"{m['iterations']} iterations ({m['pairs']} ranking pairs, {m['sft_items']} reward-weighted SFT "
            f"queries, all {m['samples_kept']} samples kept; τ 0.2 → {m['final_tau']:.3f}). In the first iteration "
            f"the principle ('write a positive review') moved the gold reward of the samples "
            f"{first['reward_plain']:.2f} → {first['reward_principle']:.2f}; those principled samples become the "
            f"training targets for the plain prompt. No KL term: watch the samples.")
    verdict = (f"PSLE moved the held-out gold reward {m['eval_reward_before']:.2f} → {m['eval_reward_after']:.2f} "
               f"in {m['iterations']} iterations ({m['pairs']} ranking pairs, {m['sft_items']} weighted-SFT queries).")
    headline = [{"method": "PSLE", "measure": "gold reward", "before": m["eval_reward_before"],
                 "after": m["eval_reward_after"], "note": "base student → PSLE"}]
    return StageResult("psle", rows=rows, figures=[fig], notes=[note], verdict=verdict, headline=headline)
