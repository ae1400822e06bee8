"""Row 8 — AKD, adversarial knowledge distillation of code: drawing exercises where the student
fails most and training on (passing teacher ≻ failing student) pairs plus distillation raises
the student's pass@k over plain distillation with the same number of teacher calls.

Two pairings, each its own row (`make_row`): `akd` — the built-in student (1M) teaches the tiny
model (0.2M) on the built-in exercises; `akd_teacher` (rows/akd_teacher.py) — the teacher (5.5M)
teaches the student on the digit-constant exercises (`testbed:hard`), the only family found where
the teacher leads the student (pass@1 ≈ 0.34 vs 0.08; on the plain exercises both pass ≈ 93 %).
Per seed, teacher and student fixed: AKD (the `akd` recipe: adversarial curriculum, pairs +
distillation) vs plain distillation (the same recipe with no pairs and a uniform curriculum:
exercises drawn evenly); same rounds, exercises per round and teacher samples, so the same teacher
calls. Measured: held-out pass@1 / pass@k of the student after training (unbiased estimator, n
samples per problem)."""

from __future__ import annotations

from dataclasses import dataclass, replace
from functools import partial

from alignlab.claims.row import ClaimRow, ClaimTest, RowContext, SeedResult

CEILING = 0.9  # student pass@1 before training at or above this on every seed: nothing to raise
UNIFORM = 1e6  # curriculum temperature at which P(bucket) ∝ exp(difficulty / T) is flat


@dataclass(frozen=True)
class Sizes:
    rounds: int
    exercises: int
    samples: int
    eval_n: int
    ks: tuple[int, ...]
    eval_limit: int  # first n held-out problems (0: all)


SIZES = {True: Sizes(1, 4, 2, 2, (1,), 3), False: Sizes(6, 16, 4, 10, (1, 5), 0)}


@dataclass(frozen=True)
class Pairing:
    """Who teaches whom on which exercises (model size names of `RowContext.models`)."""

    key: str
    teacher: str
    student: str
    problems: str
    label: str
    setup: str


STUDENT_TINY = Pairing("akd", "student", "tiny", "testbed", "student → tiny",
                       "teacher: the built-in student (1M) → student: tiny (0.2M); the built-in code exercises")
TEACHER_STUDENT = Pairing("akd_teacher", "teacher", "student", "testbed:hard", "teacher → student",
                          "teacher: the built-in teacher (5.5M) → student: the built-in student (1M); the digit-constant "
                          "code exercises (testbed:hard: add_3, 'return x plus 3'; never in the corpus; every 5th held out)")


def untestable(per_seed: list[dict[str, float]]) -> dict[str, str]:
    """The student needs headroom: a held-out pass@1 below the ceiling before training."""
    if all(r["before_pass@1"] >= CEILING for r in per_seed):
        return {"akd_minus_plain_pass@1": f"the student already passes ≥ {CEILING:.0%} before training: no headroom"}
    return {}


def config(ctx: RowContext, seed: int, plain: bool, pairing: Pairing = STUDENT_TINY):
    from alignlab.config import ModelSettings, TrainSettings
    from alignlab.generation import SamplingSettings
    from alignlab.recipes import akd

    s = SIZES[ctx.quick]
    teacher, student = ctx.models[pairing.teacher], ctx.models[pairing.student]
    probe = not ctx.quick  # the probe (every skill attempted once before round 1) is most of a quick run's time
    curriculum = akd.CurriculumSettings(probe=probe)
    if plain:
        curriculum = replace(curriculum, temperature=UNIFORM)
    return akd.AKDConfig(
        student=ModelSettings(name_or_path=student), teacher=ModelSettings(name_or_path=teacher),
        train=TrainSettings(lr=1e-3, batch_size=8, save_every=0, seed=seed, progress=False),
        problems=pairing.problems, rounds=s.rounds, exercises_per_round=s.exercises,
        student_samples=s.samples, teacher_samples=s.samples,
        max_pairs_per_exercise=0 if plain else 4, curriculum=curriculum,
        generation=SamplingSettings(max_new_tokens=24, temperature=0.8, top_p=0.95),
        eval=akd.PassAtKSettings(n=s.eval_n, ks=list(s.ks), every=0, limit=s.eval_limit, teacher=not ctx.quick and not plain),
        output_dir=str(ctx.seed_dir(seed) / ("plain_distillation" if plain else "akd")))


def measure(ctx: RowContext, seed: int, pairing: Pairing = STUDENT_TINY) -> SeedResult:
    from alignlab.recipes import akd

    s = SIZES[ctx.quick]
    numbers = {}
    for name, plain in (("akd", False), ("plain", True)):
        m = akd.run(config(ctx, seed, plain, pairing)).metrics
        for k in s.ks:
            numbers[f"{name}_pass@{k}"] = float(m[f"student_pass@{k}_after"])
            numbers[f"before_pass@{k}"] = float(m[f"student_pass@{k}_before"])
        numbers[f"{name}_pairs"] = float(m.get("pairs", 0) or 0)
        numbers[f"{name}_distill"] = float(m.get("distill", 0) or 0)
        if "teacher_pass@1" in m:
            numbers["teacher_pass@1"] = float(m["teacher_pass@1"])
    for k in s.ks:
        numbers[f"akd_minus_plain_pass@{k}"] = numbers[f"akd_pass@{k}"] - numbers[f"plain_pass@{k}"]
    return SeedResult(numbers, note=f"pair: {pairing.label} on {pairing.problems}")


def make_row(pairing: Pairing) -> ClaimRow:
    """The AKD claim row for one teacher → student pairing."""
    return ClaimRow(
        key=pairing.key, paper="AKD: adversarial knowledge distillation for code (SPEC §7)",
        claim=f"AKD raises the student's pass@k over plain distillation at equal teacher calls ({pairing.label})",
        tests=(ClaimTest("akd_minus_plain_pass@1", "greater", "AKD − plain distillation, held-out pass@1"),),
        measure=partial(measure, pairing=pairing), untestable=untestable,
        extra_keys=("before_pass@1", "teacher_pass@1", "akd_pass@1", "plain_pass@1", "akd_minus_plain_pass@5",
                    "akd_pairs", "plain_distill", "akd_distill"),
        setup=f"{pairing.setup}; 6 rounds × 16 exercises × 4 samples each side (quick 1 × 4 × 2); plain = no pairs, "
              "uniform curriculum; pass@k with n = 10 on the held-out problems (quick n = 2 on 3)",
    )


ROW = make_row(STUDENT_TINY)
