"""Row 3 — Elastic Reset (Noukhovitch et al., NeurIPS 2023): periodically resetting the policy
to an EMA of itself (and the EMA to the start) gives more reward at the same drift than PPO with
a KL penalty; its reward-vs-drift front dominates.

Per seed: PPO + KL and Elastic Reset (same β_KL, steps, data, seed) optimise the gold sentiment
reward from the base student; both are evaluated every few iterations (gold reward, KL(π‖π0)
on fresh samples). Front: F(b) = the best reward along a run's curve with KL ≤ b
(`stats.frontier_at`). Tests: F_ER(b) − F_PPO(b) > 0 at every KL budget b."""

from __future__ import annotations

from dataclasses import dataclass

from alignlab.claims.row import ClaimRow, ClaimTest, RowContext, SeedResult
from alignlab.claims.stats import frontier_at

BUDGETS = (1.0, 2.0, 4.0, 8.0)  # KL(π‖π0) budgets in nats


@dataclass(frozen=True)
class Sizes:
    iterations: int
    rollout_batch: int
    new_tokens: int
    reset_every: int  # optimiser steps
    eval_every: int
    eval_prompts: int


SIZES = {True: Sizes(iterations=4, rollout_batch=16, new_tokens=8, reset_every=4, eval_every=1, eval_prompts=8),
         False: Sizes(iterations=60, rollout_batch=32, new_tokens=16, reset_every=56, eval_every=4, eval_prompts=48)}


def config(ctx: RowContext, seed: int, elastic: bool):
    from alignlab.config import ModelSettings, TrainSettings
    from alignlab.generation import SamplingSettings
    from alignlab.recipes import ppo
    from alignlab.rl.elastic_reset import ElasticResetSettings

    s = SIZES[ctx.quick]
    return ppo.PPOConfig(
        model=ModelSettings(name_or_path=ctx.models["student"]),
        train=TrainSettings(lr=3e-4, batch_size=16, log_every=1, save_every=0, seed=seed, progress=False),
        prompts="testbed:reviews", reward="gold:sentiment", n_prompts=256,
        generation=SamplingSettings(max_new_tokens=s.new_tokens, batch_size=32),
        ppo=ppo.PPOSettings(iterations=s.iterations, rollout_batch=s.rollout_batch, epochs=2, kl_coef=0.05),
        elastic_reset=ElasticResetSettings(enabled=elastic, decay=0.99, reset_every=s.reset_every, ema_update="step"),
        eval=ppo.DriftEvalSettings(every=s.eval_every, n_prompts=s.eval_prompts, n_reference=s.eval_prompts,
                                   reference_text="testbed:neutral"),
        output_dir=str(ctx.seed_dir(seed) / ("elastic_reset" if elastic else "ppo_kl")),
    )


def measure(ctx: RowContext, seed: int) -> SeedResult:
    from alignlab.recipes import ppo
    from alignlab.runs import read_metrics

    numbers, curves, points = {}, {}, {}
    for name, elastic, label in (("ppo", False, "PPO+KL"), ("er", True, "Elastic Reset")):
        res = ppo.run(config(ctx, seed, elastic))
        evals = [r for r in read_metrics(res.run_dir / "metrics.jsonl") if "eval_reward" in r]
        points[name] = [(max(0.0, float(r["eval_kl"])), float(r["eval_reward"])) for r in evals]
        curves[f"{label} seed {seed}"] = ([p[0] for p in points[name]], [p[1] for p in points[name]])
        numbers[f"{name}_final_reward"], numbers[f"{name}_final_kl"] = points[name][-1][1], points[name][-1][0]
        numbers[f"{name}_resets"] = float(res.metrics.get("resets", 0) or 0)
    for b in BUDGETS:
        f_er, f_ppo = frontier_at(points["er"], b), frontier_at(points["ppo"], b)
        numbers[f"er_front_kl{b:g}"], numbers[f"ppo_front_kl{b:g}"] = f_er, f_ppo
        numbers[f"er_minus_ppo_kl{b:g}"] = f_er - f_ppo
    return SeedResult(numbers, curves)


ROW = ClaimRow(
    key="elastic_reset", paper="Elastic Reset (Noukhovitch et al., NeurIPS 2023)",
    claim="Elastic Reset's reward-vs-drift front dominates PPO + KL over longer runs",
    tests=tuple(ClaimTest(f"er_minus_ppo_kl{b:g}", "greater", f"ER − PPO best reward at KL ≤ {b:g}") for b in BUDGETS),
    measure=measure, curve_axes=("KL(π‖π0), nats", "gold reward"),
    extra_keys=("ppo_final_reward", "er_final_reward", "ppo_final_kl", "er_final_kl", "er_resets"),
    setup="base student, review continuations, gold sentiment reward; β_KL = 0.05, lr 3e-4, 60 iterations × 32 "
          "rollouts (quick 4 × 16), 2 PPO epochs of minibatch 16; Elastic Reset every 56 optimiser steps, EMA 0.99; "
          "evaluated every 4 iterations on 48 held-out prompts",
)
