"""pass@k on HumanEval-format problems (SPEC §7, §8): the estimator, loading, sampling, scoring.

`pass_at_k` is the unbiased estimator of Chen et al. (2021), 1 − C(n−c, k)/C(n, k), computed as
the product 1 − ∏_{i=n−c+1}^{n} (1 − k/i), which never forms huge binomials. Problems are rows
with `task_id, prompt, entry_point, test` (`canonical_solution` optional). Completions are
sampled from the prompt with trailing whitespace removed (as bigcode-evaluation-harness does: a
prompt ending in "\\n" tokenizes differently from the same text followed by an indented line),
cut at the first new top-level statement, and run against the tests in the sandbox.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from alignlab.data.jsonl import iter_jsonl
from alignlab.errors import DataError
from alignlab.eval.sandbox import Program, SandboxLimits, SandboxResult, run_programs

FIELDS = ("task_id", "prompt", "entry_point", "test")
# A completion ends where a new top-level statement starts (the HumanEval / Codex convention).
STOP_SEQUENCES = ("\ndef ", "\nclass ", "\nif __name__", "\nprint(", "\nassert ", "\n#")


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased pass@k from n samples of which c pass: 1 − C(n−c, k)/C(n, k), stable product form."""
    if n < 1 or k < 1 or not 0 <= c <= n:
        raise ValueError(f"pass@k needs n >= 1, k >= 1 and 0 <= c <= n; got n={n}, c={c}, k={k}")
    if k > n:
        raise ValueError(f"pass@{k} needs at least {k} samples per problem, got n={n}")
    if n - c < k:
        return 1.0
    prod = 1.0
    for i in range(n - c + 1, n + 1):
        prod *= 1.0 - k / i
    return 1.0 - prod


def mean_pass_at_k(results_per_problem: Sequence[Sequence[bool]] | Mapping[str, Sequence[bool]],
                   ks: Sequence[int]) -> dict[str, float]:
    """{"pass@k": mean over problems} from each problem's pass/fail list (n may differ per problem)."""
    rows = list(results_per_problem.values()) if isinstance(results_per_problem, Mapping) else list(results_per_problem)
    if not rows:
        raise ValueError("mean_pass_at_k: no problems")
    out = {}
    for k in ks:
        vals = [pass_at_k(len(r), sum(bool(x) for x in r), k) for r in rows]
        out[f"pass@{k}"] = sum(vals) / len(vals)
    return out


@dataclass(frozen=True)
class Problem:
    """One HumanEval-format problem."""

    task_id: str
    prompt: str
    entry_point: str
    test: str
    canonical_solution: str = ""

    @classmethod
    def from_dict(cls, row: Mapping[str, Any], where: str = "problem") -> Problem:
        """Validate the four required fields (non-empty strings, entry_point an identifier, a `check`)."""
        for key in FIELDS:
            if key not in row:
                raise DataError(f"{where}: missing field '{key}' (HumanEval rows need {', '.join(FIELDS)})")
            if not isinstance(row[key], str) or not row[key].strip():
                raise DataError(f"{where}: field '{key}' must be a non-empty string, got {row[key]!r:.60}")
        if not row["entry_point"].isidentifier():
            raise DataError(f"{where}: entry_point {row['entry_point']!r} is not a Python identifier")
        if "def check(" not in row["test"]:
            raise DataError(f"{where}: field 'test' defines no check(candidate) function")
        sol = row.get("canonical_solution", "")
        if not isinstance(sol, str):
            raise DataError(f"{where}: field 'canonical_solution' must be a string")
        return cls(row["task_id"], row["prompt"], row["entry_point"], row["test"], sol)

    def as_dict(self) -> dict[str, str]:
        return {"task_id": self.task_id, "prompt": self.prompt, "entry_point": self.entry_point,
                "test": self.test, "canonical_solution": self.canonical_solution}

    @property
    def generation_prompt(self) -> str:
        """What the model continues: the prompt without trailing whitespace."""
        return self.prompt.rstrip()

    def program(self, completion: str) -> Program:
        """The program that checks a sampled completion (continuing `generation_prompt`)."""
        return Program(self.generation_prompt, completion, self.test, self.entry_point)

    def reference_program(self) -> Program:
        """The program that checks the canonical solution (which continues the full prompt)."""
        return Program(self.prompt, self.canonical_solution, self.test, self.entry_point)


def load_humaneval(path: str | Path) -> list[Problem]:
    """Problems of a HumanEval-format .jsonl / .jsonl.gz file; a bad row is an error naming file:line."""
    p = Path(path)
    problems: list[Problem] = []
    seen: dict[str, str] = {}
    try:
        for where, row in iter_jsonl(p, "problems file"):
            prob = Problem.from_dict(row, where)
            if prob.task_id in seen:
                raise DataError(f"{where}: duplicate task_id {prob.task_id!r} (first at {seen[prob.task_id]})")
            seen[prob.task_id] = where
            problems.append(prob)
    except (OSError, EOFError, UnicodeDecodeError) as e:
        raise DataError(f"{p}: cannot read ({e})") from e
    if not problems:
        raise DataError(f"{p}: no problems")
    return problems


def truncate_completion(text: str, stops: Sequence[str] = STOP_SEQUENCES) -> str:
    """Cut a sampled completion at the first new top-level statement."""
    cut = min((i for i in (text.find(s) for s in stops) if i >= 0), default=len(text))
    return text[:cut]


def sample_completions(model: torch.nn.Module, tokenizer, problems: Sequence[Problem], n: int,
                       max_new_tokens: int = 64, temperature: float = 0.8, top_p: float = 0.95,
                       batch_size: int = 64, generator: torch.Generator | None = None) -> list[list[str]]:
    """n truncated completions per problem (`alignlab.generation.sample`, stopping at EOS)."""
    from alignlab.generation import sample

    prompts = [p.generation_prompt for p in problems for _ in range(n)]
    s = sample(model, tokenizer, prompts, max_new_tokens=max_new_tokens, temperature=temperature, top_p=top_p,
               batch_size=batch_size, generator=generator)
    texts = [truncate_completion(t) for t in s.texts]
    return [texts[i * n:(i + 1) * n] for i in range(len(problems))]


@dataclass
class PassAtKResult:
    """Mean pass@k, per-problem counts and every sample with its sandbox result."""

    means: dict[str, float]
    per_problem: list[dict[str, Any]] = field(default_factory=list)
    samples: list[dict[str, Any]] = field(default_factory=list)


def score_completions(problems: Sequence[Problem], completions: Sequence[Sequence[str]], ks: Sequence[int],
                      limits: SandboxLimits | None = None, workers: int = 2) -> PassAtKResult:
    """Run every completion against its problem's tests and compute pass@k."""
    programs = [p.program(c) for p, cs in zip(problems, completions) for c in cs]
    results: list[SandboxResult] = run_programs(programs, limits, workers)
    per_problem, samples, flags = [], [], []
    pos = 0
    for p, cs in zip(problems, completions):
        res = results[pos:pos + len(cs)]
        pos += len(cs)
        ok = [r.passed for r in res]
        flags.append(ok)
        row: dict[str, Any] = {"task_id": p.task_id, "n": len(ok), "c": sum(ok)}
        row.update({f"pass@{k}": pass_at_k(len(ok), sum(ok), k) for k in ks})
        per_problem.append(row)
        samples += [{"task_id": p.task_id, "completion": c, "passed": r.passed, "status": r.status,
                     "reason": r.reason} for c, r in zip(cs, res)]
    return PassAtKResult(mean_pass_at_k(flags, ks), per_problem, samples)


def evaluate_pass_at_k(model: torch.nn.Module, tokenizer, problems: Sequence[Problem], n: int,
                       ks: Sequence[int] = (1,), max_new_tokens: int = 64, temperature: float = 0.8,
                       top_p: float = 0.95, batch_size: int = 64, seed: int = 0,
                       limits: SandboxLimits | None = None, workers: int = 2) -> PassAtKResult:
    """Sample n completions per problem and return per-problem and mean pass@k (k <= n)."""
    if not problems:
        raise ValueError("evaluate_pass_at_k: no problems")
    if any(k > n for k in ks):
        raise ValueError(f"pass@k needs n >= k: n={n}, ks={list(ks)}")
    g = torch.Generator().manual_seed(seed)
    completions = sample_completions(model, tokenizer, problems, n, max_new_tokens, temperature, top_p,
                                     batch_size, g)
    return score_completions(problems, completions, ks, limits, workers)
