"""Where AKD's exercises come from: a pool of skills, each able to write a fresh exercise.

`FreshTestsProposer` takes one-argument exercises with reference solutions (the built-in
exercise families × parameters, from `alignlab.resolve.code_problems`) and, for every draw,
writes new tests: fresh random inputs (ints in [−99, 99], strings of 1–8 letters) with the
expected values of the exercise's reference function. The reference is the built-in
generator's own one-line solution, executed here in-process: it is trusted code that we wrote,
never model output (model output only runs in the sandbox). `FixedProposer` serves
the problems of a HumanEval-format file as they are (their tests cannot be regenerated).
"""

from __future__ import annotations

import random
import re
from collections.abc import Callable, Sequence
from typing import Any, Protocol

from alignlab.errors import DataError
from alignlab.eval.pass_at_k import Problem

_SIGNATURE = re.compile(r"def\s+(\w+)\((\w+)\)")
LETTERS = "abcdefghijklmnopqrstuvwxyz"


class Proposer(Protocol):
    """A skill pool that writes an exercise (a `Problem` with tests) for a drawn skill."""

    @property
    def skills(self) -> list[str]: ...

    def propose(self, skill: str, rng: random.Random, tag: str) -> Problem: ...


def _reference(problem: Problem) -> Callable[[Any], Any]:
    namespace: dict[str, Any] = {}
    exec(compile(problem.prompt + problem.canonical_solution, problem.task_id, "exec"), namespace)  # noqa: S102
    return namespace[problem.entry_point]


class FreshTestsProposer:
    """Built-in skills with fresh test inputs per draw; expected values from the trusted reference."""

    def __init__(self, problems: Sequence[Problem], n_tests: int = 3):
        if not problems or n_tests < 1:
            raise ValueError("FreshTestsProposer needs problems and n_tests >= 1")
        self._problems = {p.task_id: p for p in problems}
        self._refs, self._kinds = {}, {}
        for p in problems:
            m = _SIGNATURE.search(p.prompt)
            if m is None or not p.canonical_solution:
                raise DataError(f"{p.task_id}: not a one-argument exercise with a reference solution")
            self._kinds[p.task_id] = "str" if m.group(2) == "s" else "int"
            self._refs[p.task_id] = _reference(p)
        self.n_tests = n_tests

    @property
    def skills(self) -> list[str]:
        return sorted(self._problems)

    def fresh_input(self, skill: str, rng: random.Random) -> Any:
        if self._kinds[skill] == "int":
            return rng.randint(-99, 99)
        return "".join(rng.choice(LETTERS) for _ in range(rng.randint(1, 8)))

    def propose(self, skill: str, rng: random.Random, tag: str) -> Problem:
        """A new exercise `skill#tag`: the skill's prompt with `n_tests` fresh asserts."""
        base, ref = self._problems[skill], self._refs[skill]
        inputs: list[Any] = []
        for _ in range(20 * self.n_tests):  # distinct inputs where possible
            v = self.fresh_input(skill, rng)
            if v not in inputs:
                inputs.append(v)
            if len(inputs) == self.n_tests:
                break
        asserts = "\n".join(f"    assert candidate({v!r}) == {ref(v)!r}" for v in inputs)
        return Problem(f"{skill}#{tag}", base.prompt, base.entry_point,
                       f"def check(candidate):\n{asserts}\n", base.canonical_solution)


class FixedProposer:
    """Problems of a HumanEval-format file, served unchanged (one skill each)."""

    def __init__(self, problems: Sequence[Problem]):
        if not problems:
            raise ValueError("FixedProposer needs problems")
        self._problems = {p.task_id: p for p in problems}

    @property
    def skills(self) -> list[str]:
        return sorted(self._problems)

    def propose(self, skill: str, rng: random.Random, tag: str) -> Problem:
        """The file's problem itself (tag and rng unused: its tests are fixed)."""
        return self._problems[skill]
