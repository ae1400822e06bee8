"""AKD recipe (SPEC §7): adversarial knowledge distillation for code, `alignlab akd`.

A larger teacher and a smaller student. Each round:
1. *Propose.* Exercises are drawn from a skill pool (`alignlab.akd.proposer`): on the testbed,
   every code family × parameter of `alignlab.testbed.code` (the training split only), each draw
   with freshly written tests; for a HumanEval-format file, its problems as they are. Draws are
   adversarial: skills are bucketed by the student's current measured pass rate and harder
   buckets are drawn more (`alignlab.akd.curriculum`). The proposer is a generator, not the
   teacher *model*: the teacher model's part is to write the reference solutions, which count
   only once they pass the tests in the sandbox.
2. *Attempt.* Student and teacher sample completions; all run in the sandbox
   (`alignlab.eval.sandbox`); the student's results update its per-skill pass rates. Every
   attempt is kept in RUN/attempts/round-NNNN.jsonl (round 0: an optional probe of all skills).
3. *Train.* Pairs (passing teacher solution ≻ failing student solution) train the student with
   dpo | ipo | cal_dpo against the student at the start of the round (its log-probs scored once,
   without grad), plus λ × distillation (NLL) on passing teacher solutions
   (`alignlab.akd.loss`), through the shared `Trainer.step`.
Held-out pass@k (unbiased estimator) of the student is measured before, every `eval.every`
rounds and after; the teacher's once, for reference.

`train.epochs` / `train.max_steps` / `train.log_every` are unused (`rounds` and `epochs` set the
length; one record per round); `train.save_every` counts rounds; the LR schedule is constant
(the steps per round depend on the pairs each round yields).
"""

from __future__ import annotations

import argparse
import random
import time
from dataclasses import dataclass, field
from typing import Any

import torch

from alignlab.akd.curriculum import SkillStats, curriculum_draw
from alignlab.akd.data import (
    Attempt,
    RoundData,
    build_round_data,
    role_rates,
    run_attempts,
    select_training_data,
    update_stats,
)
from alignlab.akd.loss import akd_loss, sequence_nll
from alignlab.akd.proposer import FixedProposer, FreshTestsProposer, Proposer
from alignlab.config import ModelSettings, TrainSettings
from alignlab.errors import ConfigError, DataError
from alignlab.eval import pass_at_k as pak
from alignlab.eval.pass_at_k import Problem
from alignlab.eval.sandbox import SandboxLimits
from alignlab.losses.preference import LOSSES
from alignlab.models import load_model
from alignlab.recipe import (
    RunResult,
    add_recipe_args,
    config_from_args,
    default_run_dir,
    print_run_summary,
)
from alignlab.rl.rollout import anchor_logprobs
from alignlab.rl.scoring import Packed, response_logprobs
from alignlab.runs import RunDir
from alignlab.train.loop import Trainer, seed_everything


@dataclass
class CurriculumSettings:
    """How exercises are drawn from the student's measured pass rates."""

    buckets: int = 4
    temperature: float = 0.25  # P(bucket) ∝ weight · exp(difficulty / T); smaller = harder-first
    weights: list[float] = field(default_factory=list)  # optional per-bucket multipliers (> 0)
    memory: float = 0.5  # weight of older attempts in a skill's pass rate (0 = latest round only)
    prior: float = 0.5  # Beta(prior, prior) pseudo-counts of the pass rate (0.5: Jeffreys; unseen = 0.5)
    probe: bool = True  # before round 1 the student attempts every skill once


@dataclass
class SamplingSettings:
    """How teacher and student completions are sampled."""

    max_new_tokens: int = 48
    temperature: float = 0.8
    top_p: float = 0.95
    batch_size: int = 64


@dataclass
class SandboxSettings:
    """Limits of each sandboxed run and how many run at once."""

    timeout_s: float = 5.0
    memory_mb: int = 1024
    workers: int = 2


@dataclass
class PassAtKSettings:
    """Held-out pass@k: n samples per problem, the ks, and when."""

    n: int = 10
    ks: list[int] = field(default_factory=lambda: [1, 5])
    temperature: float = 0.8
    every: int = 1  # also after every n rounds (0: before and after only)
    limit: int = 0  # first n held-out problems (0: all)
    teacher: bool = True  # measure the teacher once, for reference


@dataclass
class AKDConfig:
    """Adversarial knowledge distillation of a teacher's code skill into a student."""

    student: ModelSettings = field(default_factory=lambda: ModelSettings(name_or_path="testbed:tiny"))
    teacher: ModelSettings = field(default_factory=lambda: ModelSettings(name_or_path="testbed:student"))
    train: TrainSettings = field(default_factory=lambda: TrainSettings(
        lr=1e-4, batch_size=8, grad_accum=1, save_every=1, max_grad_norm=1.0))
    problems: str = "testbed"  # testbed | a HumanEval-format .jsonl / .jsonl.gz
    eval_problems: str = ""  # held-out file; empty: the testbed held-out split / every heldout_every-th row
    heldout_every: int = 5
    n_tests: int = 3  # fresh asserts per testbed exercise
    rounds: int = 4
    exercises_per_round: int = 16
    student_samples: int = 4
    teacher_samples: int = 4
    epochs: int = 2  # passes over a round's pairs + distillation examples
    loss: str = "dpo"  # dpo | ipo | cal_dpo
    beta: float = 0.1
    calibration_weight: float = 1.0  # cal_dpo only
    distill_weight: float = 1.0  # λ
    max_pairs_per_exercise: int = 4
    max_distill_per_exercise: int = 2
    curriculum: CurriculumSettings = field(default_factory=CurriculumSettings)
    generation: SamplingSettings = field(default_factory=SamplingSettings)
    sandbox: SandboxSettings = field(default_factory=SandboxSettings)
    eval: PassAtKSettings = field(default_factory=PassAtKSettings)
    output_dir: str = ""


def validate(cfg: AKDConfig) -> None:
    """Check the config; errors name the key."""
    if cfg.loss not in LOSSES:
        raise ConfigError(f"loss: '{cfg.loss}' is not one of {list(LOSSES)}")
    ints = {"rounds": cfg.rounds, "exercises_per_round": cfg.exercises_per_round, "epochs": cfg.epochs,
            "student_samples": cfg.student_samples, "teacher_samples": cfg.teacher_samples, "n_tests": cfg.n_tests,
            "curriculum.buckets": cfg.curriculum.buckets, "eval.n": cfg.eval.n, "heldout_every": cfg.heldout_every,
            "sandbox.workers": cfg.sandbox.workers, "generation.max_new_tokens": cfg.generation.max_new_tokens}
    for key, v in ints.items():
        if v < 1:
            raise ConfigError(f"{key} must be >= 1, got {v}")
    if cfg.beta <= 0 or cfg.distill_weight < 0 or cfg.curriculum.temperature <= 0 or cfg.curriculum.prior <= 0:
        raise ConfigError("beta, curriculum.temperature and curriculum.prior must be > 0, distill_weight >= 0")
    if not 0 <= cfg.curriculum.memory <= 1:
        raise ConfigError(f"curriculum.memory must be in [0, 1], got {cfg.curriculum.memory}")
    w = cfg.curriculum.weights
    if w and (len(w) != cfg.curriculum.buckets or min(w) <= 0):
        raise ConfigError(f"curriculum.weights: need {cfg.curriculum.buckets} positive numbers, got {w}")
    if not cfg.eval.ks or min(cfg.eval.ks) < 1 or max(cfg.eval.ks) > cfg.eval.n:
        raise ConfigError(f"eval.ks must be in 1..eval.n={cfg.eval.n}, got {cfg.eval.ks}")
    if cfg.train.lr_schedule != "constant":
        raise ConfigError("train.lr_schedule must be 'constant' for akd (steps per round depend on the pairs found)")
    if max(cfg.max_pairs_per_exercise, cfg.max_distill_per_exercise) < 1:
        raise ConfigError("max_pairs_per_exercise or max_distill_per_exercise must be >= 1")
    try:
        limits(cfg)
    except ValueError as e:
        raise ConfigError(f"sandbox: {e}") from e


def limits(cfg: AKDConfig) -> SandboxLimits:
    return SandboxLimits(timeout_s=cfg.sandbox.timeout_s, memory_mb=cfg.sandbox.memory_mb).validate()


def load_problems(cfg: AKDConfig) -> tuple[Proposer, list[Problem]]:
    """(proposer over the training skills, held-out problems); the two never share a task_id."""
    if cfg.problems == "testbed":
        from alignlab.testbed.world import World

        world = World()
        train = [Problem.from_dict(e.as_humaneval(), e.task_id) for e in world.train_code]
        held = [Problem.from_dict(e.as_humaneval(), e.task_id) for e in world.heldout_code]
        proposer: Proposer = FreshTestsProposer(train, cfg.n_tests)
    else:
        rows = pak.load_humaneval(cfg.problems)
        if cfg.eval_problems:
            train, held = rows, pak.load_humaneval(cfg.eval_problems)
        else:
            train = [p for i, p in enumerate(rows) if i % cfg.heldout_every != 0]
            held = [p for i, p in enumerate(rows) if i % cfg.heldout_every == 0]
        if not train:
            raise DataError(f"{cfg.problems}: no training problems left after holding out every "
                            f"{cfg.heldout_every}-th row")
        proposer = FixedProposer(train)
    overlap = {p.task_id for p in held} & set(proposer.skills)
    if overlap:
        raise DataError(f"held-out problems overlap the training skills: {sorted(overlap)[:3]}")
    if cfg.eval.limit > 0:
        held = held[: cfg.eval.limit]
    return proposer, held


class AKDState:
    """What a resumed run needs besides weights: rounds done and the student's skill statistics."""

    def __init__(self) -> None:
        self.round = 0
        self.probed = False
        self.stats = SkillStats()

    def state_dict(self) -> dict[str, Any]:
        return {"round": self.round, "probed": self.probed, "stats": self.stats.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.round, self.probed = int(state["round"]), bool(state["probed"])
        self.stats.load_state_dict(state["stats"])


# --- attempts ---------------------------------------------------------------------------------


def attempt(model: torch.nn.Module, tokenizer, problems: list[Problem], n: int, cfg: AKDConfig,
            generator: torch.Generator) -> list[list[str]]:
    """n sampled, truncated completions per problem (tests may replace this to script a teacher)."""
    g = cfg.generation
    return pak.sample_completions(model, tokenizer, problems, n, g.max_new_tokens, g.temperature, g.top_p,
                                  g.batch_size, generator)


def write_attempts(run_dir: RunDir, round_no: int, attempts: list[Attempt]) -> None:
    """RUN/attempts/round-NNNN.jsonl: every attempt with its sandbox result (rewritten on resume)."""
    run_dir.write_jsonl(f"attempts/round-{round_no:04d}.jsonl", [a.to_dict() for a in attempts])


# --- training --------------------------------------------------------------------------------


@torch.no_grad()
def reference_logps(model: torch.nn.Module, packed: Packed, batch_size: int) -> torch.Tensor:
    """[P, 2] summed response log-probs of pair rows under `model` (the student now), no grad."""
    device = next(model.parameters()).device
    return anchor_logprobs(model, packed.to(device), 1.0, batch_size).sum(-1).float().cpu().view(-1, 2)


def make_loss_fn(cfg: AKDConfig, sink: list[dict[str, float]]):
    """loss_fn(model, micro-batch) for `Trainer.step`; appends exact per-micro-batch sums to `sink`."""

    def loss_fn(model: torch.nn.Module, mb: dict[str, Any]) -> tuple[torch.Tensor, dict[str, Any]]:
        device = next(model.parameters()).device
        pol = ref = nll = None
        if "pairs" in mb:
            packed = mb["pairs"].to(device)
            pol = response_logprobs(model, packed).sum(-1).view(-1, 2)
            ref = mb["ref"].to(device)
        if "distill" in mb:
            packed = mb["distill"].to(device)
            nll = sequence_nll(response_logprobs(model, packed), packed.response_mask)
        loss, metrics = akd_loss(pol, ref, nll, cfg.loss, cfg.beta, cfg.distill_weight, cfg.calibration_weight)
        n_p, n_d = (0 if pol is None else len(pol)), (0 if nll is None else len(nll))
        rec = {"n_pairs": n_p, "n_distill": n_d, "loss": float(loss.detach())}
        rec.update({k: float(v) * (n_d if k == "distill_nll" else n_p) for k, v in metrics.items()})
        sink.append(rec)
        return loss, metrics

    return loss_fn


def round_losses(sink: list[dict[str, float]]) -> dict[str, float]:
    """Round means: pair metrics over pairs, distill_nll over distillation examples."""
    if not sink:
        return {}
    n_p, n_d = sum(r["n_pairs"] for r in sink), sum(r["n_distill"] for r in sink)
    out = {"loss": sum(r["loss"] for r in sink) / len(sink)}
    for k in ("pref_loss", "chosen_reward", "rejected_reward", "margin", "accuracy"):
        if n_p:
            out[k] = sum(r.get(k, 0.0) for r in sink) / n_p
    if n_d:
        out["distill_nll"] = sum(r.get("distill_nll", 0.0) for r in sink) / n_d
    return out


def train_round(trainer: Trainer, data: RoundData, cfg: AKDConfig, round_no: int) -> tuple[int, dict[str, float]]:
    """`epochs` passes over the round's data with `Trainer.step`; (steps, round-mean losses)."""
    if data.n_pairs == 0 and data.n_distill == 0:
        return 0, {}
    if data.n_pairs:
        data.ref = reference_logps(trainer.unwrapped, data.pairs, cfg.generation.batch_size)
    sink: list[dict[str, float]] = []
    loss_fn = make_loss_fn(cfg, sink)
    g = torch.Generator().manual_seed(cfg.train.seed * 1_000_003 + round_no)
    steps, ga = 0, cfg.train.grad_accum
    for _ in range(cfg.epochs):
        micro = data.micro_batches(cfg.train.batch_size, g)
        for s in range(0, len(micro), ga):
            m = trainer.step(loss_fn, micro[s:s + ga])
            sink[-1]["grad_norm"] = m.get("grad_norm", 0.0)
            steps += 1
    out = round_losses(sink)
    norms = [r["grad_norm"] for r in sink if "grad_norm" in r]
    out["grad_norm"] = sum(norms) / len(norms)
    return steps, out


# --- the recipe --------------------------------------------------------------------------------


def run(cfg: AKDConfig) -> RunResult:
    """Distil cfg.teacher into cfg.student over cfg.rounds adversarial rounds; held-out pass@k before/after."""
    from alignlab.akd.report import evaluate_held_out, summarize, write_akd_report
    from alignlab.progress import progress_bar

    validate(cfg)
    seed_everything(cfg.train.seed)
    run_dir = RunDir(cfg.output_dir or default_run_dir("akd"))
    proposer, held = load_problems(cfg)
    student, tok = load_model(cfg.student)
    teacher, teacher_tok = load_model(cfg.teacher, trainable=False)
    state = AKDState()
    trainer = Trainer(student, cfg.train, run_dir, extra_state={"akd": state})
    run_dir.save_config(cfg)
    if trainer.resume():  # a round can take no optimiser step: redo the rounds after the checkpoint's
        run_dir.truncate_metrics(state.round, key="round")
    else:
        run_dir.truncate_metrics(-1)  # a run that died before its first checkpoint starts over
    teacher.to(trainer.accelerator.device)
    policy = trainer.unwrapped
    seed = cfg.train.seed
    t_start = time.perf_counter()

    def gen(round_no: int, role: int) -> torch.Generator:
        return torch.Generator().manual_seed(seed * 1_000_003 + round_no * 7 + role)

    if state.round == 0:
        rec: dict[str, Any] = {"step": trainer.step_count, "round": 0,
                               **evaluate_held_out(policy, tok, held, cfg, run_dir, 0, "student")}
        if cfg.eval.teacher:
            teacher_eval = evaluate_held_out(teacher, teacher_tok, held, cfg, run_dir, 0, "teacher")
            rec.update({k.replace("eval_", "teacher_"): v for k, v in teacher_eval.items()})
        if cfg.curriculum.probe and not state.probed:
            skills = [(s, -1) for s in proposer.skills]
            rng = random.Random(seed * 100_003)
            probs = [proposer.propose(s, rng, "r0") for s, _ in skills]
            comps = {"student": attempt(policy, tok, probs, cfg.student_samples, cfg, gen(0, 0))}
            attempts, _ = run_attempts(0, probs, skills, comps, limits(cfg), cfg.sandbox.workers)
            update_stats(state.stats, attempts, cfg.curriculum.memory)
            write_attempts(run_dir, 0, attempts)
            state.probed = True
            rec["probe_student_pass_rate"] = sum(a.passed for a in attempts) / len(attempts)
        trainer.run.log(rec)
    with progress_bar("akd", total=cfg.rounds, completed=state.round,
                      enabled=cfg.train.progress and trainer.is_main) as bar:
        for r in range(state.round + 1, cfg.rounds + 1):
            rng = random.Random(seed * 100_003 + r)
            drawn, info = curriculum_draw(state.stats, proposer.skills, cfg.exercises_per_round,
                                          cfg.curriculum.buckets, cfg.curriculum.temperature, rng,
                                          cfg.curriculum.weights or None,
                                          (cfg.curriculum.prior, cfg.curriculum.prior))
            probs = [proposer.propose(s, rng, f"r{r}-{i}") for i, (s, _) in enumerate(drawn)]
            t0 = time.perf_counter()
            comps = {"teacher": attempt(teacher, teacher_tok, probs, cfg.teacher_samples, cfg, gen(r, 1)),
                     "student": attempt(policy, tok, probs, cfg.student_samples, cfg, gen(r, 0))}
            t_sample = time.perf_counter() - t0
            attempts, t_sandbox = run_attempts(r, probs, drawn, comps, limits(cfg), cfg.sandbox.workers)
            pairs, distill = select_training_data(attempts, cfg.max_pairs_per_exercise, cfg.max_distill_per_exercise)
            write_attempts(run_dir, r, attempts)
            update_stats(state.stats, attempts, cfg.curriculum.memory)
            t0 = time.perf_counter()
            steps, losses = train_round(trainer, build_round_data(tok, attempts, pairs, distill), cfg, r)
            rec = {"step": trainer.step_count, "round": r, **info, **role_rates(attempts),
                   "exercises": len(probs), "pairs": len(pairs), "distill": len(distill), "steps": steps, **losses,
                   "time_sample": round(t_sample, 3), "time_sandbox": round(t_sandbox, 3),
                   "time_update": round(time.perf_counter() - t0, 3)}
            if r == cfg.rounds or (cfg.eval.every > 0 and r % cfg.eval.every == 0):
                rec.update(evaluate_held_out(policy, tok, held, cfg, run_dir, r, "student"))
            state.round = r
            trainer.run.log(rec)
            bar.advance(pairs=len(pairs), student=rec.get("student_pass_rate", 0.0))
            if cfg.train.save_every > 0 and r % cfg.train.save_every == 0:
                trainer.save_checkpoint()
    final = trainer.save_final(tok)
    records = run_dir.metrics()
    if trainer.is_main:
        write_akd_report(run_dir, records, cfg)
    return RunResult(run_dir.path, summarize(records, cfg, time.perf_counter() - t_start), final)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("akd", help="AKD: adversarial knowledge distillation for code (teacher → student, pass@k)")
    add_recipe_args(p)

    def handler(args: argparse.Namespace) -> int:
        from alignlab.akd.report import round_rows

        print_run_summary("AKD", run(config_from_args(AKDConfig, args)), "AKD rounds", round_rows)
        return 0

    p.set_defaults(func=handler)
