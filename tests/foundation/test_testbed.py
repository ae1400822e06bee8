"""The testbed world is deterministic, its gold measures behave, and the base model learned it."""

import json

import torch

from alignlab.generation import sample
from alignlab.scoring import score_completions
from alignlab.testbed.build import build_summary
from alignlab.testbed.lexicon import sentiment_reward
from alignlab.testbed.world import World, WorldConfig


def test_world_is_deterministic_and_seeded():
    a, b = World(), World()
    assert a.documents()[:50] == b.documents()[:50]
    assert a.fingerprint == b.fingerprint
    c = World(WorldConfig(seed=1))
    assert c.fingerprint != a.fingerprint and c.documents()[:50] != a.documents()[:50]


def test_gold_reward_orders_sentiment():
    assert sentiment_reward("the food was great and lovely .") > 0
    assert sentiment_reward("the food was awful and rude .") < 0
    assert sentiment_reward("the river runs past the mill .") == 0
    assert sentiment_reward("") == 0


def test_trees_are_ranked_by_gold_reward(world):
    tree = world.dialogue_trees(n=5)[0]
    replies = tree["prompt"]["replies"]
    best_first = sorted(replies, key=lambda r: r["rank"])
    rewards = [sentiment_reward(r["text"]) for r in best_first]
    assert rewards == sorted(rewards, reverse=True)
    json.dumps(tree)  # serialisable as OASST JSONL


def test_code_exercises_pass_their_own_tests(world):
    for ex in world.code_exercises[:20]:
        ns: dict = {}
        exec(ex.prompt + ex.solution + "\n" + ex.test, ns)  # noqa: S102 - reference solutions
        ns["check"](ns[ex.entry_point])
    assert not set(e.task_id for e in world.heldout_code) & set(e.task_id for e in world.train_code)


def test_tiny_model_learned_the_world(tiny_dir, tiny, world):
    s = build_summary(tiny_dir)
    assert s["val_ppl"] < s["unigram_ppl"] / 5
    assert s["fact_true_vs_myth"] > 0.6
    model, tok = tiny
    # neutral text is far more likely than shuffled neutral text
    text = world.heldout_neutral(4)
    shuffled = [" ".join(reversed(t.split())) for t in text]
    real = score_completions(model, tok, [""] * 4, text)
    fake = score_completions(model, tok, [""] * 4, shuffled)
    assert all(r > f for r, f in zip(real, fake))


def test_sampling_is_seeded_and_greedy_matches_argmax(tiny):
    model, tok = tiny
    prompts = ["review : the food was", "story : the"]
    g = lambda: torch.Generator().manual_seed(3)  # noqa: E731
    a = sample(model, tok, prompts, max_new_tokens=12, generator=g())
    b = sample(model, tok, prompts, max_new_tokens=12, generator=g())
    assert a.texts == b.texts
    greedy = sample(model, tok, prompts, max_new_tokens=8, temperature=0)
    for p, r in zip(greedy.prompt_ids, greedy.response_ids):
        logits = model(input_ids=torch.tensor([p + r])).logits[0]
        assert logits[len(p) - 1 : -1].argmax(-1).tolist() == r
