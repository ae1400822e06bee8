"""PPO recipe (SPEC §3), `alignlab ppo`: token-level KL penalty to a reference, GAE, clipped
policy and value losses, several epochs over minibatches of each rollout batch; optional
Elastic Reset (a `Callback` of the trainer).

Each iteration (`Trainer.fit_online`): `collect` samples one response per prompt (KV-cache
sampling), scores it under the policy, value head and KL anchor, rewards it and computes GAE;
the trainer then runs `ppo.epochs` passes over minibatches of `train.batch_size ×
train.grad_accum` responses. Every `eval.every` iterations the run measures reward,
KL(π‖π0) on fresh samples and the perplexity of held-out reference text: the points of the
reward-vs-drift curve. `train.save_every` counts iterations; `train.epochs`, `train.max_steps`
and `train.log_every` are unused (`ppo.iterations` sets the length; one record per iteration).
"""

from __future__ import annotations

import argparse
import copy
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from alignlab.config import ModelSettings, TrainSettings, bounded, recheck
from alignlab.errors import ConfigError
from alignlab.lazy import lazy_names
from alignlab.method_settings import ElasticResetSettings, SamplingSettings
from alignlab.recipe import RunResult, default_run_dir, register_recipe
from alignlab.runs import RunDir

if TYPE_CHECKING:
    import torch

    from alignlab.rl.rewards import RewardFn
    from alignlab.rl.rollout import Rollout

# torch-side names read as attributes of this module (tests patch them), imported on first use
__getattr__ = lazy_names(globals(), {
    "resolve": "alignlab.resolve",
})


@dataclass
class PPOSettings:
    """PPO proper: rollout size, epochs, GAE, clipping, KL penalty, reward processing."""

    iterations: int = bounded(100, ge=1)  # rollout batches
    rollout_batch: int = bounded(64, ge=1)  # prompts (= responses) per rollout batch, per process
    epochs: int = bounded(4, ge=1)  # passes over each rollout batch
    gamma: float = bounded(1.0, ge=0, le=1)
    lam: float = bounded(0.95, ge=0, le=1)
    clip: float = bounded(0.2, gt=0)  # ε of the clipped policy loss
    value_clip: float = bounded(0.2, ge=0)  # ε of the clipped value loss
    vf_coef: float = bounded(0.1, ge=0)
    entropy_coef: float = bounded(0.0, ge=0)
    kl_coef: float = bounded(0.05, ge=0)  # β_KL (the initial value when adaptive)
    kl_target: float = bounded(0.0, ge=0)  # > 0: adaptive controller aiming at this per-sequence KL
    kl_horizon: float = bounded(10000.0, gt=0)  # adaptive controller horizon (in responses)
    kl_estimator: Literal["k1", "k2", "k3"] = "k1"  # per-token KL in the penalty
    reward_norm: Literal["none", "batch", "running"] = "none"
    reward_clip: float = bounded(0.0, ge=0)  # > 0: clip processed rewards to ±reward_clip
    whiten_advantages: bool = True
    # epochs = 1, one minibatch, no grad accumulation, no dropout: take π_old and V_old from the
    # update's own forward (identical numbers, one policy forward less per iteration)
    fuse_scoring: bool = True


@dataclass
class DriftEvalSettings:
    """Reward and drift measured every `every` iterations (and before the first)."""

    every: int = bounded(5, ge=0)  # 0: no evaluations
    n_prompts: int = bounded(64, ge=1)  # held-out prompts (a file's last n_prompts rows)
    reference_text: str = ""  # held-out text for perplexity (a resolver name or a .txt/.jsonl file); "" = none
    n_reference: int = bounded(100, ge=1)


@dataclass
class PPOConfig:
    """PPO with a KL penalty (and optionally Elastic Reset) against a sequence reward."""

    model: ModelSettings = field(default_factory=ModelSettings)
    train: TrainSettings = field(default_factory=lambda: TrainSettings(
        lr=1e-4, batch_size=16, grad_accum=1, log_every=1, save_every=10, max_grad_norm=1.0))
    prompts: str = ""  # a resolver name, or a .jsonl ({"prompt": str | messages}) / .txt file
    n_prompts: int = bounded(512, ge=1)  # size of a generated prompt pool
    reward: str = ""  # a resolver name (gold reward) or the folder of a learned reward model
    generation: SamplingSettings = field(default_factory=SamplingSettings)
    ppo: PPOSettings = field(default_factory=PPOSettings)
    elastic_reset: ElasticResetSettings = field(default_factory=ElasticResetSettings)
    eval: DriftEvalSettings = field(default_factory=DriftEvalSettings)
    output_dir: str = ""

    def check(self, where: str) -> None:
        """A rollout batch splits into whole minibatches of train.batch_size x train.grad_accum."""
        mb = self.train.batch_size * self.train.grad_accum
        if self.ppo.rollout_batch % mb:
            raise ConfigError(f"{where}.ppo.rollout_batch: must be a multiple of train.batch_size x "
                              f"train.grad_accum ({mb}), got {self.ppo.rollout_batch}")


def validate(cfg: PPOConfig) -> int:
    """The checks loading cannot make (a reward is required; ranges again for a config built in
    code); returns optimiser steps per iteration."""
    recheck(cfg)
    if not cfg.reward:
        raise ConfigError("reward: give a reward (a resolver name such as gold:sentiment, or a reward-model folder)")
    p, t = cfg.ppo, cfg.train
    return p.epochs * (p.rollout_batch // (t.batch_size * t.grad_accum))


def load_prompts(cfg: PPOConfig, tokenizer) -> tuple[list[str], list[str]]:
    """(training prompts, held-out evaluation prompts) as text; chat prompts through the template
    (a DataError naming `prompts` when the model has none)."""
    from alignlab import resolve
    from alignlab.data.chat import check_chat_template, format_query

    train, held = resolve.prompt_split(cfg.prompts, cfg.n_prompts, cfg.eval.n_prompts, cfg.train.seed, "prompts")
    check_chat_template(tokenizer, [*train, *held], cfg.prompts)
    return [format_query(tokenizer, p) for p in train], [format_query(tokenizer, p) for p in held]


def ppo_loss(model: torch.nn.Module, mb: dict[str, Any], cfg: PPOConfig) -> tuple[torch.Tensor, dict[str, Any]]:
    """Clipped policy loss + vf_coef · clipped value loss − entropy_coef · entropy."""
    packed = mb["packed"]
    logp, values, entropy = model(packed, cfg.generation.temperature, cfg.ppo.entropy_coef > 0)
    return ppo_loss_terms(logp, values, entropy, packed.response_mask, mb, cfg)


def can_fuse_scoring(cfg: PPOConfig, model: torch.nn.Module) -> bool:
    """True when the update's first forward sees exactly π_old: one epoch, one minibatch holding
    the whole rollout, no accumulation, and no dropout (eval- and train-mode forwards agree)."""
    import torch

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
    from alignlab.rl.rollout import finish_rollout

    p = cfg.ppo
    logp, values, entropy = model(rollout.packed, cfg.generation.temperature, p.entropy_coef > 0, rollout.rows)
    rollout.logprobs, rollout.values = logp.detach(), values.detach()
    stats_out.update(finish_rollout(rollout, processed, kl_coef, p.kl_estimator, p.gamma, p.lam,
                                    p.whiten_advantages))
    mb = {"old_logprobs": rollout.logprobs, "old_values": rollout.values,
          "advantages": rollout.advantages, "returns": rollout.returns}
    return ppo_loss_terms(logp, values, entropy, rollout.mask, mb, cfg)


def ppo_loss_terms(logp: torch.Tensor, values: torch.Tensor, entropy: torch.Tensor, mask: torch.Tensor,
                   mb: dict[str, Any], cfg: PPOConfig) -> tuple[torch.Tensor, dict[str, Any]]:
    """The PPO objective from this forward's log-probs, values and entropies and the batch's old values."""
    from alignlab.losses.rl import clipped_policy_loss, clipped_value_loss, masked_mean

    p = cfg.ppo
    pg, pstats = clipped_policy_loss(logp, mb["old_logprobs"], mb["advantages"], mask, p.clip)
    vf, vstats = clipped_value_loss(values, mb["old_values"], mb["returns"], mask, p.value_clip)
    loss = pg + p.vf_coef * vf
    mean_entropy = masked_mean(entropy, mask)
    if p.entropy_coef > 0:
        loss = loss - p.entropy_coef * mean_entropy
    return loss, {"pg_loss": pg.detach(), "vf_loss": vf.detach(), "entropy": mean_entropy.detach(), **pstats, **vstats}


@dataclass
class FusedRollout:
    """A rollout whose one minibatch is all of it, in its own row order (fused scoring)."""

    rollout: Rollout
    processed: torch.Tensor

    def __len__(self) -> int:
        return len(self.rollout)

    def minibatch(self, rows: torch.Tensor) -> dict[str, Any]:
        return {"rollout": self.rollout, "processed": self.processed}


def evaluate_drift(policy_lm: torch.nn.Module, initial: torch.nn.Module, tokenizer, prompts: list[str],
                   reward_fn: RewardFn, ref_texts: list[str], max_new_tokens: int, batch_size: int,
                   seed: int, gold: RewardFn | None = None) -> dict[str, float]:
    """Reward and drift of the current policy: eval_reward, eval_kl (k1), eval_kl_k3, eval_ppl."""
    from alignlab.eval.drift import perplexity, sampled_kl
    from alignlab.rl.rewards import check_finite_rewards
    from alignlab.train.loop import device_generator

    g = device_generator(seed, next(policy_lm.parameters()).device)
    skl = sampled_kl(policy_lm, initial, tokenizer, prompts, max_new_tokens, batch_size, g)
    scores = check_finite_rewards(list(reward_fn(prompts, skl.texts)), prompts, skl.texts, " (evaluation)")
    out = {"eval_reward": float(scores.mean()), "eval_kl": skl.kl, "eval_kl_k3": float(skl.kl_k3.mean())}
    if ref_texts:
        out["eval_ppl"] = perplexity(policy_lm, tokenizer, ref_texts, batch_size)
    if gold is not None:
        out["eval_gold_reward"] = sum(gold(prompts, skl.texts)) / len(prompts)
    return out


def _frozen_copy(model: torch.nn.Module) -> torch.nn.Module:
    return copy.deepcopy(model).eval().requires_grad_(False)


def run(cfg: PPOConfig) -> RunResult:
    """Train cfg.model with PPO on cfg.prompts against cfg.reward; returns run dir + final numbers."""

    from alignlab import resolve
    from alignlab.generation import sample
    from alignlab.losses.rl import make_kl_controller
    from alignlab.models import load_model
    from alignlab.rl.elastic_reset import ElasticReset, ElasticResetCallback
    from alignlab.rl.policy import PolicyWithValue
    from alignlab.rl.rewards import RewardProcessor
    from alignlab.rl.rollout import collect_rollout, finish_rollout
    from alignlab.train.loop import Trainer, mean_metrics, seed_everything

    steps_per_iter = validate(cfg)
    p, g, er_cfg = cfg.ppo, cfg.generation, cfg.elastic_reset
    seed_everything(cfg.train.seed)
    run_dir = RunDir(cfg.output_dir or default_run_dir("ppo"))
    lm, tok = load_model(cfg.model)
    initial = _frozen_copy(lm)  # θ0: drift is always measured against it
    ema_anchor = er_cfg.enabled and er_cfg.kl_anchor == "ema"
    anchor = _frozen_copy(lm) if ema_anchor else initial
    policy = PolicyWithValue(lm)
    reward_fn = resolve.reward_fn(cfg.reward)
    gold = resolve.gold_measure(cfg.prompts, cfg.reward)
    train_prompts, eval_prompts = load_prompts(cfg, tok)
    ref_texts = resolve.reference_texts(cfg.eval.reference_text, cfg.eval.n_reference)
    kl_ctl = make_kl_controller(p.kl_coef, p.kl_target, p.kl_horizon)
    reward_proc = RewardProcessor(p.reward_norm, p.reward_clip)
    trainer = Trainer(policy, cfg.train, run_dir, total_steps=p.iterations * steps_per_iter,
                      extra_state={"kl_controller": kl_ctl, "reward_norm": reward_proc},
                      save_fn=lambda m, out, state_dict=None: m.save(out, state_dict))
    callbacks = []
    elastic = None
    if er_cfg.enabled:
        elastic = ElasticReset([(n, q) for n, q in trainer.unwrapped.named_parameters() if q.requires_grad], er_cfg)
        trainer.extra_state["elastic_reset"] = elastic
        callbacks.append(ElasticResetCallback(elastic))
    sample_fn = sample
    if g.backend == "vllm":  # a colocated engine, given the weights after every iteration (after resets)
        from alignlab.vllm_backend import VLLMSampler, VLLMSync

        longest = max(len(tok(t, add_special_tokens=False)["input_ids"]) for t in train_prompts)
        sample_fn = VLLMSampler(trainer.unwrapped, tok, max_model_len=longest + g.max_new_tokens,
                                seed=cfg.train.seed * 1000 + trainer.rank, rank=trainer.rank, world=trainer.world,
                                local_rank=trainer.accelerator.local_process_index)
        callbacks.append(VLLMSync(sample_fn))
    run_dir.save_config(cfg)
    initial.to(trainer.device)
    anchor.to(trainer.device)
    fused = can_fuse_scoring(cfg, policy)
    stats: dict[str, float] = {}  # this iteration's rollout statistics (filled by collect or the fused loss)

    def collect(it: int) -> Rollout | FusedRollout:
        prompts = [train_prompts[i] for i in trainer.rng.draw(len(train_prompts), p.rollout_batch)]
        if ema_anchor:
            anchor.load_state_dict(elastic.ema_state("lm."), strict=False)
        rollout = collect_rollout(trainer.unwrapped, anchor, tok, prompts, reward_fn, g.max_new_tokens,
                                  g.temperature, g.top_p, g.batch_size,
                                  trainer.rng.sampling_generator(trainer.rank, trainer.device),
                                  where=f" at iteration {it}", score_policy=not fused, backend=g.backend,
                                  sample_fn=sample_fn)
        processed = reward_proc(rollout.scores).to(trainer.device)
        stats.clear()
        if fused:
            return FusedRollout(rollout, processed)
        stats.update(finish_rollout(rollout, processed, kl_ctl.value, p.kl_estimator, p.gamma, p.lam,
                                    p.whiten_advantages))
        return rollout

    def loss_fn(model: torch.nn.Module, mb: dict[str, Any]) -> tuple[torch.Tensor, dict[str, Any]]:
        if "rollout" in mb:
            return fused_ppo_loss(model, mb["rollout"], mb["processed"], kl_ctl.value, cfg, stats)
        return ppo_loss(model, mb, cfg)

    def finish(it: int, buffer: Rollout | FusedRollout, window: list[dict[str, float]]) -> dict[str, Any]:
        rollout = buffer.rollout if isinstance(buffer, FusedRollout) else buffer
        rec: dict[str, Any] = trainer.mean_over_processes(dict(stats))
        rec["kl_coef"] = kl_ctl.value
        kl_ctl.update(rec["kl"], len(rollout) * trainer.world)
        rec.update(mean_metrics(window))
        rec.update({f"time_{k}": round(v, 4) for k, v in rollout.timings.items()})
        if elastic is not None:
            rec["resets"] = elastic.resets
        return rec

    def measure(it: int) -> dict[str, float]:
        return evaluate_drift(trainer.unwrapped.lm, initial, tok, eval_prompts, reward_fn, ref_texts,
                              g.max_new_tokens, g.batch_size, cfg.train.seed * 100_003 + it, gold)

    every = cfg.eval.every
    trainer.fit_online(collect, loss_fn, p.iterations, 1 if fused else p.epochs, finish,
                       start=(lambda: measure(0)) if every > 0 else None,
                                 evaluate=measure if every > 0 else None, eval_every=every,
                                 callbacks=callbacks, desc="ppo", show={"reward": "reward", "kl": "kl"})
    final = trainer.save_final(tok)
    records = run_dir.metrics()
    if trainer.is_main:
        write_ppo_report(run_dir, records, cfg)
    evals = [r for r in records if "eval_reward" in r]
    iters = [r for r in records if "reward" in r and "iteration" in r]
    metrics: dict[str, Any] = {k: evals[-1][k] for k in ("eval_reward", "eval_gold_reward", "eval_kl", "eval_ppl")
                               if evals and k in evals[-1]}
    metrics.update({"iterations": p.iterations, "resets": elastic.resets if elastic else 0,
                    "reward": iters[-1]["reward"] if iters else None})
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


def iteration_rows(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The evaluation points (reward vs drift) for the summary table."""
    keys = ("iteration", "eval_reward", "eval_gold_reward", "eval_kl", "eval_ppl")
    return [{k: r[k] for k in keys if k in r} for r in records if "eval_reward" in r]


def register(sub: argparse._SubParsersAction) -> None:
    register_recipe(sub, "ppo", "RLHF with PPO + KL penalty (optionally Elastic Reset); reward-vs-drift report",
                    PPOConfig, run, iteration_rows, "PPO evaluations (reward vs drift)", title="PPO")
