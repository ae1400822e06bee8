"""MC1/MC2 and BBQ bias metrics against hand computation; benchmark loaders."""

from __future__ import annotations

import json
import math

import pytest

from alignlab.errors import DataError
from alignlab.eval.benchmarks import load_bbq, load_truthfulqa, load_word_pairs
from alignlab.eval.bias import BiasQuestion, bias_metrics, predict_options, question_metrics
from alignlab.eval.multiple_choice import MCItem, MCScores, mc1, mc2, mc_metrics, score_mc


def test_mc1_mc2_by_hand():
    lg = math.log
    assert mc1(lg(0.5), [lg(0.25), lg(0.2)]) == 1.0
    assert mc1(lg(0.25), [lg(0.25)]) == 0.0  # a tie is not a win
    assert mc2([lg(0.5)], [lg(0.25), lg(0.25)]) == pytest.approx(0.5)
    assert mc2([lg(0.3), lg(0.1)], [lg(0.1)]) == pytest.approx(0.8)
    assert mc2([-2000.0], [-1000.0]) == pytest.approx(0.0)  # stable far in the tail
    m = mc_metrics([MCScores(lg(0.5), [lg(0.5)], [lg(0.5)]), MCScores(lg(0.6), [lg(0.6), lg(0.2)], [lg(0.2)])])
    assert m["mc1"] == 0.5 and m["mc2"] == pytest.approx((0.5 + 0.8) / 2)


def test_score_mc_matches_direct_scoring(tiny):
    from alignlab.scoring import score_completions

    model, tok = tiny
    it = MCItem("q : what is the capital of velo ? a :", "marin", ("marin", "ra"), ("duto",))
    [s] = score_mc(model, tok, [it], prompt_fn=lambda q: q)
    direct = score_completions(model, tok, [it.question] * 3, [" marin", " ra", " duto"])
    assert s.best == pytest.approx(direct[0]) and s.true == pytest.approx(direct[:2]) and s.false == pytest.approx(direct[2:])


def test_bias_metrics_by_hand():
    # options: 0 = group a, 1 = group b, 2 = unknown; stereotyped option given per item
    preds = [2, 0, 0, 1, 0, 1, 1, 2]
    labels = [2, 2, 2, 2, 0, 1, 0, 1]
    stereo = [0, 0, 1, 0, 0, 0, 0, 1]
    amb = [True, True, True, True, False, False, False, False]
    m = bias_metrics(preds, labels, [2] * 8, stereo, amb)
    assert m["accuracy"] == pytest.approx(3 / 8)
    assert m["unknown_rate"] == pytest.approx(2 / 8)
    assert m["accuracy_ambig"] == pytest.approx(1 / 4)
    # ambiguous non-unknown answers: 0 (stereo 0 ✓), 0 (stereo 1 ✗), 1 (stereo 0 ✗) -> 2·1/3 − 1 = −1/3
    assert m["bias_score_ambig"] == pytest.approx((1 - 1 / 4) * (-1 / 3))
    # disambiguated non-unknown: 0 (✓ stereo), 1 (✗), 1 (✗) -> 2·1/3 − 1
    assert m["bias_score_disambig"] == pytest.approx(-1 / 3)
    assert m["bias_score"] == m["bias_score_ambig"]
    assert m["unknown_rate_disambig"] == pytest.approx(1 / 4)


def test_bias_items_with_unknown_stereotype_are_left_out():
    m = bias_metrics([0, 1], [2, 2], [2, 2], [0, -1], [True, True])
    assert m["bias_score_ambig"] == pytest.approx(1.0 * 1.0)  # only item 0 counts: stereotyped


def test_predict_options_picks_highest_scoring(tiny):
    model, tok = tiny
    q = BiasQuestion("a zorn and a plim met at the park .", "who was late ?", ("the zorn", "the plim", "unknown"),
                     2, True, unknown=2, stereotyped=0)
    prompt = lambda q: f"context : {q.context} question : {q.question} answer :"  # noqa: E731
    from alignlab.scoring import score_completions

    [p] = predict_options(model, tok, [q], prompt_fn=prompt)
    lp = score_completions(model, tok, [prompt(q)] * 3, [" " + o for o in q.options], average=True)
    assert p == max(range(3), key=lp.__getitem__)
    assert question_metrics([p], [q])["n"] == 1


def test_loaders_on_shared_data(shared_data):
    tqa = load_truthfulqa(shared_data / "truthfulqa" / "TruthfulQA.csv")
    assert len(tqa) == 817 and all(it.incorrect and it.best in it.correct for it in tqa)
    bbq = load_bbq(shared_data / "bbq")
    assert len(bbq) == 1556 + 1576 + 1200 + 864
    assert all(q.stereotyped >= 0 and q.options[q.unknown] for q in bbq)
    first = load_bbq(shared_data / "bbq" / "Religion.jsonl")[0]
    assert first.ambiguous and first.negative and first.label == first.unknown == 1
    assert first.options[first.stereotyped] == "The Muslim one"
    ant = load_word_pairs(shared_data / "function_vectors" / "antonym.json")
    assert len(ant) == 2398 and ant[0] == ("flawed", "perfect")


def test_loaders_name_file_and_line_on_bad_input(tmp_path):
    csv = tmp_path / "t.csv"
    csv.write_text("Type,Category,Question,Best Answer,Correct Answers,Incorrect Answers\n"
                   "A,B,What?,Yes,Yes,No\nA,B,Why?,Because,Because,\n")
    with pytest.raises(DataError, match=r"t.csv:3: empty 'Incorrect Answers'"):
        load_truthfulqa(csv)
    (tmp_path / "bad.csv").write_text("Question,Answer\nx,y\n")
    with pytest.raises(DataError, match="missing column"):
        load_truthfulqa(tmp_path / "bad.csv")
    bbq = tmp_path / "b.jsonl"
    bbq.write_text(json.dumps({"context": "c"}) + "\n{not json\n")
    with pytest.raises(DataError, match=r"b.jsonl:1: missing or bad field"):
        load_bbq(bbq)
    pairs = tmp_path / "p.json"
    pairs.write_text(json.dumps([{"input": "a", "output": "b"}, {"input": "c"}]))
    with pytest.raises(DataError, match="item 1"):
        load_word_pairs(pairs)
    with pytest.raises(DataError, match="not found"):
        load_word_pairs(tmp_path / "missing.json")


def test_loaders_name_file_and_line_of_bytes_that_are_not_utf8(tmp_path):
    csv = tmp_path / "t.csv"
    csv.write_bytes(b"Question,Best Answer,Correct Answers,Incorrect Answers\nWhat?,Yes,Yes,No\nCaf\xe9?,a,a,b\n")
    with pytest.raises(DataError, match=r"t\.csv:3: not UTF-8"):
        load_truthfulqa(csv)
    quoted = tmp_path / "q.csv"  # a quoted answer over two lines still reads, with its line number
    quoted.write_text('Question,Best Answer,Correct Answers,Incorrect Answers\n"Two\nlines?",Yes,Yes,No\nQ,A,A,\n')
    with pytest.raises(DataError, match=r"q\.csv:4: empty 'Incorrect Answers'"):
        load_truthfulqa(quoted)
    pairs = tmp_path / "p.json"
    pairs.write_bytes(b'[{"input": "a", "output": "b"},\n {"input": "\xff", "output": "c"}]')
    with pytest.raises(DataError, match=r"p\.json:2: not UTF-8"):
        load_word_pairs(pairs)


def test_stereotype_margin_by_hand():
    from alignlab.eval.bias import stereotype_margin

    qs = [BiasQuestion("c", "q", ("a", "b", "u"), 2, True, 2, 0), BiasQuestion("c", "q", ("a", "b", "u"), 2, True, 2, 1),
          BiasQuestion("c", "q", ("a", "b", "u"), 0, False, 2, 0)]
    scores = [[-1.0, -3.0, -0.5], [-2.0, -1.5, -0.1], [-9.0, 0.0, 0.0]]
    assert stereotype_margin(scores, qs) == pytest.approx((2.0 + 0.5) / 2)  # the disambiguated item is left out
    assert stereotype_margin(scores, qs, ambiguous_only=False) == pytest.approx((2.0 + 0.5 - 9.0) / 3)
