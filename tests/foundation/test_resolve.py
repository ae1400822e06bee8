"""The one name resolver: every scheme, file splits, and clear errors naming the config key."""

from __future__ import annotations

import json

import pytest

from alignlab import resolve
from alignlab.errors import ConfigError, DataError


def _write_jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return str(path)


@pytest.mark.parametrize("call, key", [
    (lambda: resolve.model_path(""), "model.name_or_path"),
    (lambda: resolve.prompt_split("", 4, 2, 0, "ppo.prompts"), "ppo.prompts"),
    (lambda: resolve.prompts("", 4, 0, "eval_prompts"), "eval_prompts"),
    (lambda: resolve.reward_fn("", "score"), "score"),
    (lambda: resolve.code_problems("", key="problems"), "problems"),
    (lambda: resolve.contrast_pairs("", key="data"), "data"),
    (lambda: resolve.word_pairs("", key="data"), "data"),
    (lambda: resolve.sea_demos("", key="data"), "data"),
    (lambda: resolve.mc_items("", key="eval_data"), "eval_data"),
])
def test_empty_spec_is_a_config_error_naming_the_key(call, key):
    with pytest.raises(ConfigError, match=rf"^{key}: give "):
        call()


def test_model_path_schemes(tiny_dir, tmp_path):
    assert resolve.model_path("testbed:tiny") == str(tiny_dir)
    assert resolve.model_path(str(tiny_dir)) == str(tiny_dir)
    assert resolve.model_path("org/some-model") == "org/some-model"  # a hub id passes through
    with pytest.raises(ConfigError, match="unknown testbed size"):
        resolve.model_path("testbed:huge")
    with pytest.raises(ConfigError, match="no config.json"):
        resolve.model_path(str(tmp_path))
    with pytest.raises(ConfigError, match="model path not found"):
        resolve.model_path("./does/not/exist")


def test_builtin_prompt_split_holds_out_another_seed(world):
    train, held = resolve.prompt_split("testbed:reviews", 5, 3, 11, "prompts")
    assert train == world.review_prompts(5, seed=11)
    assert held == world.review_prompts(3, seed=10_007)
    assert train != world.review_prompts(5, seed=12)
    assert resolve.prompts("testbed:reviews", 4, 3) == world.review_prompts(4, seed=3)


def test_file_prompt_split_holds_out_the_last_rows(tmp_path):
    txt = tmp_path / "p.txt"
    txt.write_text("a\nb\n\nc\nd\ne\n")
    assert resolve.prompt_split(str(txt), 99, 2, 0, "prompts") == (["a", "b", "c"], ["d", "e"])
    assert resolve.prompt_split(str(txt), 99, 0, 0, "prompts") == (["a", "b", "c", "d", "e"], [])
    msgs = [{"role": "user", "content": "hi"}]
    jl = _write_jsonl(tmp_path / "p.jsonl", [{"prompt": "x"}, {"prompt": msgs}, {"prompt": "z"}])
    train, held = resolve.prompt_split(jl, 99, 1, 0, "psle.queries")
    assert train == ["x", msgs] and held == ["z"]
    with pytest.raises(DataError, match=r"3 prompts; psle.queries needs more than 3"):
        resolve.prompt_split(jl, 99, 3, 0, "psle.queries")
    with pytest.raises(ConfigError, match="ppo.prompts: 'nope.txt' is neither"):
        resolve.prompt_split("nope.txt", 4, 1, 0, "ppo.prompts")


def test_reward_fn_and_gold_measure(tmp_path):
    gold = resolve.reward_fn("gold:sentiment")
    assert resolve.reward_fn("gold") is gold
    good, bad = gold(["p", "p"], ["the food was great and wonderful .", "the food was awful and terrible ."])
    assert good > 0 > bad
    with pytest.raises(ConfigError, match="the only gold reward"):
        resolve.reward_fn("gold:truth")
    with pytest.raises(ConfigError, match="score '.*missing': not a gold reward .* and no such reward-model folder"):
        resolve.reward_fn(str(tmp_path / "missing"), "score")
    with pytest.raises(ConfigError, match="no config.json or adapter_config.json"):
        resolve.reward_fn(str(tmp_path))  # a folder, but not a reward model
    assert resolve.gold_measure("testbed:reviews", str(tmp_path)) is gold
    assert resolve.gold_measure("testbed:reviews", "gold:sentiment") is None  # already gold
    assert resolve.gold_measure("prompts.txt", str(tmp_path)) is None  # a user's prompts: no gold


def test_reference_texts(world, tmp_path):
    assert resolve.reference_texts("testbed:neutral", 4) == world.heldout_neutral(4)
    assert resolve.reference_texts("", 4) == []  # no held-out perplexity
    f = tmp_path / "ref.jsonl"
    _write_jsonl(f, [{"text": "a"}, {"text": "b"}, {"text": "c"}])
    assert resolve.reference_texts(str(f), 2) == ["a", "b"]
    with pytest.raises(DataError, match="not found"):
        resolve.reference_texts(str(tmp_path / "missing.txt"), 2)


def _problem(i: int) -> dict:
    return {"task_id": f"t/{i}", "prompt": f"def f{i}(x):\n", "entry_point": f"f{i}",
            "canonical_solution": "    return x\n", "test": "def check(candidate):\n    assert candidate(1) == 1\n"}


def test_code_problems_builtin_and_file_splits(world, tmp_path):
    built = resolve.code_problems("testbed")
    assert built.fresh_tests
    assert [p.task_id for p in built.train] == [e.task_id for e in world.train_code]
    assert [p.task_id for p in built.held] == [e.task_id for e in world.heldout_code]
    f = _write_jsonl(tmp_path / "he.jsonl", [_problem(i) for i in range(7)])
    split = resolve.code_problems(f, heldout_every=3)
    assert not split.fresh_tests
    assert [p.task_id for p in split.held] == ["t/0", "t/3", "t/6"]
    assert [p.task_id for p in split.train] == ["t/1", "t/2", "t/4", "t/5"]
    ev = _write_jsonl(tmp_path / "ev.jsonl", [_problem(i) for i in range(10, 12)])
    both = resolve.code_problems(f, ev)
    assert len(both.train) == 7 and [p.task_id for p in both.held] == ["t/10", "t/11"]
    with pytest.raises(DataError, match="overlap"):
        resolve.code_problems(f, f)
    with pytest.raises(ConfigError, match="heldout_every"):
        resolve.code_problems(f, heldout_every=1)
    one = _write_jsonl(tmp_path / "one.jsonl", [_problem(0)])
    with pytest.raises(DataError, match="no training problems"):
        resolve.code_problems(one, heldout_every=5)


def test_inference_data_builtin_and_files(world, tmp_path):
    pairs = resolve.contrast_pairs("testbed:sentiment", 5, seed=2)
    assert len(pairs) == 5 and pairs == resolve.contrast_pairs("testbed:sentiment", 5, seed=2)
    f = _write_jsonl(tmp_path / "pairs.jsonl", [{"prompt": "p", "positive": " a", "negative": " b"}])
    assert [(p.prompt, p.positive, p.negative) for p in resolve.contrast_pairs(f)] == [("p", " a", " b")]
    bad = _write_jsonl(tmp_path / "bad.jsonl", [{"prompt": "p", "positive": " a"}])
    with pytest.raises(DataError, match=r"bad.jsonl:1: needs string field\(s\) \['negative'\]"):
        resolve.contrast_pairs(bad)

    assert resolve.word_pairs("testbed:antonym") == list(world.icl_tasks["antonym"])
    assert resolve.word_pairs("testbed") == list(world.icl_tasks["antonym"])
    with pytest.raises(ConfigError, match="unknown built-in task"):
        resolve.word_pairs("testbed:synonym")

    demos = resolve.sea_demos("testbed:facts")
    mc = resolve.mc_items("testbed:facts")
    assert demos and mc.items and mc.prompt_fn("q :") == "q :"
    assert not {d.prompt for d in demos} & {it.question for it in mc.items}  # train vs test countries
    mcf = _write_jsonl(tmp_path / "mc.jsonl", [{"question": "q", "best": "a", "incorrect": ["b", "c"]}])
    got = resolve.mc_items(mcf)
    assert got.prompt_fn is None and got.items[0].incorrect == ("b", "c")
    nomc = _write_jsonl(tmp_path / "nomc.jsonl", [{"question": "q", "best": "a", "incorrect": []}])
    with pytest.raises(DataError, match="'incorrect' must be a non-empty list"):
        resolve.mc_items(nomc)
