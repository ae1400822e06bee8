"""AKD parts: the proposer writes fresh, correct tests and never offers held-out skills; pairs are
only (passing teacher ≻ failing student); the loss is preference loss + λ·NLL; batches cover all."""

from __future__ import annotations

import random

import pytest
import torch

from alignlab.akd.data import Attempt, RoundData, build_round_data, select_training_data
from alignlab.akd.loss import akd_loss, sequence_nll
from alignlab.akd.proposer import FixedProposer, FreshTestsProposer
from alignlab.eval.pass_at_k import Problem
from alignlab.eval.sandbox import run_programs
from alignlab.losses.preference import preference_loss


def _problems(exercises):
    return [Problem.from_dict(e.as_humaneval(), e.task_id) for e in exercises]


def test_testbed_proposer_writes_fresh_tests_the_reference_passes(world):
    prop = FreshTestsProposer(_problems(world.train_code), n_tests=3)
    assert set(prop.skills) == {e.task_id for e in world.train_code}
    assert not set(prop.skills) & {e.task_id for e in world.heldout_code}
    rng = random.Random(0)
    skills = ["testbed/add_two", "testbed/first_four"]
    a = [prop.propose(s, rng, f"a{i}") for i, s in enumerate(skills)]
    b = [prop.propose(s, rng, f"b{i}") for i, s in enumerate(skills)]
    assert [p.task_id for p in a] == ["testbed/add_two#a0", "testbed/first_four#a1"]
    assert all(x.test != y.test and x.prompt == y.prompt for x, y in zip(a, b))
    assert all(p.test.count("assert candidate(") == 3 for p in a + b)
    good = run_programs([p.program("\n" + p.canonical_solution) for p in a + b])
    wrong = run_programs([p.program("\n    return None\n") for p in a])
    assert all(r.passed for r in good) and not any(r.passed for r in wrong)
    assert prop.propose(skills[0], random.Random(3), "t").test == prop.propose(skills[0], random.Random(3), "t").test


def test_fixed_proposer_serves_problems_unchanged(world):
    probs = _problems(world.train_code[:3])
    prop = FixedProposer(probs)
    assert prop.propose(probs[1].task_id, random.Random(0), "x") is probs[1]


def _att(task, role, completion, passed, i=0):
    return Attempt(1, task, task.split("#")[0], 0, role, i, "def f(x):", completion, passed,
                   "passed" if passed else "failed", "", 0.01)


def test_pairs_are_only_passing_teacher_over_failing_student():
    atts = [_att("a#1", "teacher", "\n    return x\n", True), _att("a#1", "teacher", "\n    return x\n", True, 1),
            _att("a#1", "teacher", "\n    return 0\n", False, 2), _att("a#1", "student", "\n    return 1\n", False),
            _att("a#1", "student", "\n    return 2\n", False, 1), _att("a#1", "student", "\n    return 1\n", False, 2),
            _att("a#1", "student", "\n    return x\n", True, 3),
            _att("b#1", "teacher", "\n    return 5\n", False), _att("b#1", "student", "\n    return 6\n", False),
            _att("c#1", "teacher", "\n    return x * 2\n", True), _att("c#1", "student", "\n    return x*2\n", True)]
    pairs, distill = select_training_data(atts, max_pairs_per_exercise=4, max_distill_per_exercise=2)
    assert pairs == [(0, 3), (0, 4)]  # duplicate student failure once; no teacher pass on b → no pair
    for t, s in pairs:
        assert atts[t].role == "teacher" and atts[t].passed and atts[s].role == "student" and not atts[s].passed
        assert atts[t].task_id == atts[s].task_id
    assert distill == [0, 9]  # distinct passing teacher solutions, also where the student passed
    assert atts[0].use == ["chosen", "chosen", "distill"] and atts[3].use == ["rejected"] and atts[1].use == []
    capped, _ = select_training_data([_att("a#1", "teacher", "t", True)] + [
        _att("a#1", "student", f"s{i}", False, i) for i in range(5)], 2, 1)
    assert len(capped) == 2


def test_akd_loss_is_preference_loss_plus_weighted_nll():
    torch.manual_seed(0)
    pol, ref, nll = torch.randn(3, 2), torch.randn(3, 2), torch.rand(4)
    for name in ("dpo", "ipo", "cal_dpo"):
        loss, m = akd_loss(pol, ref, nll, name, 0.1, 0.5)
        pref, _ = preference_loss(name, pol[:, 0], pol[:, 1], ref[:, 0], ref[:, 1], 0.1)
        assert float(loss) == pytest.approx(float(pref + 0.5 * nll.mean()), rel=1e-6)
        assert {"chosen_reward", "rejected_reward", "margin", "accuracy", "pref_loss", "distill_nll"} <= set(m)
    only_d, m = akd_loss(None, None, nll, "dpo", 0.1, 2.0)
    assert float(only_d) == pytest.approx(2.0 * float(nll.mean())) and "pref_loss" not in m
    with pytest.raises(ValueError):
        akd_loss(None, None, None, "dpo", 0.1, 1.0)
    lp, mask = torch.tensor([[-1.0, -3.0, -7.0]]), torch.tensor([[1.0, 1.0, 0.0]])
    assert sequence_nll(lp, mask).tolist() == [2.0]


def test_round_data_epoch_covers_every_item_once(tiny):
    _, tok = tiny
    atts = [_att(f"t{i}#1", role, f"\n    return {i} + {role[0]!r}\n", role == "teacher", 0)
            for i in range(5) for role in ("teacher", "student")]
    pairs, distill = select_training_data(atts, 4, 1)
    data = build_round_data(tok, atts, pairs, distill)
    assert (data.n_pairs, data.n_distill) == (5, 5)
    data.ref = torch.arange(10.0).view(5, 2)
    micro = data.micro_batches(4, torch.Generator().manual_seed(0))
    assert len(micro) == 3  # ceil(10 / 4)
    assert sum(len(m["pairs"]) // 2 for m in micro if "pairs" in m) == 5
    assert sum(len(m["distill"]) for m in micro if "distill" in m) == 5
    seen = sorted(float(v) for m in micro if "ref" in m for v in m["ref"][:, 0])
    assert seen == [0.0, 2.0, 4.0, 6.0, 8.0]
    eos = tok.eos_token_id
    assert all(int(r[m.sum().long() - 1]) == eos for r, m in zip(data.distill.response_ids, data.distill.response_mask))
    assert RoundData(None, None).n_pairs == 0
