"""Demo stage: RLHF on the testbed sentiment task — PPO + KL penalty vs Elastic Reset.

Both start from the pretrained student (review continuations are plain text, not chat),
optimise the gold sentiment reward, and are measured the same way: gold reward, KL(π‖π0)
on fresh samples and perplexity of held-out neutral text, drawn as reward-vs-drift curves.
"""

from __future__ import annotations

from alignlab.config import ModelSettings, TrainSettings
from alignlab.demo_stages import DemoContext, StageResult
from alignlab.generation import SamplingSettings
from alignlab.recipes import ppo
from alignlab.rl.elastic_reset import ElasticResetSettings
from alignlab.runs import read_metrics
from alignlab.threads import cpu_threads


def stage_config(ctx: DemoContext, name: str, elastic: bool) -> ppo.PPOConfig:
    """The stage's PPO settings (small enough for a 2-core CPU; quick mode is a smoke test)."""
    quick = ctx.quick
    iterations = 3 if quick else 20
    return ppo.PPOConfig(
        model=ModelSettings(name_or_path=ctx.base_model),
        train=TrainSettings(lr=3e-4, batch_size=16, log_every=1, save_every=0, seed=ctx.seed,
                            progress=not quick),
        prompts="testbed:reviews", reward="gold:sentiment", n_prompts=256,
        generation=SamplingSettings(max_new_tokens=8 if quick else 16, batch_size=32),
        ppo=ppo.PPOSettings(iterations=iterations, rollout_batch=16 if quick else 32, epochs=2, kl_coef=0.05),
        elastic_reset=ElasticResetSettings(enabled=elastic, decay=0.99, reset_every=3 if quick else 36,
                                           ema_update="step"),
        eval=ppo.DriftEvalSettings(every=3 if quick else 4, n_prompts=8 if quick else 48,
                                   n_reference=8 if quick else 64, reference_text="testbed:neutral"),
        output_dir=str(ctx.out_dir / "rlhf" / name),
    )


def run(ctx: DemoContext) -> StageResult:
    """Run PPO+KL and Elastic Reset on one torch thread (restored afterwards): the student's
    small matmuls gain little from two threads, and on a busy 2-core machine two spinning
    threads made this stage over 10x slower (measured)."""
    with cpu_threads(1):
        return _run(ctx)


def _run(ctx: DemoContext) -> StageResult:
    from alignlab.compare import drift_figures

    groups, rows = {}, []
    for name, elastic in (("ppo_kl", False), ("elastic_reset", True)):
        cfg = stage_config(ctx, name, elastic)
        res = ppo.run(cfg)
        records = read_metrics(res.run_dir / "metrics.jsonl")
        label = ppo.run_label(cfg)
        groups[label] = [records]
        evals = [r for r in records if "eval_reward" in r]
        if not rows:
            rows.append({"stage": "rlhf", "method": "start (student)", "gold_reward": evals[0]["eval_reward"],
                         "kl": 0.0, "neutral_ppl": evals[0]["eval_ppl"]})
        rows.append({"stage": "rlhf", "method": label, "gold_reward": evals[-1]["eval_reward"],
                     "kl": evals[-1]["eval_kl"], "neutral_ppl": evals[-1]["eval_ppl"],
                     "resets": res.metrics.get("resets", 0)})
        ctx.artifacts[f"rlhf_{name}_model"] = str(res.model_dir)
    figs = drift_figures(groups, ctx.out_dir / "rlhf", title="PPO + KL vs Elastic Reset (testbed sentiment)")
    ppo_row, er_row = rows[1], rows[2]
    note = (f"RLHF on the sentiment task: gold reward {rows[0]['gold_reward']:.2f} → PPO+KL "
            f"{ppo_row['gold_reward']:.2f} (KL {ppo_row['kl']:.2f}), Elastic Reset {er_row['gold_reward']:.2f} "
            f"(KL {er_row['kl']:.2f}, {er_row['resets']} resets). One seed; see benchmarks/RESULTS_rlhf.md "
            f"for the three-seed comparison.")
    headline = [{"method": r["method"], "measure": "gold reward", "before": rows[0]["gold_reward"],
                 "after": r["gold_reward"], "note": f"KL(π‖π0) {r['kl']:.2f}, neutral ppl {r['neutral_ppl']:.2f}"}
                for r in (ppo_row, er_row)]
    verdict = (f"Gold reward {rows[0]['gold_reward']:.2f} → {ppo_row['gold_reward']:.2f} with PPO + KL "
               f"(KL {ppo_row['kl']:.2f}) and → {er_row['gold_reward']:.2f} with Elastic Reset "
               f"(KL {er_row['kl']:.2f}, {er_row['resets']} resets); one seed.")
    return StageResult("rlhf", rows=rows, figures=figs, notes=[note], verdict=verdict, headline=headline)
