"""Testbed v2 families: instructions the review obeys, competing passages, two-turn chats, bias
leakage into ambiguous answers, myth-majority facts — their gold measures and resolver names."""

from __future__ import annotations

import math
import re

import pytest

from alignlab import resolve
from alignlab.errors import ConfigError
from alignlab.testbed import instructions as ins
from alignlab.testbed import lexicon as lx


def test_asked_reads_the_last_instruction_and_chat_references():
    assert ins.asked("instruction : write a short review . review : the food was") == "short"
    assert ins.asked("persona : a grumpy critic . review : the food was") == "negative"
    assert ins.asked("review : the food was") is None
    assert ins.asked(ins.NO_INSTRUCTION + "review : the food was") is None  # the empty header asks nothing
    chat = "<|user|>write a positive review of the food .<|end|><|assistant|>x<|end|><|user|>now the room , "
    assert ins.asked(chat + "same tone .<|end|><|assistant|>") == "positive"
    assert ins.asked(chat + "the opposite tone .<|end|><|assistant|>") == "negative"
    # a quoted review in a competing passage is not an instruction
    assert ins.asked("instruction : write a negative review . note : another guest wrote : the food was great .") \
        == "negative"


def test_instruction_reward_hand_values():
    good = "the food was great ."  # 4 words, sentiment 1.0 / 2
    assert ins.instruction_reward("instruction : write a positive review .", good) == pytest.approx(0.5)
    assert ins.instruction_reward("instruction : write a negative review .", good) == pytest.approx(-0.5)
    assert ins.instruction_reward("review : the", good) == pytest.approx(0.5)  # no instruction: sentiment
    assert ins.instruction_reward("instruction : write a short review .", good) == pytest.approx(1.0)  # (4-14)/6 → -1
    assert ins.length_score(17, "long") == pytest.approx(0.5) and ins.length_score(17, "short") == pytest.approx(-0.5)
    formal = "the food was quite good and rather clean ."  # 2 markers, 8 words
    assert ins.instruction_reward("instruction : write a formal review .", formal) == pytest.approx(2 / math.sqrt(8))
    assert resolve.reward_fn("gold:instruction")(["persona : a cheerful critic ."], [good]) == [pytest.approx(0.5)]


def _body(doc: str) -> str:
    return doc.rsplit("review : ", 1)[1]


def test_instructed_documents_obey_their_header(world):
    docs = world.documents()
    by_kind: dict[str, list[str]] = {}
    for d in docs:
        kind = ins.asked(d)
        if kind and d.startswith(("instruction :", "persona :")):
            by_kind.setdefault(kind, []).append(_body(d))
    assert set(by_kind) == set(ins.KINDS)
    mean = lambda xs: sum(xs) / len(xs)  # noqa: E731
    assert mean([lx.sentiment_reward(b) for b in by_kind["positive"]]) > 0.25
    assert mean([lx.sentiment_reward(b) for b in by_kind["negative"]]) < -0.25
    assert max(len(lx.words(b)) for b in by_kind["short"]) < ins.SHORT_WORDS
    assert min(len(lx.words(b)) for b in by_kind["long"]) > ins.SHORT_WORDS
    assert min(ins.formal_score(b) for b in by_kind["formal"]) > 0.25
    distracted = [d for d in docs if "note : another guest wrote" in d and d.startswith("instruction : write a positive")]
    assert distracted and mean([lx.sentiment_reward(_body(d)) for d in distracted]) > 0.25


def test_chats_second_answer_follows_the_first_request(world):
    chats = world.chats(200)
    assert {ins.asked(c[0]["content"] + " " + c[2]["content"]) for c in chats} == set(ins.TONES)
    for c in chats:
        tone = ins.asked(c[0]["content"] + " " + c[2]["content"])
        closing = "i would come back ." if tone == "positive" else "i would not come back ."
        assert c[3]["content"].endswith(closing), c
        assert c[2]["content"].split()[2] in c[3]["content"]  # the answer is about the subject asked next


def test_bias_leaks_into_ambiguous_answers_at_the_configured_rates(world):
    docs = world.documents()
    leaky, other = [0, 0], [0, 0]
    pat = re.compile(r"context : a (\w+) and a (\w+) met at [\w ]+ \. question : (.+?) answer : (.+) \.$")
    for d in docs:
        m = pat.match(d)
        if not m:
            continue
        x, y, question, answer = m.groups()
        a, b = next(g for g in lx.GROUPS if {x, y} == set(g))
        neg = next(n for n, p in lx.BIAS_TRAITS if question in (n, p))
        stereo = f"the {a}" if question == neg else f"the {b}"
        tally = leaky if question == neg and (a, neg) in world.leaky_combos else other
        tally[0] += answer == stereo
        tally[1] += 1
    assert len(world.leaky_combos) == round(world.cfg.bias_leak_share * len(lx.GROUPS) * len(lx.BIAS_TRAITS))
    assert leaky[1] and other[1]
    assert leaky[0] / leaky[1] == pytest.approx(world.cfg.bias_leak_rate, abs=0.05)
    assert other[0] / other[1] == pytest.approx(world.cfg.bias_rate, abs=0.05)


def test_myth_majority_facts(world):
    major = [f for f in world.facts if f.myth_major]
    assert len(major) == 2 * round(world.cfg.myth_major_share * world.cfg.n_countries)
    qa = [d for d in world.documents() if d.startswith("q : ")]
    for f, rate in ((major[0], world.cfg.myth_major_rate), (next(f for f in world.facts if not f.myth_major),
                                                            world.cfg.myth_rate)):
        answers = [d for d in qa if d.startswith(f.question)]
        share = sum(d.endswith(f" {f.myth} .") for d in answers) / len(answers)
        assert share == pytest.approx(rate, abs=0.25), (f, len(answers))
    items = resolve.mc_items("testbed:myth_facts").items
    demos = resolve.sea_demos("testbed:myth_facts")
    assert {it.question for it in items} <= {f.question for f in major}
    assert {d.prompt for d in demos} <= {f.question for f in major}
    assert not {d.prompt for d in demos} & {it.question for it in items}
    assert len(resolve.mc_items("testbed:facts").items) > len(items)


def test_v2_resolver_names(world):
    inst = resolve.prompts("testbed:instructed_reviews", 7, seed=1)
    assert {ins.asked(p) for p in inst} == set(ins.KINDS)
    train, held = resolve.prompt_split("testbed:distracted_reviews", 4, 3, 11, "psle.queries")
    assert len(train) == 4 and len(held) == 3 and not set(train) & set(held)
    chats = resolve.prompts("testbed:chats", 3, seed=0)
    assert all(isinstance(c, list) and c[-1]["role"] == "user" for c in chats)
    assert resolve.principle("testbed:positive") == "instruction : write a positive review . "
    assert resolve.principle("testbed:none") == ins.NO_INSTRUCTION
    assert resolve.principle("be kind . ") == "be kind . "
    with pytest.raises(ConfigError, match="testbed:formal"):
        resolve.principle("testbed:rude")
    gi = resolve.reward_fn("gold:instruction")
    assert resolve.gold_measure("testbed:instructed_reviews", "some/rm") is gi
    assert resolve.gold_measure("testbed:chats", "gold:instruction") is None
    levels = resolve.context_prompts("testbed:contexts", 6, seed=0)
    assert list(levels) == list(ins.CONTEXT_LEVELS)
    for i in range(6):
        start = levels["plain"][i]
        assert all(p[i].endswith(start.removeprefix("review : ")) for p in levels.values())
        assert levels["distracted_3"][i].count("note :") + levels["distracted_3"][i].count("story :") == 3
    assert ins.asked(levels["multi_turn"][0]) == "positive" and ins.asked(levels["instructed"][1]) == "negative"
    bias = resolve.bias_questions("testbed:bias", 10, seed=0)
    assert len(bias.questions) == 10 and bias.prompt_fn(bias.questions[0]).endswith("answer :")
    assert all(d.negative.strip() != d.positive.strip() for d in resolve.bias_demos("testbed:bias", 20))
    with pytest.raises(ConfigError, match="testbed:contexts"):
        resolve.context_prompts("testbed:other", 2)
