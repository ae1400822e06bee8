"""Tiny programming exercises with tests, in HumanEval's format (prompt/entry_point/test)."""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

NUMBER_WORDS = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]


@dataclass(frozen=True)
class CodeExercise:
    """One problem: the prompt (signature + docstring), a reference solution, tests."""

    task_id: str
    prompt: str
    solution: str
    entry_point: str
    test: str

    def as_humaneval(self) -> dict[str, str]:
        return {
            "task_id": self.task_id,
            "prompt": self.prompt,
            "entry_point": self.entry_point,
            "canonical_solution": self.solution,
            "test": self.test,
        }


# (name template, docstring template, body template, reference, argument kind)
_FAMILIES: list[tuple[str, str, str, Callable[..., Any], str]] = [
    ("add_{w}", "return x plus {w}", "return x + {k}", lambda x, k: x + k, "int"),
    ("sub_{w}", "return x minus {w}", "return x - {k}", lambda x, k: x - k, "int"),
    ("times_{w}", "return x times {w}", "return x * {k}", lambda x, k: x * k, "int"),
    ("mod_{w}", "return x modulo {w}", "return x % {k}", lambda x, k: x % k, "int"),
    ("is_div_{w}", "return true if x is divisible by {w}", "return x % {k} == 0", lambda x, k: x % k == 0, "int"),
    ("is_big_{w}", "return true if x is bigger than {w}", "return x > {k}", lambda x, k: x > k, "int"),
    ("repeat_{w}", "return s repeated {w} times", "return s * {k}", lambda s, k: s * k, "str"),
    ("first_{w}", "return the first {w} letters of s", "return s[:{k}]", lambda s, k: s[:k], "str"),
]


def _exercise(prefix: str, family: tuple, k: int, w: str, rng: random.Random) -> CodeExercise:
    """Family `family` at parameter k, named and documented with `w`; three asserts from the reference."""
    name_t, doc_t, body_t, ref, kind = family
    name = name_t.format(w=w)
    arg = "x" if kind == "int" else "s"
    prompt = f'def {name}({arg}):\n    """{doc_t.format(w=w)}"""\n'
    solution = f"    {body_t.format(k=k)}\n"
    if kind == "int":
        inputs: list[Any] = [rng.randint(-20, 40) for _ in range(3)]
    else:
        inputs = ["".join(rng.choice("abcdefgh") for _ in range(rng.randint(2, 6))) for _ in range(3)]
    asserts = "\n".join(f"    assert candidate({v!r}) == {ref(v, k)!r}" for v in inputs)
    test = f"def check(candidate):\n{asserts}\n"
    return CodeExercise(f"{prefix}/{name}", prompt, solution, name, test)


def make_exercises(rng: random.Random) -> list[CodeExercise]:
    """Every (family, k) exercise, with three asserts from the reference function (they feed the corpus)."""
    return [_exercise("testbed", fam, k, NUMBER_WORDS[k], rng) for fam in _FAMILIES for k in range(1, 10)]


def make_digit_exercises(rng: random.Random) -> list[CodeExercise]:
    """The same families with the constant written as a digit (`add_3`, "return x plus 3"), never
    in the corpus: harder, since the models learnt the constant from its word (the teacher copes
    better than the student: teacher/student pass@1 ≈ 0.32 / 0.08)."""
    return [_exercise("testbed-digits", fam, k, str(k), rng) for fam in _FAMILIES for k in range(1, 10)]


def heldout_split(exercises: list[CodeExercise], every: int = 5) -> tuple[list[CodeExercise], list[CodeExercise]]:
    """(train, held-out): every `every`-th exercise (index 0, every, 2·every, …) is held out."""
    return ([e for i, e in enumerate(exercises) if i % every != 0],
            [e for i, e in enumerate(exercises) if i % every == 0])
