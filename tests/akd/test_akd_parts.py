"""AKD parts: the proposer writes fresh, correct tests and never offers held-out skills; pairs are
only (passing teacher ≻ failing student); the loss is preference loss + λ·NLL; batches cover all;
round means from the trainer's step metrics are exact."""

from __future__ import annotations

import random

import pytest
import torch

from alignlab.akd.data import Attempt, RoundBuffer, build_round_buffer, select_training_data
from alignlab.akd.loss import akd_loss, akd_loss_fn, round_means, sequence_nll, step_sizes
from alignlab.akd.proposer import FixedProposer, FreshTestsProposer
from alignlab.eval.pass_at_k import Problem
from alignlab.eval.sandbox import run_programs
from alignlab.losses.preference import preference_loss
from alignlab.method_settings import PreferenceLossSettings
from alignlab.scoring import PairLogps, pair_response_logprobs, response_logprobs
from alignlab.train.online import to_device


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
    pol, ref, nll = PairLogps(*torch.randn(2, 3)), PairLogps(*torch.randn(2, 3)), torch.rand(4)
    for name in ("dpo", "ipo", "cal_dpo"):
        for reduction in ("example", "batch_mean"):
            settings = PreferenceLossSettings(name, 0.1, 0.7, reduction)
            loss, m = akd_loss(pol, ref, nll, settings, 0.5)
            pref, _ = preference_loss(name, pol.chosen, pol.rejected, ref.chosen, ref.rejected, 0.1, 0.7, reduction)
            assert float(loss) == pytest.approx(float(pref + 0.5 * nll.mean()), rel=1e-6)
            assert {"chosen_reward", "rejected_reward", "margin", "accuracy", "pref_loss", "distill_nll"} <= set(m)
    # Cal-DPO without calibration is −log σ(h_w − h_l): the settings reach the loss
    plain, _ = akd_loss(pol, ref, None, PreferenceLossSettings("cal_dpo", 0.1, 0.0), 1.0)
    h = (pol.chosen - ref.chosen) - (pol.rejected - ref.rejected)
    assert float(plain) == pytest.approx(float(-torch.nn.functional.logsigmoid(h).mean()), rel=1e-6)
    only_d, m = akd_loss(None, None, nll, PreferenceLossSettings(), 2.0)
    assert float(only_d) == pytest.approx(2.0 * float(nll.mean())) and "pref_loss" not in m
    with pytest.raises(ValueError):
        akd_loss(None, None, None, PreferenceLossSettings(), 1.0)
    with pytest.raises(ValueError, match="shape"):
        akd_loss(pol, PairLogps(torch.zeros(2), torch.zeros(2)), None, PreferenceLossSettings(), 1.0)
    lp, mask = torch.tensor([[-1.0, -3.0, -7.0]]), torch.tensor([[1.0, 1.0, 0.0]])
    assert sequence_nll(lp, mask).tolist() == [2.0]


def _buffer(tok, n=5, role_pass=("teacher",)):
    atts = [_att(f"t{i}#1", role, f"\n    return {i} + {role[0]!r}\n", role in role_pass, 0)
            for i in range(n) for role in ("teacher", "student")]
    pairs, distill = select_training_data(atts, 4, 1)
    return atts, pairs, build_round_buffer(tok, atts, pairs, distill)


def test_round_buffer_lays_pairs_out_chosen_then_rejected_and_an_epoch_covers_every_item_once(tiny):
    _, tok = tiny
    atts, pairs, buf = _buffer(tok)
    assert (buf.n_pairs, buf.n_distill, len(buf)) == (5, 5, 10) and len(buf.pairs) == 10
    eos = tok.eos_token_id
    for i, (t, s) in enumerate(pairs):  # row i: pair i's chosen (teacher); row 5 + i: its rejected (student)
        for row, a in ((i, atts[t]), (5 + i, atts[s])):
            ids = buf.pairs.response_ids[row][buf.pairs.response_mask[row].bool()].tolist()
            assert ids == tok(a.completion, add_special_tokens=False)["input_ids"] + [eos]
    buf.ref = PairLogps(torch.arange(5.0), -torch.arange(5.0))
    micro = buf.micro_batches(4, torch.Generator().manual_seed(0))
    assert len(micro) == 3 == buf.micro_batch_count(4)  # ceil(10 / 4)
    for bs in range(1, 12):  # bs < 2: more chunks than pairs, so empty micro-batches are dropped
        assert len(buf.micro_batches(bs, torch.Generator().manual_seed(bs))) == buf.micro_batch_count(bs), bs
    assert sum(len(m["pairs"]) // 2 for m in micro if "pairs" in m) == 5
    assert sum(len(m["distill"]) for m in micro if "distill" in m) == 5
    assert sorted(float(v) for m in micro if "ref" in m for v in m["ref"].chosen) == [0.0, 1.0, 2.0, 3.0, 4.0]
    for m in micro:  # a micro-batch's pairs keep the layout, and their reference matches their rows
        k = len(m["ref"])
        assert len(m["pairs"]) == 2 * k and torch.equal(m["ref"].rejected, -m["ref"].chosen)
        for j, c in enumerate(m["ref"].chosen.long().tolist()):
            want = buf.pairs.select(torch.tensor([c, 5 + c]))
            r = want.response_ids.shape[1]
            assert torch.equal(m["pairs"].response_ids[[j, k + j], :r], want.response_ids)
    assert all(int(r[m.sum().long() - 1]) == eos for r, m in zip(buf.distill.response_ids, buf.distill.response_mask))
    assert RoundBuffer(None, None).n_pairs == 0 and RoundBuffer(None, None).micro_batches(4, torch.Generator()) == []


def test_loss_fn_sums_give_exact_round_means_with_uneven_accumulation(tiny):
    model, tok = tiny
    _, _, buf = _buffer(tok)
    buf.ref = PairLogps(torch.zeros(5), torch.zeros(5))
    settings = PreferenceLossSettings("dpo", 0.1)
    loss_fn = akd_loss_fn(settings, 0.5)
    micro = buf.micro_batches(3, torch.Generator().manual_seed(1))  # ceil(10 / 3) = 4 micro-batches
    assert len(micro) == 4 == buf.micro_batch_count(3) and step_sizes([4], 3) == [3, 1]
    with torch.no_grad():
        per_micro = [loss_fn(model, to_device(m, "cpu")) for m in micro]
        # the trainer's step metrics: per-key mean over its micro-batches (grad_accum 3 → steps of 3 and 1)
        steps = []
        for group in (per_micro[:3], per_micro[3:]):
            steps.append({k: sum(float(v[1][k]) for v in group) / len(group) for k in group[0][1]}
                         | {"loss": sum(float(v[0]) for v in group) / len(group), "grad_norm": 1.0})
        means = round_means(steps, [3, 1])
        pol = pair_response_logprobs(model, buf.pairs)
        want_pref, want_m = preference_loss("dpo", pol.chosen.sum(-1), pol.rejected.sum(-1), torch.zeros(5),
                                            torch.zeros(5), 0.1)
        nll = sequence_nll(response_logprobs(model, buf.distill), buf.distill.response_mask)
    assert means["pref_loss"] == pytest.approx(float(want_pref), rel=1e-5)  # mean over all 5 pairs
    assert means["margin"] == pytest.approx(float(want_m["margin"]), rel=1e-5)
    assert means["distill_nll"] == pytest.approx(float(nll.mean()), rel=1e-5)
    assert means["loss"] == pytest.approx(sum(float(v[0]) for v in per_micro) / 4, rel=1e-6)
    assert means["grad_norm"] == 1.0 and round_means([], []) == {}
