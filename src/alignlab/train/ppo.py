"""PPO recipe (SPEC §3): token-level KL penalty to a reference, GAE, clipped policy and value
losses, several epochs over minibatches of each rollout batch; optional Elastic Reset.

Each iteration: sample one response per prompt (KV-cache sampling), score it under the
policy, value head and KL anchor, reward it, compute GAE, then `ppo.epochs` passes over
minibatches of `train.batch_size × train.grad_accum` responses, one `Trainer.step` each.
Every `eval.every` iterations the run measures reward, KL(π‖π0) on fresh samples and the
perplexity of held-out reference text: the points of the reward-vs-drift curve.
`train.log_every` and `train.save_every` count PPO iterations here; `train.epochs` and
`train.max_steps` are unused (`ppo.iterations` sets the length).
"""

from __future__ import annotations

import argparse
import copy
import time
from dataclasses import dataclass, field
from typing import Any

import torch

from alignlab.config import ModelSettings, TrainSettings
from alignlab.data.chat import read_prompts
from alignlab.errors import ConfigError, TrainingError
from alignlab.eval.drift import perplexity, reference_texts, sampled_kl
from alignlab.losses.rl import (
    KL_ESTIMATORS,
    clipped_policy_loss,
    clipped_value_loss,
    entropy_from_logits,
    make_kl_controller,
    masked_mean,
)
from alignlab.models import load_model
from alignlab.recipe import RunResult, add_recipe_args, config_from_args, default_run_dir
from alignlab.rl.elastic_reset import ElasticReset, ElasticResetSettings
from alignlab.rl.policy import PolicyWithValue
from alignlab.rl.rewards import RewardFn, RewardProcessor, check_finite_rewards, load_reward_fn
from alignlab.rl.rollout import Rollout, collect_rollout, finish_rollout
from alignlab.runs import RunDir
from alignlab.train.loop import Trainer, seed_everything


@dataclass
class GenerationSettings:
    """How rollouts are sampled."""

    max_new_tokens: int = 24
    temperature: float = 1.0
    top_p: float = 1.0
    batch_size: int = 64  # sequences per generation/scoring forward


@dataclass
class PPOSettings:
    """PPO proper: rollout size, epochs, GAE, clipping, KL penalty, reward processing."""

    iterations: int = 100  # rollout batches
    rollout_batch: int = 64  # prompts (= responses) per rollout batch, per process
    epochs: int = 4  # passes over each rollout batch
    gamma: float = 1.0
    lam: float = 0.95
    clip: float = 0.2  # ε of the clipped policy loss
    value_clip: float = 0.2  # ε of the clipped value loss
    vf_coef: float = 0.1
    entropy_coef: float = 0.0
    kl_coef: float = 0.05  # β_KL (the initial value when adaptive)
    kl_target: float = 0.0  # > 0: adaptive controller aiming at this per-sequence KL
    kl_horizon: float = 10000.0  # adaptive controller horizon (in responses)
    kl_estimator: str = "k1"  # per-token KL in the penalty: k1 | k2 | k3
    reward_norm: str = "none"  # none | batch | running
    reward_clip: float = 0.0  # > 0: clip processed rewards to ±reward_clip
    whiten_advantages: bool = True
    # epochs = 1, one minibatch, no grad accumulation, no dropout: take π_old and V_old from the
    # update's own forward (identical numbers, one policy forward less per iteration)
    fuse_scoring: bool = True


@dataclass
class DriftEvalSettings:
    """Reward and drift measured every `every` iterations (and before the first)."""

    every: int = 5
    n_prompts: int = 64
    reference_text: str = "testbed:neutral"  # or a .txt (one text a line) / .jsonl ({"text"}) file
    n_reference: int = 100


@dataclass
class PPOConfig:
    """PPO with a KL penalty (and optionally Elastic Reset) against a sequence reward."""

    model: ModelSettings = field(default_factory=ModelSettings)
    train: TrainSettings = field(default_factory=lambda: TrainSettings(
        lr=1e-4, batch_size=16, grad_accum=1, log_every=1, save_every=10, max_grad_norm=1.0))
    prompts: str = "testbed:reviews"  # or a .jsonl ({"prompt": str | messages}) / .txt file
    n_prompts: int = 512  # size of the testbed prompt pool
    reward: str = "gold:sentiment"  # or the folder of a learned reward model
    generation: GenerationSettings = field(default_factory=GenerationSettings)
    ppo: PPOSettings = field(default_factory=PPOSettings)
    elastic_reset: ElasticResetSettings = field(default_factory=ElasticResetSettings)
    eval: DriftEvalSettings = field(default_factory=DriftEvalSettings)
    output_dir: str = ""


def validate(cfg: PPOConfig) -> int:
    """Check the config; returns optimiser steps per iteration."""
    p, t = cfg.ppo, cfg.train
    mb = t.batch_size * t.grad_accum
    if p.rollout_batch < 1 or p.epochs < 1 or p.iterations < 1:
        raise ConfigError("ppo.rollout_batch, ppo.epochs and ppo.iterations must be >= 1")
    if p.rollout_batch % mb:
        raise ConfigError(f"ppo.rollout_batch ({p.rollout_batch}) must be a multiple of "
                          f"train.batch_size x train.grad_accum ({mb})")
    if p.kl_estimator not in KL_ESTIMATORS:
        raise ConfigError(f"ppo.kl_estimator: '{p.kl_estimator}' is not one of {list(KL_ESTIMATORS)}")
    if cfg.generation.max_new_tokens < 1:
        raise ConfigError("generation.max_new_tokens must be >= 1")
    if cfg.eval.every < 0 or cfg.eval.n_prompts < 1:
        raise ConfigError("eval.every must be >= 0 and eval.n_prompts >= 1")
    cfg.elastic_reset.validate()
    return p.epochs * (p.rollout_batch // mb)


def load_prompts(cfg: PPOConfig, tokenizer) -> tuple[list[str], list[str]]:
    """(training prompts, evaluation prompts); testbed eval prompts come from another seed."""
    if cfg.prompts == "testbed:reviews":
        from alignlab.testbed.world import World

        world = World()
        return world.review_prompts(cfg.n_prompts, seed=cfg.train.seed), world.review_prompts(cfg.eval.n_prompts, seed=10_007)
    prompts = [p if isinstance(p, str) else tokenizer.apply_chat_template(p, tokenize=False, add_generation_prompt=True)
               for p in read_prompts(cfg.prompts, "prompts", "testbed:reviews")]
    return prompts, prompts[: cfg.eval.n_prompts]


class RolloutRNG:
    """The run's random stream (prompt choice, minibatch order, sampling seeds), checkpointed.

    It is identical on every process; each process samples with a generator seeded from it
    plus its rank, so processes draw different responses and one saved state resumes all.
    """

    def __init__(self, seed: int):
        self.shuffle = torch.Generator().manual_seed(seed * 7919 + 1)

    def draw(self, n_pool: int, k: int) -> list[int]:
        """k pool indices for this iteration: distinct when the pool has k, else with repeats."""
        if n_pool >= k:
            return torch.randperm(n_pool, generator=self.shuffle)[:k].tolist()
        return torch.randint(n_pool, (k,), generator=self.shuffle).tolist()

    def sampling_generator(self, rank: int) -> torch.Generator:
        """A fresh generator for this iteration's sampling on process `rank`."""
        base = int(torch.randint(2**62, (1,), generator=self.shuffle))
        return torch.Generator().manual_seed(base + rank)

    def state_dict(self) -> dict[str, Any]:
        return {"shuffle": self.shuffle.get_state()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.shuffle.set_state(state["shuffle"])


def ppo_loss(model: torch.nn.Module, mb: dict[str, Any], cfg: PPOConfig) -> tuple[torch.Tensor, dict[str, Any]]:
    """Clipped policy loss + vf_coef · clipped value loss − entropy_coef · entropy."""
    packed = mb["packed"]
    logp, values, logits = model(packed, cfg.generation.temperature)
    return ppo_loss_terms(logp, values, logits, packed.response_mask, mb, cfg)


def can_fuse_scoring(cfg: PPOConfig, model: torch.nn.Module) -> bool:
    """True when the update's first forward sees exactly π_old: one epoch, one minibatch holding
    the whole rollout, no accumulation, and no dropout (eval- and train-mode forwards agree)."""
    p, t = cfg.ppo, cfg.train
    dropout = any(isinstance(m, torch.nn.Dropout) and m.p > 0 for m in model.modules())
    attn_dropout = float(getattr(getattr(model, "config", None), "attention_dropout", 0.0) or 0.0)
    return (p.fuse_scoring and p.epochs == 1 and t.grad_accum == 1 and t.batch_size == p.rollout_batch
            and not dropout and attn_dropout == 0.0)


def fused_ppo_loss(model: torch.nn.Module, rollout: Rollout, processed: torch.Tensor, kl_coef: float,
                   cfg: PPOConfig, stats_out: dict[str, float]) -> tuple[torch.Tensor, dict[str, Any]]:
    """PPO on the whole rollout with π_old, V_old taken (detached) from this very forward.

    With the parameters not yet updated, these equal what a separate no-grad scoring pass
    gives; rewards, GAE and whitening follow, then the usual losses (ratio = 1, so the clipped
    objective's gradient is −A·∇log π). Batch statistics go to `stats_out`.
    """
    p = cfg.ppo
    logp, values, logits = model(rollout.packed, cfg.generation.temperature)
    rollout.logprobs, rollout.values = logp.detach(), values.detach()
    stats_out.update(finish_rollout(rollout, processed, kl_coef, p.kl_estimator, p.gamma, p.lam,
                                    p.whiten_advantages))
    mb = {"old_logprobs": rollout.logprobs, "old_values": rollout.values,
          "advantages": rollout.advantages, "returns": rollout.returns}
    return ppo_loss_terms(logp, values, logits, rollout.mask, mb, cfg)


def ppo_loss_terms(logp: torch.Tensor, values: torch.Tensor, logits: torch.Tensor, mask: torch.Tensor,
                   mb: dict[str, Any], cfg: PPOConfig) -> tuple[torch.Tensor, dict[str, Any]]:
    """The PPO objective from this forward's log-probs, values and logits and the batch's old values."""
    p = cfg.ppo
    pg, pstats = clipped_policy_loss(logp, mb["old_logprobs"], mb["advantages"], mask, p.clip)
    vf, vstats = clipped_value_loss(values, mb["old_values"], mb["returns"], mask, p.value_clip)
    loss = pg + p.vf_coef * vf
    if p.entropy_coef > 0:
        entropy = masked_mean(entropy_from_logits(logits), mask)
        loss = loss - p.entropy_coef * entropy
    else:
        with torch.no_grad():
            entropy = masked_mean(entropy_from_logits(logits), mask)
    return loss, {"pg_loss": pg.detach(), "vf_loss": vf.detach(), "entropy": entropy.detach(), **pstats, **vstats}


def evaluate_drift(policy_lm: torch.nn.Module, initial: torch.nn.Module, tokenizer, prompts: list[str],
                   reward_fn: RewardFn, ref_texts: list[str], max_new_tokens: int, batch_size: int,
                   seed: int, gold: RewardFn | None = None) -> dict[str, float]:
    """Reward and drift of the current policy: eval_reward, eval_kl (k1), eval_kl_k3, eval_ppl."""
    g = torch.Generator().manual_seed(seed)
    skl = sampled_kl(policy_lm, initial, tokenizer, prompts, max_new_tokens, batch_size, g)
    scores = check_finite_rewards(list(reward_fn(prompts, skl.texts)), prompts, skl.texts, " (evaluation)")
    out = {"eval_reward": float(scores.mean()), "eval_kl": skl.kl, "eval_kl_k3": float(skl.kl_k3.mean()),
           "eval_ppl": perplexity(policy_lm, tokenizer, ref_texts, batch_size)}
    if gold is not None:
        out["eval_gold_reward"] = sum(gold(prompts, skl.texts)) / len(prompts)
    return out


def mean_over_processes(trainer: Trainer, stats: dict[str, float]) -> dict[str, float]:
    """Rollout statistics averaged over processes (so every process moves β_KL alike)."""
    if trainer.world == 1:
        return stats
    keys = sorted(stats)
    t = torch.tensor([stats[k] for k in keys], device=trainer.accelerator.device)
    return dict(zip(keys, trainer.accelerator.reduce(t, reduction="mean").tolist()))


def _frozen_copy(model: torch.nn.Module) -> torch.nn.Module:
    return copy.deepcopy(model).eval().requires_grad_(False)


def run(cfg: PPOConfig) -> RunResult:
    """Train cfg.model with PPO on cfg.prompts against cfg.reward; returns run dir + final numbers."""
    steps_per_iter = validate(cfg)
    p, g, er_cfg = cfg.ppo, cfg.generation, cfg.elastic_reset
    seed_everything(cfg.train.seed)
    run_dir = RunDir(cfg.output_dir or default_run_dir("ppo"))
    lm, tok = load_model(cfg.model)
    initial = _frozen_copy(lm)  # θ0: drift is always measured against it
    ema_anchor = er_cfg.enabled and er_cfg.kl_anchor == "ema"
    anchor = _frozen_copy(lm) if ema_anchor else initial
    policy = PolicyWithValue(lm)
    reward_fn = load_reward_fn(cfg.reward)
    gold = None
    if cfg.reward not in ("gold", "gold:sentiment") and cfg.prompts == "testbed:reviews":
        gold = load_reward_fn("gold:sentiment")
    train_prompts, eval_prompts = load_prompts(cfg, tok)
    ref_texts = reference_texts(cfg.eval.reference_text, cfg.eval.n_reference)
    kl_ctl = make_kl_controller(p.kl_coef, p.kl_target, p.kl_horizon)
    reward_proc = RewardProcessor(p.reward_norm, p.reward_clip)
    rng = RolloutRNG(cfg.train.seed)
    extra: dict[str, Any] = {"kl_controller": kl_ctl, "reward_norm": reward_proc, "rollout_rng": rng}
    trainer = Trainer(policy, cfg.train, run_dir, total_steps=p.iterations * steps_per_iter,
                      extra_state=extra, save_fn=lambda m, out: m.save(out))
    elastic = None
    if er_cfg.enabled:
        elastic = ElasticReset([(n, q) for n, q in trainer.unwrapped.named_parameters() if q.requires_grad], er_cfg)
        trainer.extra_state["elastic_reset"] = elastic
    run_dir.save_config(cfg)
    if not trainer.resume():
        run_dir.truncate_metrics(-1)  # a run that died before its first checkpoint starts over
    start = trainer.step_count // steps_per_iter
    device = next(policy.parameters()).device
    fused = can_fuse_scoring(cfg, policy)

    def measure(it: int) -> dict[str, float]:
        return evaluate_drift(trainer.unwrapped.lm, initial, tok, eval_prompts, reward_fn, ref_texts,
                              g.max_new_tokens, g.batch_size, cfg.train.seed * 100_003 + it, gold)

    def on_reset(it: int) -> None:
        if er_cfg.reset_optimizer:
            opt = getattr(trainer.optimizer, "optimizer", trainer.optimizer)
            opt.state.clear()
        trainer.run.log({"step": trainer.step_count, "iteration": it, "event": "elastic_reset",
                         "resets": elastic.resets})

    if start == 0 and cfg.eval.every > 0:
        trainer.run.log({"step": 0, "iteration": 0, **measure(0)})
    from alignlab.progress import progress_bar

    last: dict[str, Any] = {}
    mb_size = cfg.train.batch_size * cfg.train.grad_accum
    with progress_bar("ppo", total=p.iterations, completed=start,
                      enabled=cfg.train.progress and trainer.is_main) as bar:
        for it in range(start + 1, p.iterations + 1):
            prompts = [train_prompts[i] for i in rng.draw(len(train_prompts), p.rollout_batch)]
            if ema_anchor:
                anchor.load_state_dict(elastic.ema_state("lm."), strict=False)
            try:
                rollout: Rollout = collect_rollout(
                    trainer.unwrapped, anchor, tok, prompts, reward_fn, g.max_new_tokens, g.temperature,
                    g.top_p, g.batch_size, rng.sampling_generator(trainer.rank), where=f" at iteration {it}",
                    score_policy=not fused)
            except TrainingError as e:
                raise TrainingError(f"{e}. Last good checkpoint: {trainer.last_checkpoint or 'none yet'}") from e
            processed = reward_proc(rollout.scores).to(device)
            t0 = time.perf_counter()
            window: list[dict[str, float]] = []
            stats: dict[str, float] = {}
            if fused:
                torch.randperm(len(rollout), generator=rng.shuffle)  # the unfused path's shuffle: same RNG stream
                window.append(trainer.step(
                    lambda m, r, pr=processed, st=stats: fused_ppo_loss(m, r, pr, kl_ctl.value, cfg, st), [rollout]))
                for unit in ("step", "epoch"):
                    if elastic is not None and elastic.tick(unit):
                        on_reset(it)
            else:
                stats = finish_rollout(rollout, processed, kl_ctl.value, p.kl_estimator, p.gamma, p.lam,
                                       p.whiten_advantages)
            for _epoch in range(0 if fused else p.epochs):
                perm = torch.randperm(len(rollout), generator=rng.shuffle)
                for k in range(len(rollout) // mb_size):
                    rows = perm[k * mb_size : (k + 1) * mb_size]
                    micro = [rollout.minibatch(rows[j * cfg.train.batch_size : (j + 1) * cfg.train.batch_size])
                             for j in range(cfg.train.grad_accum)]
                    window.append(trainer.step(lambda m, b: ppo_loss(m, b, cfg), micro))
                    if elastic is not None and elastic.tick("step"):
                        on_reset(it)
                if elastic is not None and elastic.tick("epoch"):
                    on_reset(it)
            if elastic is not None and elastic.tick("rollout"):
                on_reset(it)
            stats = mean_over_processes(trainer, stats)
            stats["kl_coef"] = kl_ctl.value
            kl_ctl.update(stats["kl"], len(rollout) * trainer.world)
            rec: dict[str, Any] = {"step": trainer.step_count, "iteration": it, **stats}
            rec.update({k: sum(m[k] for m in window) / len(window) for k in window[0]})
            rec.update({f"time_{k}": round(v, 4) for k, v in rollout.timings.items()})
            rec["time_update"] = round(time.perf_counter() - t0, 4)
            if elastic is not None:
                rec["resets"] = elastic.resets
            if cfg.eval.every > 0 and (it % cfg.eval.every == 0 or it == p.iterations):
                rec.update(measure(it))
            if it % max(1, cfg.train.log_every) == 0 or "eval_reward" in rec or it == p.iterations:
                trainer.run.log(rec)
            last = rec
            bar.advance(reward=stats["reward"], kl=stats["kl"])
            if cfg.train.save_every > 0 and it % cfg.train.save_every == 0:
                trainer.save_checkpoint()
    final = trainer.save_final(tok)
    records = run_dir.metrics()
    if trainer.is_main:
        write_ppo_report(run_dir, records, cfg)
    evals = [r for r in records if "eval_reward" in r]
    metrics = {k: evals[-1][k] for k in ("eval_reward", "eval_kl", "eval_ppl") if evals and k in evals[-1]}
    metrics.update({"iterations": p.iterations, "resets": elastic.resets if elastic else 0,
                    "reward": last.get("reward")})
    return RunResult(run_dir.path, metrics, final)


def run_label(cfg: PPOConfig) -> str:
    """Short legend label of a run: 'PPO β=..' or 'Elastic Reset n=.. β=..'."""
    from alignlab.compare import label_of_config
    from alignlab.config import to_dict

    return label_of_config(to_dict(cfg))


def write_ppo_report(run_dir: RunDir, records: list[dict[str, Any]], cfg: PPOConfig) -> None:
    """report.html with reward/KL curves and the reward-vs-drift plots of this run."""
    from alignlab.compare import drift_figures
    from alignlab.report import write_report

    figs = drift_figures({run_label(cfg): [records]}, run_dir.path, title=run_label(cfg))
    evals = [{k: r[k] for k in ("iteration", "eval_reward", "eval_kl", "eval_kl_k3", "eval_ppl") if k in r}
             for r in records if "eval_reward" in r]
    resets = [r for r in records if r.get("event") == "elastic_reset"]
    notes = [f"{len(resets)} elastic resets (at iterations {[r['iteration'] for r in resets]})."] if resets else []
    write_report(run_dir.path, title=f"PPO: {run_label(cfg)}", notes=notes, figures=figs,
                 tables={"Evaluations (reward vs drift)": evals}, curve_keys=("reward", "kl"))


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("ppo", help="RLHF with PPO + KL penalty (optionally Elastic Reset); reward-vs-drift report")
    add_recipe_args(p)

    def handler(args: argparse.Namespace) -> int:
        res = run(config_from_args(PPOConfig, args))
        from alignlab.progress import print_table

        print_table(f"PPO run {res.run_dir}", [res.metrics])
        return 0

    p.set_defaults(func=handler)
