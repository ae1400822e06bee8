"""pass@k: the unbiased estimator against hand values and the naive formula; HumanEval loading
(the real file when present) and its canonical solutions through the sandbox."""

from __future__ import annotations

import gzip
import json
from math import comb

import pytest

from alignlab.errors import DataError
from alignlab.eval.pass_at_k import (
    Problem,
    load_humaneval,
    mean_pass_at_k,
    pass_at_k,
    score_completions,
    truncate_completion,
)
from alignlab.eval.sandbox import SandboxLimits, run_programs


def test_pass_at_k_hand_values():
    assert pass_at_k(5, 2, 1) == pytest.approx(0.4)
    assert pass_at_k(10, 0, 5) == 0.0
    assert pass_at_k(5, 5, 5) == 1.0
    assert pass_at_k(5, 2, 4) == 1.0  # k >= n - c + 1: every k-subset holds a pass
    assert pass_at_k(4, 1, 2) == pytest.approx(0.5)  # 1 - C(3,2)/C(4,2) = 1 - 3/6


def test_pass_at_k_matches_the_naive_formula_on_a_grid():
    for n in range(1, 21):
        for c in range(n + 1):
            for k in range(1, n + 1):
                naive = 1.0 - comb(n - c, k) / comb(n, k)
                assert pass_at_k(n, c, k) == pytest.approx(naive, abs=1e-12), (n, c, k)


def test_pass_at_k_is_stable_for_large_n():
    v = pass_at_k(2000, 3, 100)
    assert 0 < v < 1 and v == pytest.approx(1 - comb(1997, 100) / comb(2000, 100), rel=1e-9)


def test_pass_at_k_rejects_bad_input():
    for n, c, k in [(0, 0, 1), (5, 6, 1), (5, -1, 1), (5, 2, 0), (3, 1, 4)]:
        with pytest.raises(ValueError):
            pass_at_k(n, c, k)


def test_mean_pass_at_k():
    out = mean_pass_at_k({"a": [True, False, False, False, False], "b": [True] * 5}, [1, 5])
    assert out["pass@1"] == pytest.approx((0.2 + 1.0) / 2)
    assert out["pass@5"] == pytest.approx(1.0)
    assert mean_pass_at_k([[False, False]], [1]) == {"pass@1": 0.0}


def test_truncate_completion_stops_at_a_new_top_level_statement():
    text = "\n    return x + 1\n\ndef other():\n    pass\n"
    assert truncate_completion(text) == "\n    return x + 1\n"
    assert truncate_completion("\n    y = 2\n    return y\nif __name__ == '__main__':\n") == "\n    y = 2\n    return y"
    assert truncate_completion("\n    return 1\n") == "\n    return 1\n"


def test_real_humaneval_loads_and_canonical_solutions_pass(shared_data):
    path = shared_data / "code" / "HumanEval.jsonl.gz"
    if not path.exists():
        pytest.skip(f"{path} not present")
    problems = load_humaneval(path)
    assert len(problems) == 164 and problems[0].task_id == "HumanEval/0"
    some = [problems[i] for i in (0, 2, 12, 35, 53, 100)]
    res = run_programs([p.reference_program() for p in some], SandboxLimits(timeout_s=10.0))
    assert all(r.passed for r in res), [(p.task_id, r.status, r.stderr[-300:]) for p, r in zip(some, res)]
    wrong = run_programs([some[0].program("\n    return None\n")], SandboxLimits(timeout_s=10.0))
    assert wrong[0].status == "failed"


def test_testbed_problems_score_through_the_sandbox(world):
    problems = [Problem.from_dict(e.as_humaneval(), e.task_id) for e in world.heldout_code[:2]]
    good = ["\n" + p.canonical_solution for p in problems]  # continues the stripped prompt
    res = score_completions(problems, [[good[0], "\n    return None\n"], [good[1], good[1]]], [1, 2])
    assert [r["c"] for r in res.per_problem] == [1, 2]
    assert res.means["pass@1"] == pytest.approx((0.5 + 1.0) / 2) and res.means["pass@2"] == 1.0
    assert len(res.samples) == 4 and res.samples[1]["status"] == "failed"


def _write(path, rows):
    text = "".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows)
    if path.suffix == ".gz":
        with gzip.open(path, "wt") as f:
            f.write(text)
    else:
        path.write_text(text)


ROW = {"task_id": "T/0", "prompt": "def f(x):\n", "entry_point": "f",
       "test": "def check(candidate):\n    assert candidate(1) == 1\n", "canonical_solution": "    return x\n"}


@pytest.mark.parametrize("name", ["p.jsonl", "p.jsonl.gz"])
def test_a_corrupted_row_errors_with_its_line(tmp_path, name):
    path = tmp_path / name
    _write(path, [ROW, {**ROW, "task_id": "T/1"}, {k: v for k, v in ROW.items() if k != "test"}])
    with pytest.raises(DataError, match=rf"{name}:3: missing field 'test'"):
        load_humaneval(path)
    _write(path, [ROW, "{not json"])
    with pytest.raises(DataError, match=rf"{name}:2: not valid JSON"):
        load_humaneval(path)
    _write(path, [ROW, {**ROW, "entry_point": "not an id"}])
    with pytest.raises(DataError, match=rf"{name}:2: entry_point"):
        load_humaneval(path)
    _write(path, [ROW, ROW])
    with pytest.raises(DataError, match=rf"{name}:2: duplicate task_id"):
        load_humaneval(path)
    _write(path, [ROW, {**ROW, "task_id": "T/1"}])
    assert [p.task_id for p in load_humaneval(path)] == ["T/0", "T/1"]
