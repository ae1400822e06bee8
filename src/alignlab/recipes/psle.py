"""PSLE recipe (SPEC §6): progressively selective label enhancement, `alignlab psle`.

Each iteration (`collect`): for every drawn query x sample y ~ π(·|x) and y_p ~ π(·|principle ⊕ x),
score both on the *plain* query, Δ = R(x, y_p) − R(x, y). Δ > τ makes (y_p ≻ y) a ranking pair;
else both go into reward-weighted SFT (weights softmax(r / T), see `alignlab.losses.psle`). The
trainer's online loop (`Trainer.fit_online`) updates the policy on ranking + λ·SFT, then
τ ← α·τ. Training targets are always the plain query: the principle is used only to generate.
Every generated sample is kept in RUN/samples/iteration-NNNN.jsonl with its reward, Δ and bucket.

`train.log_every` is unused (one record per iteration); `train.save_every` counts iterations;
`train.epochs`/`train.max_steps` are unused (`iterations` and `epochs` set the length).
"""

from __future__ import annotations

import argparse
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from alignlab.config import ModelSettings, TrainSettings, bounded, recheck
from alignlab.errors import ConfigError
from alignlab.lazy import lazy_names, no_grad
from alignlab.method_settings import RankingLoss, SamplingSettings
from alignlab.recipe import RunResult, default_run_dir, register_recipe
from alignlab.runs import RunDir

if TYPE_CHECKING:
    import torch

    from alignlab.rl.rewards import RewardFn
    from alignlab.scoring import Packed, PairLogps
    from alignlab.train.loop import Trainer

# torch-side names read as attributes of this module (tests patch them), imported on first use
_lazy = __getattr__ = lazy_names(globals(), {
    "Trainer": "alignlab.train.loop:Trainer",
    "load_model": "alignlab.models:load_model",
    "resolve": "alignlab.resolve",
    "sample": "alignlab.generation:sample",
})

Query = str | list[dict[str, str]]  # text, or chat messages (alignlab.data.chat.Messages)


@dataclass
class PSLEConfig:
    """PSLE: self-labelled ranking pairs and reward-weighted SFT from principle-guided samples."""

    model: ModelSettings = field(default_factory=ModelSettings)
    train: TrainSettings = field(default_factory=lambda: TrainSettings(
        lr=3e-4, batch_size=16, grad_accum=1, save_every=5, max_grad_norm=1.0))
    principle: str = ""  # required; a built-in principle name (alignlab.resolve.principle) or literal text; before a text prompt / the system message
    queries: str = ""  # required; a resolver name or a .jsonl ({"prompt": str | messages}) / .txt file
    n_queries: int = bounded(512, ge=1)  # size of a generated query pool (a file's rows are all used)
    eval_queries: int = bounded(64, ge=1)  # held-out queries: reward of plain-query samples before vs after
    eval_every: int = bounded(0, ge=0)  # also measure every n iterations (0: before and after only)
    reward: str = ""  # required; a resolver name (gold reward) or the folder of a learned reward model
    iterations: int = bounded(20, ge=1)
    queries_per_iteration: int = bounded(64, ge=1)
    epochs: int = bounded(2, ge=1)  # passes over an iteration's queries; steps = epochs × queries / (batch × accum)
    tau0: float = bounded(0.2, ge=0)
    alpha: float = bounded(0.9, gt=0, le=1)
    ranking: RankingLoss = "simpo"  # simpo: reference-free, mean-token | dpo: reference = the sampling policy
    beta: float = bounded(2.0, gt=0)
    margin: float = 0.0  # γ of the simpo ranking loss
    sft_weight: float = bounded(1.0, ge=0)  # λ
    sft_temperature: float = bounded(0.1, gt=0)  # T of the SFT weights softmax(r / T)
    generation: SamplingSettings = field(default_factory=lambda: SamplingSettings(max_new_tokens=16))
    output_dir: str = ""

    def check(self, where: str) -> None:
        """An iteration's queries split into whole minibatches of train.batch_size x train.grad_accum."""
        mb = self.train.batch_size * self.train.grad_accum
        if self.queries_per_iteration % mb:
            raise ConfigError(f"{where}.queries_per_iteration: must be a multiple of train.batch_size x "
                              f"train.grad_accum ({mb}), got {self.queries_per_iteration}")


def validate(cfg: PSLEConfig) -> int:
    """The checks loading cannot make (principle, queries and reward are required; ranges again
    for a config built in code); returns optimiser steps per iteration."""
    recheck(cfg)
    if not cfg.principle:
        raise ConfigError("principle: give the text that guides the y_p samples (an instruction or a "
                          "demonstration; see examples/psle.yaml)")
    _lazy("resolve").principle(cfg.principle)  # an unknown built-in name fails here, before any model loads
    if not cfg.queries:
        raise ConfigError("queries: give the queries (a prompts name of alignlab.resolve, or a .jsonl / .txt file)")
    if not cfg.reward:
        raise ConfigError("reward: give a reward (a resolver name such as gold:sentiment, or a reward-model folder)")
    return cfg.epochs * (cfg.queries_per_iteration // (cfg.train.batch_size * cfg.train.grad_accum))


# --- queries and prompts ------------------------------------------------------------------


def load_queries(cfg: PSLEConfig) -> tuple[list[Query], list[Query]]:
    """(training queries, held-out queries), through the name resolver."""
    from alignlab import resolve

    return resolve.prompt_split(cfg.queries, cfg.n_queries, cfg.eval_queries, cfg.train.seed, "queries")


def plain_prompt(tokenizer, query: Query) -> str:
    """The query as the model sees it: a text prompt as is, chat messages through the template."""
    from alignlab.data.chat import format_query

    return format_query(tokenizer, query)


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
class PSLEBatch:
    """One micro-batch: its queries' y_p rows then y rows (`pack_pairs`), buckets, SFT weights."""

    packed: Packed  # [2b] plain-x prompt ids + response ids
    pair_mask: torch.Tensor  # [b] Δ > τ
    weights: torch.Tensor  # [b, 2] SFT weights of (y_p, y)
    ref_logps: PairLogps | None = None  # [b] summed log-probs under the sampling policy (dpo)


@dataclass
class PairTexts:
    """The decoded responses of each query: sampled with the principle (y_p) and without (y)."""

    principle: list[str]
    plain: list[str]


@dataclass
class Labelled:
    """One iteration's buffer: y_p and y of each query on the plain query, laid out by `pack_pairs`
    (all y_p rows, then all y rows, as chosen / rejected), with rewards, Δ, buckets and weights."""

    prompts: list[str]  # plain x (the training prompt)
    packed: Packed  # [2B] plain-x prompt ids + response ids
    texts: PairTexts  # decoded y_p and y
    rewards: torch.Tensor  # [B, 2] R(x, y_p), R(x, y)
    delta: torch.Tensor  # [B]
    tau: float
    pair_mask: torch.Tensor  # [B] Δ > τ
    weights: torch.Tensor  # [B, 2] SFT weights (used where not pair_mask)
    ref_logps: PairLogps | None = None  # [B] summed log-probs under the sampling policy (dpo)

    def __len__(self) -> int:
        return len(self.prompts)

    def minibatch(self, queries: torch.Tensor) -> PSLEBatch:
        """Both responses of `queries`, trimmed to their longest response."""
        from alignlab.scoring import PairLogps, pair_rows

        ref = self.ref_logps
        return PSLEBatch(self.packed.select(pair_rows(queries, len(self))), self.pair_mask[queries],
                         self.weights[queries],
                         None if ref is None else PairLogps(ref.chosen[queries], ref.rejected[queries]))

    def sample_rows(self, iteration: int, rank: int = 0) -> list[dict[str, Any]]:
        """Every generated sample as a JSON row: prompt, source, response, reward, Δ, bucket, weight."""
        rows = []
        for i, x in enumerate(self.prompts):
            pair = bool(self.pair_mask[i])
            both = (("principle", self.texts.principle[i]), ("plain", self.texts.plain[i]))
            for j, (source, text) in enumerate(both):
                rows.append({"iteration": iteration, "rank": rank, "query": i, "prompt": x, "source": source,
                             "response": text, "reward": float(self.rewards[i, j]),
                             "delta": float(self.delta[i]), "tau": self.tau,
                             "bucket": ("chosen" if j == 0 else "rejected") if pair else "sft",
                             "sft_weight": None if pair else float(self.weights[i, j])})
        return rows

    def stats(self) -> dict[str, float]:
        """This process's counts and mean rewards (y on the plain query, y_p with the principle)."""
        n_pairs = float(self.pair_mask.sum())
        return {"n_pairs": n_pairs, "n_sft": len(self) - n_pairs, "mean_delta": float(self.delta.mean()),
                "reward_plain": float(self.rewards[:, 1].mean()), "reward_principle": float(self.rewards[:, 0].mean())}


def label_queries(lm: torch.nn.Module, tokenizer, queries: list[Query], cfg: PSLEConfig, reward_fn: RewardFn,
                  tau: float, generator: torch.Generator, where: str = "") -> Labelled:
    """Sample y and y_p per query, reward both on the plain query and split by τ (buffer on CPU)."""
    import torch

    from alignlab.losses.psle import sft_weights, split_by_threshold
    from alignlab.rl.rewards import check_finite_rewards
    from alignlab.scoring import PairLogps, chunked_response_logprobs, pack_pairs, sequence_logps
    sample = _lazy("sample")

    g = cfg.generation
    plain = [plain_prompt(tokenizer, q) for q in queries]
    text = _lazy("resolve").principle(cfg.principle)
    guided = [principle_prompt(tokenizer, q, text) for q in queries]
    s = sample(lm, tokenizer, plain + guided, max_new_tokens=g.max_new_tokens, temperature=g.temperature,
               top_p=g.top_p, batch_size=g.batch_size, generator=generator, backend=g.backend)
    n = len(queries)
    y, yp = s.texts[:n], s.texts[n:]
    scores = check_finite_rewards(list(reward_fn(plain + plain, y + yp)), plain + plain, y + yp, where)
    rewards = torch.stack([scores[n:], scores[:n]], dim=1)  # (y_p, y)
    delta = rewards[:, 0] - rewards[:, 1]
    pair_mask, _ = split_by_threshold(delta, tau)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    # training prompts: the plain query's tokens, never the principle's; y_p is the chosen half
    packed = pack_pairs(s.prompt_ids[:n], s.response_ids[n:], s.response_ids[:n], pad)
    data = Labelled(plain, packed, PairTexts(yp, y), rewards, delta, tau, pair_mask,
                    sft_weights(rewards[:, 0], rewards[:, 1], cfg.sft_temperature))
    if cfg.ranking == "dpo":
        tok_lp = chunked_response_logprobs(lm, packed.to(next(lm.parameters()).device), 1.0, g.batch_size)
        data.ref_logps = PairLogps.from_halves(sequence_logps(tok_lp.cpu(), packed.response_mask))
    return data


def make_loss_fn(cfg: PSLEConfig):
    """loss_fn(model, batch) for `Trainer.step`: `psle_loss` plus sums for exact iteration means."""
    from alignlab.losses.psle import psle_loss
    from alignlab.scoring import pair_masks, pair_response_logprobs


    def loss_fn(model: torch.nn.Module, mb: PSLEBatch) -> tuple[torch.Tensor, dict[str, Any]]:
        lp = pair_response_logprobs(model, mb.packed)
        loss, parts = psle_loss(lp, pair_masks(mb.packed), mb.pair_mask, mb.weights, cfg.beta, cfg.sft_weight,
                                cfg.ranking, cfg.margin, mb.ref_logps)
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


@no_grad
def evaluate_reward(lm: torch.nn.Module, tokenizer, queries: list[Query], reward_fn: RewardFn,
                    cfg: PSLEConfig, gold: RewardFn | None) -> dict[str, float]:
    """Mean reward (and gold reward) of plain-query samples on held-out queries, fixed sampling seed."""
    from alignlab.rl.rewards import check_finite_rewards
    from alignlab.train.loop import device_generator
    sample = _lazy("sample")

    g = cfg.generation
    prompts = [plain_prompt(tokenizer, q) for q in queries]
    generator = device_generator(cfg.train.seed + 7, next(lm.parameters()).device)
    s = sample(lm, tokenizer, prompts, max_new_tokens=g.max_new_tokens, temperature=g.temperature,
               top_p=g.top_p, batch_size=g.batch_size, generator=generator, backend=g.backend)
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
    from alignlab import resolve
    from alignlab.data.chat import check_chat_template
    from alignlab.losses.psle import threshold_schedule
    from alignlab.models import load_model
    from alignlab.train.loop import seed_everything
    Trainer = _lazy("Trainer")

    steps_per_iter = validate(cfg)
    seed_everything(cfg.train.seed)
    run_dir = RunDir(cfg.output_dir or default_run_dir("psle"))
    lm, tok = load_model(cfg.model)
    reward_fn = resolve.reward_fn(cfg.reward)
    gold = resolve.gold_measure(cfg.queries, cfg.reward)
    train_q, held_q = load_queries(cfg)
    check_chat_template(tok, [*train_q, *held_q], cfg.queries)
    trainer = Trainer(lm, cfg.train, run_dir, total_steps=cfg.iterations * steps_per_iter)
    run_dir.save_config(cfg)
    policy = trainer.unwrapped
    t_start = time.perf_counter()

    def collect(it: int) -> Labelled:
        tau = threshold_schedule(cfg.tau0, cfg.alpha, it - 1)
        queries = [train_q[i] for i in trainer.rng.draw(len(train_q), cfg.queries_per_iteration)]
        data = label_queries(policy, tok, queries, cfg, reward_fn, tau,
                             trainer.rng.sampling_generator(trainer.rank, trainer.device),
                             where=f" at iteration {it}")
        write_samples(run_dir, trainer, data.sample_rows(it, trainer.rank), it)
        return data

    def finish(it: int, data: Labelled, window: list[dict[str, float]]) -> dict[str, Any]:
        return {"tau": data.tau, **trainer.mean_over_processes(data.stats()), **iteration_losses(window)}

    def measure(it: int = 0) -> dict[str, float]:
        return evaluate_reward(policy, tok, held_q, reward_fn, cfg, gold)

    trainer.fit_online(collect, make_loss_fn(cfg), cfg.iterations, cfg.epochs, finish, start=measure,
                       evaluate=measure, eval_every=cfg.eval_every, desc="psle",
                       show={"tau": "tau", "pairs": "n_pairs", "reward": "reward_plain"})
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
    register_recipe(sub, "psle", "PSLE: principle-guided self-labelling (ranking pairs + reward-weighted SFT)",
                    PSLEConfig, run, rows_fn=iteration_rows, rows_title="PSLE iterations", title="PSLE")
