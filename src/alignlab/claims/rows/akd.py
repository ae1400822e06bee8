"""Row 8 — AKD, adversarial knowledge distillation of code: drawing exercises where the student
fails most and training on (passing teacher ≻ failing student) pairs plus distillation raises
the student's pass@k over plain distillation with the same number of teacher calls.

Per seed, teacher and student fixed (`pair`), on the harder digit-constant exercises
(`testbed:hard`, where the teacher leads the student): AKD (the `akd`
recipe: adversarial curriculum, pairs + distillation) vs plain distillation (the same recipe
with no pairs and a uniform curriculum: exercises drawn evenly); same rounds, exercises per
round and teacher samples, so the same teacher calls. Measured: held-out pass@1 / pass@k of the
student after training (unbiased estimator, n samples per problem)."""

from __future__ import annotations

from dataclasses import dataclass, replace

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


PROBLEMS = "testbed:hard"  # on the plain exercises student and teacher both pass ≈ 93 %: no headroom


def pair(ctx: RowContext) -> tuple[str, str, str]:
    """(teacher folder, student folder, label): the built-in teacher (5.5M) teaches the student (1M)
    on the digit-constant exercises, where pass@1 is ≈ 0.32 vs ≈ 0.08 before training."""
    return ctx.models["teacher"], ctx.models["student"], "teacher → student"


def untestable(per_seed: list[dict[str, float]]) -> dict[str, str]:
    """The student needs headroom: a held-out pass@1 below the ceiling before training."""
    if all(r["before_pass@1"] >= CEILING for r in per_seed):
        return {"akd_minus_plain_pass@1": f"the student already passes ≥ {CEILING:.0%} before training: no headroom"}
    return {}


def config(ctx: RowContext, seed: int, plain: bool):
    from alignlab.config import ModelSettings, TrainSettings
    from alignlab.generation import SamplingSettings
    from alignlab.recipes import akd

    s = SIZES[ctx.quick]
    teacher, student, _ = pair(ctx)
    probe = not ctx.quick  # the probe (every skill attempted once before round 1) is most of a quick run's time
    curriculum = akd.CurriculumSettings(probe=probe)
    if plain:
        curriculum = replace(curriculum, temperature=UNIFORM)
    return akd.AKDConfig(
        student=ModelSettings(name_or_path=student), teacher=ModelSettings(name_or_path=teacher),
        train=TrainSettings(lr=1e-3, batch_size=8, save_every=0, seed=seed, progress=False),
        problems=PROBLEMS, rounds=s.rounds, exercises_per_round=s.exercises,
        student_samples=s.samples, teacher_samples=s.samples,
        max_pairs_per_exercise=0 if plain else 4, curriculum=curriculum,
        generation=SamplingSettings(max_new_tokens=24, temperature=0.8, top_p=0.95),
        eval=akd.PassAtKSettings(n=s.eval_n, ks=list(s.ks), every=0, limit=s.eval_limit, teacher=not ctx.quick and not plain),
        output_dir=str(ctx.seed_dir(seed) / ("plain_distillation" if plain else "akd")))


def measure(ctx: RowContext, seed: int) -> SeedResult:
    from alignlab.recipes import akd

    s = SIZES[ctx.quick]
    numbers = {}
    for name, plain in (("akd", False), ("plain", True)):
        m = akd.run(config(ctx, seed, plain)).metrics
        for k in s.ks:
            numbers[f"{name}_pass@{k}"] = float(m[f"student_pass@{k}_after"])
            numbers[f"before_pass@{k}"] = float(m[f"student_pass@{k}_before"])
        numbers[f"{name}_pairs"] = float(m.get("pairs", 0) or 0)
        numbers[f"{name}_distill"] = float(m.get("distill", 0) or 0)
        if "teacher_pass@1" in m:
            numbers["teacher_pass@1"] = float(m["teacher_pass@1"])
    for k in s.ks:
        numbers[f"akd_minus_plain_pass@{k}"] = numbers[f"akd_pass@{k}"] - numbers[f"plain_pass@{k}"]
    return SeedResult(numbers, note=f"pair: {pair(ctx)[2]} on {PROBLEMS}")


ROW = ClaimRow(
    key="akd", paper="AKD: adversarial knowledge distillation for code (SPEC §7)",
    claim="AKD raises the student's pass@k over plain distillation at equal teacher calls",
    tests=(ClaimTest("akd_minus_plain_pass@1", "greater", "AKD − plain distillation, held-out pass@1"),),
    measure=measure, untestable=untestable,
    extra_keys=("before_pass@1", "teacher_pass@1", "akd_pass@1", "plain_pass@1", "akd_minus_plain_pass@5", "akd_pairs", "plain_distill",
                "akd_distill"),
    setup="teacher: the built-in teacher (5.5M) → student: the built-in student (1M); the digit-constant code "
          "exercises (testbed:hard: add_3, 'return x plus 3'; never in the corpus; every 5th held out); 6 rounds × 16 exercises × 4 samples "
          "each side (quick 1 × 4 × 2); plain = no pairs, uniform curriculum; pass@k with n = 10 on the held-out "
          "problems (quick n = 2 on 3)",
)
