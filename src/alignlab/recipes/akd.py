"""AKD recipe (SPEC §7): adversarial knowledge distillation for code, `alignlab akd`.

A larger teacher and a smaller student. Each round is one iteration of `Trainer.fit_online`:
1. *Propose* (collect). Exercises are drawn from a skill pool (`alignlab.akd.proposer`): for the
   built-in exercises (`alignlab.resolve.code_problems`), every family × parameter of the
   training split, each draw with freshly written tests; for a HumanEval-format file, its
   problems as they are. Draws are adversarial: skills are bucketed by the student's current
   measured pass rate and harder buckets are drawn more (`alignlab.akd.curriculum`). The
   proposer is a generator, not the teacher *model*: the teacher model's part is to write the
   reference solutions, which count only once they pass the tests in the sandbox.
2. *Attempt* (collect). Student and teacher sample completions; all run in the sandbox
   (`alignlab.eval.sandbox`); the student's results update its per-skill pass rates. Every
   attempt is kept in RUN/attempts/round-NNNN.jsonl (round 0: an optional probe of all skills).
3. *Train* (the trainer's epochs over the round's `RoundBuffer`). Pairs (passing teacher
   solution ≻ failing student solution) train the student with the `preference` loss against
   the student at the start of the round (its log-probs scored once, without grad), plus
   λ × distillation (NLL) on passing teacher solutions (`alignlab.akd.loss`).
Held-out pass@k (unbiased estimator) of the student is measured before, every `eval.every`
rounds and after; the teacher's once, for reference. Records carry `round` (= `iteration`).

`train.epochs` / `train.max_steps` / `train.log_every` are unused (`rounds` and `epochs` set the
length; one record per round); `train.save_every` counts rounds; the LR schedule is constant
(the steps per round depend on the pairs each round yields).
"""

from __future__ import annotations

import argparse
import random
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from alignlab.akd.curriculum import SkillStats, curriculum_draw
from alignlab.akd.report import round_rows, summarize, write_akd_report
from alignlab.config import ModelSettings, TrainSettings, bounded, recheck
from alignlab.errors import ConfigError
from alignlab.eval.sandbox import SandboxLimits
from alignlab.method_settings import PreferenceLossSettings, SamplingSettings
from alignlab.recipe import RunResult, default_run_dir, register_recipe
from alignlab.runs import RunDir

if TYPE_CHECKING:
    import torch

    from alignlab.akd.data import Attempt, RoundBuffer
    from alignlab.akd.proposer import Proposer
    from alignlab.eval.pass_at_k import Problem
    from alignlab.scoring import Packed, PairLogps
    from alignlab.train.loop import Trainer


@dataclass
class CurriculumSettings:
    """How exercises are drawn from the student's measured pass rates."""

    buckets: int = bounded(4, ge=1)
    temperature: float = bounded(0.25, gt=0)  # P(bucket) ∝ weight · exp(difficulty / T); smaller = harder-first
    weights: list[float] = bounded([], gt=0)  # optional per-bucket multipliers, one per bucket
    memory: float = bounded(0.5, ge=0, le=1)  # weight of older attempts in a skill's pass rate (0 = latest round only)
    prior: float = bounded(0.5, gt=0)  # Beta(prior, prior) pseudo-counts of the pass rate (0.5: Jeffreys; unseen = 0.5)
    probe: bool = True  # before round 1 the student attempts every skill once

    def check(self, where: str) -> None:
        """Weights, when given, are one per bucket."""
        if self.weights and len(self.weights) != self.buckets:
            raise ConfigError(f"{where}.weights: need one per bucket ({self.buckets}), got {len(self.weights)}")


@dataclass
class SandboxSettings:
    """Limits of each sandboxed run and how many run at once."""

    timeout_s: float = bounded(5.0, gt=0)
    memory_mb: int = bounded(1024, ge=64)  # the sandbox needs 64 MB to start Python
    workers: int = bounded(2, ge=1)


@dataclass
class PassAtKSettings:
    """Held-out pass@k: n samples per problem, the ks, and when."""

    n: int = bounded(10, ge=1)
    ks: list[int] = bounded([1, 5], ge=1)  # each <= n
    temperature: float = bounded(0.8, ge=0)
    every: int = bounded(1, ge=0)  # also after every n rounds (0: before and after only)
    limit: int = bounded(0, ge=0)  # first n held-out problems (0: all)
    teacher: bool = True  # measure the teacher once, for reference

    def check(self, where: str) -> None:
        """pass@k needs at least one k, and n samples per problem for each k."""
        if not self.ks:
            raise ConfigError(f"{where}.ks: give at least one k (e.g. [1, 5])")
        if max(self.ks) > self.n:
            raise ConfigError(f"{where}.ks: each k must be <= n ({self.n}), got {self.ks}")


@dataclass
class AKDConfig:
    """Adversarial knowledge distillation of a teacher's code skill into a student."""

    student: ModelSettings = field(default_factory=lambda: ModelSettings(name_or_path=""))
    teacher: ModelSettings = field(default_factory=lambda: ModelSettings(name_or_path=""))
    train: TrainSettings = field(default_factory=lambda: TrainSettings(
        lr=1e-4, batch_size=8, grad_accum=1, save_every=1, max_grad_norm=1.0))
    problems: str = ""  # built-in exercises or a HumanEval-format .jsonl / .jsonl.gz (alignlab.resolve)
    eval_problems: str = ""  # held-out file; empty: the built-in held-out split / every heldout_every-th row
    heldout_every: int = bounded(5, ge=2)  # every n-th problem of a file is held out
    n_tests: int = bounded(3, ge=1)  # fresh asserts per built-in exercise draw
    rounds: int = bounded(4, ge=1)
    exercises_per_round: int = bounded(16, ge=1)
    student_samples: int = bounded(4, ge=1)
    teacher_samples: int = bounded(4, ge=1)
    epochs: int = bounded(2, ge=1)  # passes over a round's pairs + distillation examples
    preference: PreferenceLossSettings = field(default_factory=PreferenceLossSettings)
    distill_weight: float = bounded(1.0, ge=0)  # λ
    max_pairs_per_exercise: int = bounded(4, ge=0)
    max_distill_per_exercise: int = bounded(2, ge=0)
    curriculum: CurriculumSettings = field(default_factory=CurriculumSettings)
    generation: SamplingSettings = field(default_factory=lambda: SamplingSettings(
        max_new_tokens=48, temperature=0.8, top_p=0.95, batch_size=64))
    sandbox: SandboxSettings = field(default_factory=SandboxSettings)
    eval: PassAtKSettings = field(default_factory=PassAtKSettings)
    output_dir: str = ""

    def check(self, where: str) -> None:
        """Rules across fields: a constant LR (the steps per round vary), some training data per exercise."""
        if self.train.lr_schedule != "constant":
            raise ConfigError(f"{where}.train.lr_schedule: must be 'constant' for akd (steps per round depend on "
                              f"the pairs found), got {self.train.lr_schedule!r}")
        if max(self.max_pairs_per_exercise, self.max_distill_per_exercise) < 1:
            raise ConfigError(f"{where}.max_pairs_per_exercise: it or max_distill_per_exercise must be >= 1 "
                              "(else a round has nothing to train on)")


def validate(cfg: AKDConfig) -> None:
    """The checks loading cannot make (student, teacher and problems are required; ranges again
    for a config built in code); errors name the key."""
    from alignlab.resolve import require

    recheck(cfg)
    require(cfg.student.name_or_path, "student.name_or_path", "the student model")
    require(cfg.teacher.name_or_path, "teacher.name_or_path", "the teacher model")
    require(cfg.problems, "problems", "code problems (the built-in exercises or a HumanEval-format .jsonl file)")
    try:
        limits(cfg)
    except ValueError as e:
        raise ConfigError(f"sandbox: {e}") from e


def limits(cfg: AKDConfig) -> SandboxLimits:
    return SandboxLimits(timeout_s=cfg.sandbox.timeout_s, memory_mb=cfg.sandbox.memory_mb).validate()


def load_problems(cfg: AKDConfig) -> tuple[Proposer, list[Problem]]:
    """(proposer over the training skills, held-out problems); the two never share a task_id."""
    from alignlab.akd.proposer import FixedProposer, FreshTestsProposer
    from alignlab.resolve import code_problems

    problems = code_problems(cfg.problems, cfg.eval_problems, cfg.heldout_every)
    proposer: Proposer = (FreshTestsProposer(problems.train, cfg.n_tests) if problems.fresh_tests
                          else FixedProposer(problems.train))
    held = problems.held[: cfg.eval.limit] if cfg.eval.limit > 0 else problems.held
    return proposer, held


class AKDState:
    """What a resumed run needs besides weights and the round (`trainer.iteration`): whether the
    probe ran and the student's skill statistics."""

    def __init__(self) -> None:
        self.probed = False
        self.stats = SkillStats()

    def state_dict(self) -> dict[str, Any]:
        return {"probed": self.probed, "stats": self.stats.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.probed = bool(state["probed"])
        self.stats.load_state_dict(state["stats"])


def attempt(model: torch.nn.Module, tokenizer, problems: list[Problem], n: int, cfg: AKDConfig,
            generator: torch.Generator) -> list[list[str]]:
    """n sampled, truncated completions per problem (tests may replace this to script a teacher)."""
    from alignlab.eval import pass_at_k as pak

    g = cfg.generation
    return pak.sample_completions(model, tokenizer, problems, n, g.max_new_tokens, g.temperature, g.top_p,
                                  g.batch_size, generator)


def write_attempts(run_dir: RunDir, round_no: int, attempts: list[Attempt]) -> None:
    """RUN/attempts/round-NNNN.jsonl: every attempt with its sandbox result (rewritten on resume)."""
    run_dir.write_jsonl(f"attempts/round-{round_no:04d}.jsonl", [a.to_dict() for a in attempts])


def reference_logps(model: torch.nn.Module, pairs: Packed, batch_size: int) -> PairLogps:
    """Summed response log-probs of `pack_pairs` rows under `model` (the student now), no grad, on CPU."""
    from alignlab.scoring import PairLogps, chunked_response_logprobs

    device = next(model.parameters()).device
    rows = chunked_response_logprobs(model, pairs.to(device), 1.0, batch_size).sum(-1).float().cpu()
    return PairLogps.from_halves(rows)


class AKDRounds:
    """One run's parts for `Trainer.fit_online`: `start` (round-0 evaluation and probe), `collect`
    (a round's draw, attempts and sandbox → `RoundBuffer`), `finish` (the round's record) and
    `evaluate` (held-out pass@k of the student)."""

    def __init__(self, cfg: AKDConfig, trainer: Trainer, tokenizer, teacher: torch.nn.Module, teacher_tok,
                 proposer: Proposer, held: list[Problem], state: AKDState):
        self.cfg, self.trainer, self.tok = cfg, trainer, tokenizer
        self.teacher, self.teacher_tok = teacher, teacher_tok
        self.proposer, self.held, self.state = proposer, held, state

    def generator(self, round_no: int, role: int) -> torch.Generator:
        """Sampling generator of (round, role) on the model's device; the same on every process."""
        from alignlab.train.online import device_generator

        return device_generator(self.cfg.train.seed * 1_000_003 + round_no * 7 + role, self.trainer.device)

    def held_out(self, model: torch.nn.Module, tokenizer, round_no: int, label: str) -> dict[str, float]:
        """Held-out pass@k (`eval_pass@k` keys) with a fixed sampling seed; samples go to RUN/eval/."""
        from alignlab.eval import pass_at_k as pak

        cfg = self.cfg
        e, g = cfg.eval, cfg.generation
        res = pak.evaluate_pass_at_k(model, tokenizer, self.held, e.n, e.ks, g.max_new_tokens, e.temperature,
                                     g.top_p, g.batch_size, seed=cfg.train.seed + 12_345, limits=limits(cfg),
                                     workers=cfg.sandbox.workers)
        self.trainer.run.write_jsonl(f"eval/round-{round_no:04d}-{label}.jsonl", res.samples)
        return {f"eval_{k}": v for k, v in res.means.items()}

    def evaluate(self, round_no: int) -> dict[str, float]:
        return self.held_out(self.trainer.unwrapped, self.tok, round_no, "student")

    def start(self) -> dict[str, Any]:
        """Round 0: held-out pass@k of student (and teacher), and the probe of every skill."""
        from alignlab.akd.data import run_attempts, update_stats

        cfg = self.cfg
        rec: dict[str, Any] = {"round": 0, **self.evaluate(0)}
        if cfg.eval.teacher:
            teacher_eval = self.held_out(self.teacher, self.teacher_tok, 0, "teacher")
            rec.update({k.replace("eval_", "teacher_"): v for k, v in teacher_eval.items()})
        if cfg.curriculum.probe and not self.state.probed:
            skills = [(s, -1) for s in self.proposer.skills]
            rng = random.Random(cfg.train.seed * 100_003)
            probs = [self.proposer.propose(s, rng, "r0") for s, _ in skills]
            comps = {"student": attempt(self.trainer.unwrapped, self.tok, probs, cfg.student_samples, cfg,
                                        self.generator(0, 0))}
            attempts, _ = run_attempts(0, probs, skills, comps, limits(cfg), cfg.sandbox.workers)
            update_stats(self.state.stats, attempts, cfg.curriculum.memory)
            write_attempts(self.trainer.run, 0, attempts)
            self.state.probed = True
            rec["probe_student_pass_rate"] = sum(a.passed for a in attempts) / len(attempts)
        return rec

    def collect(self, r: int) -> RoundBuffer:
        """Round r's exercises, attempts and training data, with the reference log-probs of its pairs."""
        from alignlab.akd.data import (
            build_round_buffer,
            role_rates,
            run_attempts,
            select_training_data,
            update_stats,
        )

        cfg, cur, policy = self.cfg, self.cfg.curriculum, self.trainer.unwrapped
        rng = random.Random(cfg.train.seed * 100_003 + r)
        drawn, info = curriculum_draw(self.state.stats, self.proposer.skills, cfg.exercises_per_round, cur.buckets,
                                      cur.temperature, rng, cur.weights or None, (cur.prior, cur.prior))
        probs = [self.proposer.propose(s, rng, f"r{r}-{i}") for i, (s, _) in enumerate(drawn)]
        t0 = time.perf_counter()
        comps = {"teacher": attempt(self.teacher, self.teacher_tok, probs, cfg.teacher_samples, cfg,
                                    self.generator(r, 1)),
                 "student": attempt(policy, self.tok, probs, cfg.student_samples, cfg, self.generator(r, 0))}
        t_sample = time.perf_counter() - t0
        attempts, t_sandbox = run_attempts(r, probs, drawn, comps, limits(cfg), cfg.sandbox.workers)
        pairs, distill = select_training_data(attempts, cfg.max_pairs_per_exercise, cfg.max_distill_per_exercise)
        write_attempts(self.trainer.run, r, attempts)
        update_stats(self.state.stats, attempts, cfg.curriculum.memory)
        buffer = build_round_buffer(self.tok, attempts, pairs, distill)
        if buffer.pairs is not None:
            buffer.ref = reference_logps(policy, buffer.pairs, cfg.generation.batch_size)
        buffer.record = {"round": r, **info, **role_rates(attempts), "exercises": len(probs), "pairs": len(pairs),
                         "distill": len(distill), "time_sample": round(t_sample, 3),
                         "time_sandbox": round(t_sandbox, 3)}
        return buffer

    def finish(self, r: int, buffer: RoundBuffer, step_metrics: list[dict[str, float]]) -> dict[str, Any]:
        """The round's record: what collect measured, steps taken and exact round-mean losses."""
        from alignlab.akd.loss import round_means, step_sizes

        per_epoch = buffer.micro_batch_count(self.cfg.train.batch_size)
        sizes = step_sizes([per_epoch] * self.cfg.epochs, self.cfg.train.grad_accum)
        return {**buffer.record, "steps": len(step_metrics), **round_means(step_metrics, sizes)}


def report_notes(cfg: AKDConfig) -> list[str]:
    """The settings a reader of report.html needs."""
    c, p = cfg.curriculum, cfg.preference
    return [f"student={cfg.student.name_or_path} teacher={cfg.teacher.name_or_path} problems={cfg.problems}",
            f"loss={p.loss} beta={p.beta} distill_weight={cfg.distill_weight} rounds={cfg.rounds} "
            f"exercises_per_round={cfg.exercises_per_round} samples student/teacher="
            f"{cfg.student_samples}/{cfg.teacher_samples}",
            f"curriculum: {c.buckets} buckets, temperature {c.temperature}, memory {c.memory}; sandbox timeout "
            f"{cfg.sandbox.timeout_s}s, memory {cfg.sandbox.memory_mb} MB; pass@k with n={cfg.eval.n}"]


def run(cfg: AKDConfig) -> RunResult:
    """Distil cfg.teacher into cfg.student over cfg.rounds adversarial rounds; held-out pass@k before/after."""
    from alignlab.akd.loss import akd_loss_fn
    from alignlab.models import load_model
    from alignlab.train.loop import Trainer, seed_everything

    validate(cfg)
    seed_everything(cfg.train.seed)
    run_dir = RunDir(cfg.output_dir or default_run_dir("akd"))
    proposer, held = load_problems(cfg)
    student, tok = load_model(cfg.student)
    teacher, teacher_tok = load_model(cfg.teacher, trainable=False)
    state = AKDState()
    trainer = Trainer(student, cfg.train, run_dir, extra_state={"akd": state})
    run_dir.save_config(cfg)
    rounds = AKDRounds(cfg, trainer, tok, teacher, teacher_tok, proposer, held, state)
    t_start = time.perf_counter()
    trainer.fit_online(rounds.collect, akd_loss_fn(cfg.preference, cfg.distill_weight), cfg.rounds, cfg.epochs,
                       finish=rounds.finish, start=rounds.start, evaluate=rounds.evaluate, eval_every=cfg.eval.every,
                       desc="akd", show={"pairs": "pairs", "student": "student_pass_rate"})
    final = trainer.save_final(tok)
    records = run_dir.metrics()
    if trainer.is_main:
        write_akd_report(run_dir, records, cfg.eval.ks, cfg.curriculum.buckets, report_notes(cfg))
    return RunResult(run_dir.path, summarize(records, cfg.eval.ks, time.perf_counter() - t_start), final)


def register(sub: argparse._SubParsersAction) -> None:
    register_recipe(sub, "akd", "AKD: adversarial knowledge distillation for code (teacher → student, pass@k)",
                    AKDConfig, run, rows_fn=round_rows, rows_title="AKD rounds", title="AKD")
