"""The harder built-in code family (`testbed:hard`, digit constants): deterministic, its solutions
pass their own tests (in-process for all, in the sandbox for one per family), disjoint from the
plain exercises and split train / held-out without overlap; the plain exercises, which feed the
pretraining corpus, are unchanged; the AKD claims row runs teacher → student on it."""

from __future__ import annotations

import hashlib
import json
import random
from pathlib import Path

from alignlab import resolve
from alignlab.akd.proposer import FreshTestsProposer
from alignlab.claims.row import RowContext
from alignlab.claims.rows import akd as akd_row
from alignlab.eval.pass_at_k import Problem
from alignlab.eval.sandbox import run_programs
from alignlab.testbed.code import heldout_split, make_digit_exercises, make_exercises

# sha256 of make_exercises(Random(3)) as HumanEval rows, taken before the hard family was added:
# a change here changes the corpus (and so every cached testbed model).
PLAIN_SHA = "22c18db77918c01f5bbf147ed20bc7585e45bd7d55aca991921ad654b3dc63fa"


def _sha(exercises) -> str:
    return hashlib.sha256(json.dumps([e.as_humaneval() for e in exercises]).encode()).hexdigest()


def _passes(e, body: str) -> bool:
    """Run trusted code (a reference solution we wrote) against the exercise's tests in-process."""
    ns: dict = {}
    exec(e.prompt + body + "\n" + e.test, ns)  # noqa: S102
    try:
        ns["check"](ns[e.entry_point])
    except AssertionError:
        return False
    return True


def test_plain_exercises_are_byte_identical():
    assert _sha(make_exercises(random.Random(3))) == PLAIN_SHA


def test_digit_family_is_deterministic_and_written_with_digits():
    a, b = make_digit_exercises(random.Random(3)), make_digit_exercises(random.Random(3))
    assert _sha(a) == _sha(b) and len(a) == 72
    assert _sha(make_digit_exercises(random.Random(4))) != _sha(a)  # the rng draws the test inputs
    by_id = {e.task_id: e for e in a}
    add3, first4 = by_id["testbed-digits/add_3"], by_id["testbed-digits/first_4"]
    assert add3.prompt == 'def add_3(x):\n    """return x plus 3"""\n' and add3.solution == "    return x + 3\n"
    assert first4.prompt == 'def first_4(s):\n    """return the first 4 letters of s"""\n'
    assert not {e.task_id for e in a} & {e.task_id for e in make_exercises(random.Random(3))}


def test_digit_solutions_pass_their_tests_and_wrong_ones_fail():
    ex = make_digit_exercises(random.Random(3))
    assert all(_passes(e, e.solution) for e in ex)
    off_by_one = [e for e in ex if e.entry_point.startswith("add_")]
    assert not any(_passes(e, e.solution.replace("+", "+ 1 +")) for e in off_by_one)
    one_per_family = [Problem.from_dict(e.as_humaneval(), e.task_id) for e in ex[::9]]
    results = run_programs([p.reference_program() for p in one_per_family])
    assert len(results) == 8 and all(r.passed for r in results)


def test_heldout_split_every_fifth_disjoint():
    ex = make_digit_exercises(random.Random(3))
    train, held = heldout_split(ex)
    assert held == ex[::5] and len(train) + len(held) == len(ex)
    assert not {e.task_id for e in train} & {e.task_id for e in held}


def test_resolver_serves_the_hard_split_with_fresh_tests():
    hard = resolve.code_problems("testbed:hard")
    assert hard.fresh_tests and (len(hard.train), len(hard.held)) == (57, 15)
    assert [p.task_id for p in hard.held] == [e.task_id for e in make_digit_exercises(random.Random(3))[::5]]
    assert not {p.task_id for p in hard.train} & {p.task_id for p in hard.held}
    plain = resolve.code_problems("testbed")
    assert not {p.task_id for p in hard.train + hard.held} & {p.task_id for p in plain.train + plain.held}
    prop = FreshTestsProposer(hard.train, n_tests=3)
    p = prop.propose("testbed-digits/sub_8", random.Random(0), "a")
    assert p.test.count("assert candidate(") == 3 and run_programs([p.reference_program()])[0].passed


def test_akd_rows_pair_student_tiny_on_plain_and_teacher_student_on_the_hard_family(tmp_path: Path):
    from alignlab.claims.rows import akd_teacher

    ctx = RowContext(tmp_path, quick=True, models={"teacher": "T", "student": "S", "tiny": "t"})
    for plain in (False, True):
        cfg = akd_row.config(ctx, 0, plain, akd_row.TEACHER_STUDENT)
        assert (cfg.teacher.name_or_path, cfg.student.name_or_path, cfg.problems) == ("T", "S", "testbed:hard")
        assert cfg.max_pairs_per_exercise == (0 if plain else 4)
        cfg = akd_row.config(ctx, 0, plain)
        assert (cfg.teacher.name_or_path, cfg.student.name_or_path, cfg.problems) == ("S", "t", "testbed")
    assert (akd_row.ROW.key, akd_teacher.ROW.key) == ("akd", "akd_teacher")
    assert "teacher → student" in akd_teacher.ROW.claim and "student → tiny" in akd_row.ROW.claim
    assert akd_row.untestable([{"before_pass@1": 0.95}] * 3) and not akd_row.untestable([{"before_pass@1": 0.08}] * 3)
