"""PSLE recipe (SPEC §6): progressively selective label enhancement, `alignlab psle`.

Each iteration: for every query x sample y ~ π(·|x) and y_p ~ π(·|principle ⊕ x), score both
on the *plain* query, Δ = R(x, y_p) − R(x, y). Δ > τ makes (y_p ≻ y) a ranking pair; else both
go into reward-weighted SFT (weights softmax(r / T), see `alignlab.losses.psle`). The policy
is updated on ranking + λ·SFT with the shared `Trainer.step`, then τ ← α·τ. Training targets
are always the plain query: the principle is used only to generate. Every generated sample is
kept in RUN/samples/iteration-NNNN.jsonl with its reward, Δ and bucket.

`train.log_every` is unused (one record per iteration); `train.save_every` counts iterations;
`train.epochs`/`train.max_steps` are unused (`iterations` and `epochs` set the length).
"""

from __future__ import annotations

import argparse
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from alignlab.config import ModelSettings, TrainSettings
from alignlab.data.chat import Messages, read_prompts
from alignlab.errors import ConfigError, DataError, TrainingError
from alignlab.generation import sample
from alignlab.logprobs import sequence_logps
from alignlab.losses.psle import (
    RANKING_LOSSES,
    psle_loss,
    sft_weights,
    split_by_threshold,
    threshold_schedule,
)
from alignlab.models import load_model
from alignlab.recipe import (
    RunResult,
    add_recipe_args,
    config_from_args,
    default_run_dir,
    print_run_summary,
)
from alignlab.rl.rewards import RewardFn, check_finite_rewards, load_reward_fn
from alignlab.rl.rollout import anchor_logprobs
from alignlab.rl.scoring import Packed, pack, response_logprobs
from alignlab.runs import RunDir
from alignlab.train.loop import Trainer, seed_everything
from alignlab.train.ppo import GenerationSettings, RolloutRNG, mean_over_processes

TESTBED_QUERIES = ("testbed", "testbed:reviews")
# A positive in-domain demonstration; the testbed base models were measured to ignore text
# before "review :" (cross-document context), so on the testbed y_p ≈ another sample of π.
TESTBED_PRINCIPLE = "review : the staff was great and friendly . the room was lovely . i would come back .<|end|>"
Query = str | Messages


@dataclass
class PSLEConfig:
    """PSLE: self-labelled ranking pairs and reward-weighted SFT from principle-guided samples."""

    model: ModelSettings = field(default_factory=ModelSettings)
    train: TrainSettings = field(default_factory=lambda: TrainSettings(
        lr=3e-4, batch_size=16, grad_accum=1, save_every=5, max_grad_norm=1.0))
    principle: str = TESTBED_PRINCIPLE  # text prompts: prefixed to x; chat prompts: a system message
    queries: str = "testbed"  # testbed (review prompts) | .jsonl ({"prompt": str | messages}) | .txt
    n_queries: int = 512  # size of the testbed query pool
    eval_queries: int = 64  # held-out queries: gold/RM reward of plain-query samples before vs after
    eval_every: int = 0  # also measure every n iterations (0: before and after only)
    reward: str = "gold"  # gold (testbed sentiment) | folder of a learned reward model
    iterations: int = 20
    queries_per_iteration: int = 64
    epochs: int = 2  # passes over an iteration's queries; steps = epochs × queries / (batch × accum)
    tau0: float = 0.2
    alpha: float = 0.9
    ranking: str = "simpo"  # simpo (reference-free, mean-token) | dpo (reference = the sampling policy)
    beta: float = 2.0
    margin: float = 0.0  # γ of the simpo ranking loss
    sft_weight: float = 1.0  # λ
    sft_temperature: float = 0.1  # T of the SFT weights softmax(r / T)
    generation: GenerationSettings = field(default_factory=lambda: GenerationSettings(max_new_tokens=16))
    output_dir: str = ""


def validate(cfg: PSLEConfig) -> int:
    """Check the config; returns optimiser steps per iteration."""
    mb = cfg.train.batch_size * cfg.train.grad_accum
    if min(cfg.iterations, cfg.queries_per_iteration, cfg.epochs, cfg.eval_queries) < 1:
        raise ConfigError("iterations, queries_per_iteration, epochs and eval_queries must be >= 1")
    if cfg.queries_per_iteration % mb:
        raise ConfigError(f"queries_per_iteration ({cfg.queries_per_iteration}) must be a multiple of "
                          f"train.batch_size x train.grad_accum ({mb})")
    if not 0 < cfg.alpha <= 1:
        raise ConfigError(f"alpha must be in (0, 1], got {cfg.alpha}")
    if cfg.ranking not in RANKING_LOSSES:
        raise ConfigError(f"ranking: '{cfg.ranking}' is not one of {list(RANKING_LOSSES)}")
    if cfg.beta <= 0 or cfg.sft_temperature <= 0 or cfg.sft_weight < 0:
        raise ConfigError("beta and sft_temperature must be > 0, sft_weight >= 0")
    if cfg.generation.max_new_tokens < 1 or cfg.eval_every < 0:
        raise ConfigError("generation.max_new_tokens must be >= 1 and eval_every >= 0")
    return cfg.epochs * (cfg.queries_per_iteration // mb)


# --- queries and prompts ------------------------------------------------------------------


def load_queries(cfg: PSLEConfig) -> tuple[list[Query], list[Query]]:
    """(training queries, held-out queries); a file's last `eval_queries` rows are held out."""
    if cfg.queries in TESTBED_QUERIES:
        from alignlab.testbed.world import World

        world = World()  # held-out prompts from another seed, as the PPO recipe does
        return world.review_prompts(cfg.n_queries, seed=cfg.train.seed), world.review_prompts(cfg.eval_queries, seed=10_007)
    path = Path(cfg.queries)
    rows = read_prompts(path, "queries", "testbed")
    if len(rows) <= cfg.eval_queries:
        raise DataError(f"{path}: {len(rows)} queries; need more than eval_queries={cfg.eval_queries} "
                        "(the last eval_queries rows are held out)")
    return rows[: -cfg.eval_queries], rows[-cfg.eval_queries:]


def plain_prompt(tokenizer, query: Query) -> str:
    """The query as the model sees it: a text prompt as is, chat messages through the template."""
    if isinstance(query, str):
        return query
    return tokenizer.apply_chat_template(query, tokenize=False, add_generation_prompt=True)


def principle_prompt(tokenizer, query: Query, principle: str) -> str:
    """principle ⊕ x: the principle before a text prompt, or as (the head of) the system message."""
    if isinstance(query, str):
        return principle + query
    msgs = [dict(m) for m in query]
    if msgs[0]["role"] == "system":
        msgs[0]["content"] = f"{principle}\n\n{msgs[0]['content']}"
    else:
        msgs.insert(0, {"role": "system", "content": principle})
    return plain_prompt(tokenizer, msgs)


# --- one iteration's labelled data ----------------------------------------------------------


@dataclass
class Labelled:
    """One iteration's queries: (y_p, y) on the plain query at rows 2i, 2i+1, rewards and buckets."""

    prompts: list[str]  # plain x (the training prompt)
    packed: Packed  # [2B] plain-x prompt ids + response ids
    texts: list[str]  # [2B] decoded responses, same row order
    rewards: torch.Tensor  # [B, 2] R(x, y_p), R(x, y)
    delta: torch.Tensor  # [B]
    pair_mask: torch.Tensor  # [B] Δ > τ
    weights: torch.Tensor  # [B, 2] SFT weights (used where not pair_mask)
    ref_logps: torch.Tensor | None = None  # [B, 2] summed log-probs under the sampling policy (dpo)

    def __len__(self) -> int:
        return len(self.prompts)

    def minibatch(self, queries: torch.Tensor) -> dict[str, Any]:
        """Both responses of `queries`, trimmed to their longest response."""
        rows = torch.stack([2 * queries, 2 * queries + 1], dim=1).flatten()
        out = {"packed": self.packed.select(rows), "pair_mask": self.pair_mask[queries],
               "weights": self.weights[queries]}
        if self.ref_logps is not None:
            out["ref_logps"] = self.ref_logps[queries]
        return out

    def sample_rows(self, iteration: int, tau: float, rank: int = 0) -> list[dict[str, Any]]:
        """Every generated sample as a JSON row: prompt, source, response, reward, Δ, bucket, weight."""
        rows = []
        for i, x in enumerate(self.prompts):
            pair = bool(self.pair_mask[i])
            for j, source in enumerate(("principle", "plain")):
                rows.append({"iteration": iteration, "rank": rank, "query": i, "prompt": x, "source": source,
                             "response": self.texts[2 * i + j], "reward": float(self.rewards[i, j]),
                             "delta": float(self.delta[i]), "tau": tau,
                             "bucket": ("chosen" if j == 0 else "rejected") if pair else "sft",
                             "sft_weight": None if pair else float(self.weights[i, j])})
        return rows


def label_queries(lm: torch.nn.Module, tokenizer, queries: list[Query], cfg: PSLEConfig, reward_fn: RewardFn,
                  tau: float, generator: torch.Generator, where: str = "") -> tuple[Labelled, float]:
    """Sample y and y_p per query, reward both on the plain query and split by τ; (data, seconds)."""
    g = cfg.generation
    t0 = time.perf_counter()
    plain = [plain_prompt(tokenizer, q) for q in queries]
    guided = [principle_prompt(tokenizer, q, cfg.principle) for q in queries]
    s = sample(lm, tokenizer, plain + guided, max_new_tokens=g.max_new_tokens, temperature=g.temperature,
               top_p=g.top_p, batch_size=g.batch_size, generator=generator)
    n = len(queries)
    y, yp = s.texts[:n], s.texts[n:]
    scores = check_finite_rewards(list(reward_fn(plain + plain, y + yp)), plain + plain, y + yp, where)
    rewards = torch.stack([scores[n:], scores[:n]], dim=1)  # (y_p, y)
    delta = rewards[:, 0] - rewards[:, 1]
    pair_mask, _ = split_by_threshold(delta, tau)
    x_ids = s.prompt_ids[:n]  # training prompts: the plain query's tokens, never the principle's
    resp = [r for i in range(n) for r in (s.response_ids[n + i], s.response_ids[i])]
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    device = next(lm.parameters()).device
    packed = pack([x_ids[i // 2] for i in range(2 * n)], resp, pad).to(device)
    texts = [t for i in range(n) for t in (yp[i], y[i])]
    data = Labelled(plain, packed, texts, rewards, delta, pair_mask,
                    sft_weights(rewards[:, 0], rewards[:, 1], cfg.sft_temperature))
    if cfg.ranking == "dpo":
        tok_lp = anchor_logprobs(lm, packed, 1.0, g.batch_size)
        data.ref_logps = sequence_logps(tok_lp, packed.response_mask, average=False).view(n, 2).cpu()
    return data, time.perf_counter() - t0


def make_loss_fn(cfg: PSLEConfig):
    """loss_fn(model, minibatch) for `Trainer.step`: `psle_loss` plus sums for exact iteration means."""

    def loss_fn(model: torch.nn.Module, mb: dict[str, Any]) -> tuple[torch.Tensor, dict[str, Any]]:
        packed = mb["packed"]
        b = len(packed) // 2
        lp = response_logprobs(model, packed).view(b, 2, -1)
        ref = mb.get("ref_logps")
        loss, parts = psle_loss(lp, packed.response_mask.view(b, 2, -1), mb["pair_mask"].to(lp.device),
                                mb["weights"].to(lp.device), cfg.beta, cfg.sft_weight, cfg.ranking, cfg.margin,
                                ref.to(lp.device) if ref is not None else None)
        return loss, {"ranking_sum": parts["ranking"].sum(), "pair_correct": parts["pair_accuracy"].sum(),
                      "n_pairs": parts["n_pairs"], "sft_sum": parts["sft_loss"] * parts["n_sft"],
                      "n_sft": parts["n_sft"]}

    return loss_fn


def iteration_losses(window: list[dict[str, float]]) -> dict[str, float]:
    """Iteration means from per-step sums: loss, ranking_loss and pair_accuracy (over pairs), sft_loss."""
    total = {k: sum(m[k] for m in window) for k in window[0]}
    out = {"loss": total["loss"] / len(window), "grad_norm": total.get("grad_norm", 0.0) / len(window)}
    if total["n_pairs"] > 0:
        out["ranking_loss"] = total["ranking_sum"] / total["n_pairs"]
        out["pair_accuracy"] = total["pair_correct"] / total["n_pairs"]
    if total["n_sft"] > 0:
        out["sft_loss"] = total["sft_sum"] / total["n_sft"]
    return out


@torch.no_grad()
def evaluate_reward(lm: torch.nn.Module, tokenizer, queries: list[Query], reward_fn: RewardFn,
                    cfg: PSLEConfig, gold: RewardFn | None) -> dict[str, float]:
    """Mean reward (and gold reward) of plain-query samples on held-out queries, fixed sampling seed."""
    g = cfg.generation
    prompts = [plain_prompt(tokenizer, q) for q in queries]
    s = sample(lm, tokenizer, prompts, max_new_tokens=g.max_new_tokens, temperature=g.temperature,
               top_p=g.top_p, batch_size=g.batch_size, generator=torch.Generator().manual_seed(cfg.train.seed + 7))
    scores = check_finite_rewards(list(reward_fn(prompts, s.texts)), prompts, s.texts, " (evaluation)")
    out = {"eval_reward": float(scores.mean())}
    if gold is not None:
        out["eval_gold_reward"] = sum(gold(prompts, s.texts)) / len(prompts)
    return out


def write_samples(run_dir: RunDir, trainer: Trainer, rows: list[dict[str, Any]], iteration: int) -> None:
    """RUN/samples/iteration-NNNN.jsonl with every process's samples (atomic; rewritten on resume)."""
    if trainer.world > 1:
        from accelerate.utils import gather_object

        rows = gather_object(rows)
    run_dir.write_jsonl(f"samples/iteration-{iteration:04d}.jsonl", rows)


# --- the recipe -----------------------------------------------------------------------------


def run(cfg: PSLEConfig) -> RunResult:
    """Train cfg.model with PSLE; returns the run dir and held-out reward before/after."""
    steps_per_iter = validate(cfg)
    seed_everything(cfg.train.seed)
    run_dir = RunDir(cfg.output_dir or default_run_dir("psle"))
    lm, tok = load_model(cfg.model)
    reward_fn = load_reward_fn(cfg.reward)
    is_gold = cfg.reward in ("gold", "gold:sentiment")
    gold = load_reward_fn("gold") if cfg.queries in TESTBED_QUERIES and not is_gold else None
    train_q, held_q = load_queries(cfg)
    rng = RolloutRNG(cfg.train.seed)
    trainer = Trainer(lm, cfg.train, run_dir, total_steps=cfg.iterations * steps_per_iter,
                      extra_state={"rollout_rng": rng})
    run_dir.save_config(cfg)
    if not trainer.resume():
        run_dir.truncate_metrics(-1)  # a run that died before its first checkpoint starts over
    start = trainer.step_count // steps_per_iter
    policy = trainer.unwrapped

    def measure() -> dict[str, float]:
        return evaluate_reward(policy, tok, held_q, reward_fn, cfg, gold)

    if start == 0:
        trainer.run.log({"step": 0, "iteration": 0, **measure()})
    from alignlab.progress import progress_bar

    loss_fn = make_loss_fn(cfg)
    mb = cfg.train.batch_size * cfg.train.grad_accum
    t_start = time.perf_counter()
    with progress_bar("psle", total=cfg.iterations, completed=start,
                      enabled=cfg.train.progress and trainer.is_main) as bar:
        for it in range(start + 1, cfg.iterations + 1):
            tau = threshold_schedule(cfg.tau0, cfg.alpha, it - 1)
            queries = [train_q[i] for i in rng.draw(len(train_q), cfg.queries_per_iteration)]
            try:
                data, t_gen = label_queries(policy, tok, queries, cfg, reward_fn, tau,
                                            rng.sampling_generator(trainer.rank), where=f" at iteration {it}")
            except TrainingError as e:
                raise TrainingError(f"{e}. Last good checkpoint: {trainer.last_checkpoint or 'none yet'}") from e
            write_samples(run_dir, trainer, data.sample_rows(it, tau, trainer.rank), it)
            t0 = time.perf_counter()
            window = []
            for _epoch in range(cfg.epochs):
                perm = torch.randperm(len(data), generator=rng.shuffle)
                for k in range(len(data) // mb):
                    rows = perm[k * mb:(k + 1) * mb]
                    micro = [data.minibatch(rows[j * cfg.train.batch_size:(j + 1) * cfg.train.batch_size])
                             for j in range(cfg.train.grad_accum)]
                    window.append(trainer.step(loss_fn, micro))
            n_pairs = int(data.pair_mask.sum())
            stats = mean_over_processes(trainer, {
                "n_pairs": float(n_pairs), "n_sft": float(len(data) - n_pairs), "mean_delta": float(data.delta.mean()),
                "reward_plain": float(data.rewards[:, 1].mean()), "reward_principle": float(data.rewards[:, 0].mean())})
            rec: dict[str, Any] = {"step": trainer.step_count, "iteration": it, "tau": tau, **stats,
                                   **iteration_losses(window), "time_generate": round(t_gen, 4),
                                   "time_update": round(time.perf_counter() - t0, 4)}
            if it == cfg.iterations or (cfg.eval_every > 0 and it % cfg.eval_every == 0):
                rec.update(measure())
            trainer.run.log(rec)
            bar.advance(tau=tau, pairs=stats["n_pairs"], reward=stats["reward_plain"])
            if cfg.train.save_every > 0 and it % cfg.train.save_every == 0:
                trainer.save_checkpoint()
    final = trainer.save_final(tok)
    records = run_dir.metrics()
    if trainer.is_main:
        write_psle_report(run_dir, records, cfg)
    return RunResult(run_dir.path, summarize(records, run_dir, time.perf_counter() - t_start), final)


def iteration_rows(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One compact row per iteration for the summary table and report."""
    names = {"iteration": "it", "tau": "tau", "n_pairs": "pairs", "n_sft": "sft", "mean_delta": "mean Δ",
             "reward_plain": "R(y)", "reward_principle": "R(y_p)", "loss": "loss", "ranking_loss": "rank",
             "sft_loss": "sft loss", "eval_reward": "eval R"}
    return [{v: r[k] for k, v in names.items() if k in r} for r in records if "tau" in r]


def summarize(records: list[dict[str, Any]], run_dir: RunDir, seconds: float) -> dict[str, Any]:
    """Headline numbers: held-out reward before → after, pairs vs SFT items, samples kept on disk."""
    evals = [r for r in records if "eval_reward" in r]
    its = [r for r in records if "tau" in r]
    files = sorted((run_dir.path / "samples").glob("iteration-*.jsonl"))
    out: dict[str, Any] = {"iterations": len(its), "pairs": int(sum(r["n_pairs"] for r in its)),
                           "sft_items": int(sum(r["n_sft"] for r in its)),
                           "samples_kept": sum(len(f.read_text().splitlines()) for f in files),
                           "final_tau": its[-1]["tau"] if its else None, "seconds": round(seconds, 2)}
    for key in ("eval_reward", "eval_gold_reward"):
        if evals and key in evals[0]:
            out[f"{key}_before"], out[f"{key}_after"] = evals[0][key], evals[-1][key]
    return out


def write_psle_report(run_dir: RunDir, records: list[dict[str, Any]], cfg: PSLEConfig) -> None:
    """report.html: reward of y and y_p and the loss per step, plus the per-iteration table."""
    from alignlab.report import write_report

    notes = [f"principle: {cfg.principle!r}", f"tau0={cfg.tau0} alpha={cfg.alpha} ranking={cfg.ranking} "
             f"beta={cfg.beta} sft_weight={cfg.sft_weight} sft_temperature={cfg.sft_temperature}"]
    write_report(run_dir.path, title="PSLE", notes=notes, tables={"Iterations": iteration_rows(records)},
                 curve_keys=("reward_plain", "reward_principle", "loss"))


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("psle", help="PSLE: principle-guided self-labelling (ranking pairs + reward-weighted SFT)")
    add_recipe_args(p)

    def handler(args: argparse.Namespace) -> int:
        print_run_summary("PSLE", run(config_from_args(PSLEConfig, args)), "PSLE iterations", iteration_rows)
        return 0

    p.set_defaults(func=handler)
