"""One AKD round's attempts and the training buffer made from them.

Every attempt (a teacher or student completion of a proposed exercise) is kept with its sandbox
result. Per exercise, pairs are (passing teacher solution ≻ failing student solution) — never
anything else — and distinct passing teacher solutions are the distillation examples. The round's
`RoundBuffer` is what `Trainer.fit_online` trains on.
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import torch

from alignlab.akd.curriculum import SkillStats
from alignlab.eval.pass_at_k import Problem
from alignlab.eval.sandbox import SandboxLimits, run_programs
from alignlab.scoring import Packed, PairLogps, pack, pack_pairs, pair_rows


@dataclass
class Attempt:
    """One completion of one exercise by the teacher or the student, with its sandbox result."""

    round: int
    task_id: str
    skill: str
    bucket: int
    role: str  # teacher | student
    index: int  # sample number within (exercise, role)
    prompt: str  # the text the model continued
    completion: str
    passed: bool
    status: str
    reason: str
    seconds: float
    stderr: str = ""
    use: list[str] = field(default_factory=list)  # chosen | rejected | distill

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def run_attempts(round_no: int, problems: Sequence[Problem], skills: Sequence[tuple[str, int]],
                 completions: dict[str, list[list[str]]], limits: SandboxLimits,
                 workers: int = 2) -> tuple[list[Attempt], float]:
    """Sandbox every completion (both roles at once); (attempts, seconds)."""
    t0 = time.perf_counter()
    rows: list[tuple[str, int, int, str]] = []  # (role, problem idx, sample idx, completion)
    for role, per_problem in completions.items():
        for i, cs in enumerate(per_problem):
            rows += [(role, i, j, c) for j, c in enumerate(cs)]
    results = run_programs([problems[i].program(c) for _, i, _, c in rows], limits, workers)
    out = [Attempt(round_no, problems[i].task_id, skills[i][0], skills[i][1], role, j,
                   problems[i].generation_prompt, c, r.passed, r.status, r.reason, r.seconds, r.stderr[-500:])
           for (role, i, j, c), r in zip(rows, results)]
    return out, time.perf_counter() - t0


def update_stats(stats: SkillStats, attempts: Sequence[Attempt], memory: float) -> None:
    """Fold the student's attempts of this round into its per-skill pass rates."""
    per: dict[str, list[bool]] = {}
    for a in attempts:
        if a.role == "student":
            per.setdefault(a.skill, []).append(a.passed)
    for skill, ok in sorted(per.items()):
        stats.update(skill, sum(ok), len(ok), memory)


def role_rates(attempts: Sequence[Attempt]) -> dict[str, float]:
    """Pass rates on this round's exercises: per role, teacher exercises solved, student per bucket."""
    out: dict[str, float] = {}
    for role in ("teacher", "student"):
        mine = [a for a in attempts if a.role == role]
        if mine:
            out[f"{role}_pass_rate"] = sum(a.passed for a in mine) / len(mine)
    tasks = {a.task_id for a in attempts}
    solved = {a.task_id for a in attempts if a.role == "teacher" and a.passed}
    if any(a.role == "teacher" for a in attempts):
        out["teacher_solved"] = len(solved) / len(tasks)
    for b in sorted({a.bucket for a in attempts}):
        mine = [a for a in attempts if a.role == "student" and a.bucket == b]
        if mine:
            out[f"bucket{b}_student_pass"] = sum(a.passed for a in mine) / len(mine)
    return out


def select_training_data(attempts: Sequence[Attempt], max_pairs_per_exercise: int,
                         max_distill_per_exercise: int) -> tuple[list[tuple[int, int]], list[int]]:
    """(pairs as (teacher idx, student idx), distill idxs) into `attempts`; marks each attempt's `use`.

    Per exercise: distinct failing student completions are each paired with a distinct passing
    teacher completion (cycling the teachers' when fewer), up to `max_pairs_per_exercise`;
    the first `max_distill_per_exercise` distinct passing teacher completions are distilled.
    """
    by_task: dict[str, list[int]] = defaultdict(list)
    for i, a in enumerate(attempts):
        if a.role not in ("teacher", "student"):
            raise ValueError(f"attempt {i}: role must be teacher or student, got {a.role!r}")
        by_task[a.task_id].append(i)
    pairs: list[tuple[int, int]] = []
    distill: list[int] = []
    for task in sorted(by_task):
        idx = by_task[task]
        good = _distinct([i for i in idx if attempts[i].role == "teacher" and attempts[i].passed], attempts)
        bad = _distinct([i for i in idx if attempts[i].role == "student" and not attempts[i].passed], attempts)
        if good:
            for j, s in enumerate(bad[:max_pairs_per_exercise]):
                pairs.append((good[j % len(good)], s))
        distill += good[:max_distill_per_exercise]
    for t, s in pairs:
        attempts[t].use.append("chosen")
        attempts[s].use.append("rejected")
    for t in distill:
        attempts[t].use.append("distill")
    return pairs, distill


def _distinct(indices: list[int], attempts: Sequence[Attempt]) -> list[int]:
    seen: set[str] = set()
    out = []
    for i in indices:
        if attempts[i].completion not in seen:
            seen.add(attempts[i].completion)
            out.append(i)
    return out


def encode(tokenizer, prompt: str, completion: str) -> tuple[list[int], list[int]]:
    """(prompt ids, completion ids + EOS), tokenized apart as they were generated."""
    p = tokenizer(prompt, add_special_tokens=False)["input_ids"]
    c = tokenizer(completion, add_special_tokens=False)["input_ids"] if completion else []
    return p, c + [tokenizer.eos_token_id]


@dataclass
class RoundBuffer:
    """A round's training data as packed token ids: teacher ≻ student pairs in the `pack_pairs`
    layout (all chosen rows, then all rejected) and distillation examples. Items are numbered
    pairs first (0..P-1), then distillation examples (P..P+D-1)."""

    pairs: Packed | None
    distill: Packed | None
    ref: PairLogps | None = None  # summed log-probs of the pairs under the student at the round's start
    record: dict[str, Any] = field(default_factory=dict)  # what collecting the round measured

    @property
    def n_pairs(self) -> int:
        return 0 if self.pairs is None else len(self.pairs) // 2

    @property
    def n_distill(self) -> int:
        return 0 if self.distill is None else len(self.distill)

    def __len__(self) -> int:
        return self.n_pairs + self.n_distill

    def minibatch(self, rows: torch.Tensor) -> dict[str, Any]:
        """Items `rows` as one micro-batch: "pairs" (a `pack_pairs` Packed) with "ref" (their
        `PairLogps`), and/or "distill" (a Packed)."""
        p_rows, d_rows = rows[rows < self.n_pairs], rows[rows >= self.n_pairs] - self.n_pairs
        mb: dict[str, Any] = {}
        if len(p_rows):
            mb["pairs"] = self.pairs.select(pair_rows(p_rows, self.n_pairs))
            mb["ref"] = PairLogps(self.ref.chosen[p_rows], self.ref.rejected[p_rows])
        if len(d_rows):
            mb["distill"] = self.distill.select(d_rows)
        return mb

    def micro_batches(self, batch_size: int, generator: torch.Generator) -> list[dict[str, Any]]:
        """One epoch: ceil((P + D) / batch_size) micro-batches, each with its share of shuffled
        pairs and of shuffled distillation examples (so every step mixes both in proportion); empty
        micro-batches are dropped, so there are `micro_batch_count(batch_size)` of them."""
        n_micro = max(1, -(-len(self) // batch_size))
        pair_chunks = torch.randperm(self.n_pairs, generator=generator).tensor_split(n_micro)
        dist_chunks = torch.randperm(self.n_distill, generator=generator).tensor_split(n_micro)
        out = [self.minibatch(torch.cat([p, d + self.n_pairs]))
               for p, d in zip(pair_chunks, dist_chunks) if len(p) + len(d)]
        return out

    def micro_batch_count(self, batch_size: int) -> int:
        """Micro-batches in one epoch of `micro_batches`: the split into ceil(n / batch_size) chunks
        leaves min(chunks, P) pair chunks and min(chunks, D) distillation chunks non-empty."""
        return min(-(-len(self) // batch_size), max(self.n_pairs, self.n_distill))


def build_round_buffer(tokenizer, attempts: Sequence[Attempt], pairs: Sequence[tuple[int, int]],
                       distill: Sequence[int]) -> RoundBuffer:
    """Token ids of the selected pairs (chosen rows, then rejected) and distillation examples."""
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    packed_pairs = packed_distill = None
    if pairs:
        chosen = [encode(tokenizer, attempts[t].prompt, attempts[t].completion) for t, _ in pairs]
        rejected = [encode(tokenizer, attempts[s].prompt, attempts[s].completion)[1] for _, s in pairs]
        packed_pairs = pack_pairs([p for p, _ in chosen], [r for _, r in chosen], rejected, pad)
    if distill:
        enc = [encode(tokenizer, attempts[i].prompt, attempts[i].completion) for i in distill]
        packed_distill = pack([p for p, _ in enc], [r for _, r in enc], pad)
    return RoundBuffer(packed_pairs, packed_distill)
