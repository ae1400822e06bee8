"""The data side of the name resolver: prompts, rewards, reference texts, code problems and
inference-time task data from built-in names or files (see `alignlab.resolve`)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from alignlab.data.chat import Messages
from alignlab.errors import ConfigError, DataError
from alignlab.resolve.models import require

if TYPE_CHECKING:
    from alignlab.eval.bias import BiasQuestion
    from alignlab.eval.multiple_choice import MCItem
    from alignlab.eval.pass_at_k import Problem
    from alignlab.interventions.sea import Demo
    from alignlab.interventions.steering import ContrastPair
    from alignlab.rl.rewards import RewardFn

Query = str | Messages

REVIEWS = ("testbed:reviews", "testbed")
INSTRUCTED = ("testbed:instructed_reviews", "testbed:distracted_reviews", "testbed:chats")  # testbed v2
GOLD = ("gold", "gold:sentiment")
GOLD_INSTRUCTION = "gold:instruction"
NEUTRAL = "testbed:neutral"
CODE = ("testbed", "testbed:code")
CODE_HARD = "testbed:hard"  # the same families with digit constants (alignlab.testbed.code.make_digit_exercises)
SENTIMENT_PAIRS = ("testbed:sentiment", "testbed")
FACTS = ("testbed:facts", "testbed")
MYTH_FACTS = "testbed:myth_facts"
BIAS = ("testbed:bias", "testbed")
CONTEXTS = "testbed:contexts"
HELD_OUT_SEED = 10_007  # built-in evaluation prompts come from a seed training never uses


def _world():
    from alignlab.testbed.world import World

    return World()


# --- prompts -----------------------------------------------------------------------------------


def _builtin_prompts(spec: str, n: int, seed: int) -> list[Query]:
    """`n` prompts of a built-in family drawn with `seed`."""
    world = _world()
    if spec in REVIEWS:
        return list(world.review_prompts(n, seed=seed))
    if spec == "testbed:instructed_reviews":
        return list(world.instructed_prompts(n, seed=seed))
    if spec == "testbed:distracted_reviews":
        return list(world.distracted_prompts(n, seed=seed))
    return list(world.chat_prompts(n, seed=seed))


def prompts(spec: str, n: int, seed: int, key: str = "prompts") -> list[Query]:
    """`n` built-in prompts drawn with `seed` (`testbed:reviews`, `testbed:instructed_reviews`,
    `testbed:distracted_reviews`, `testbed:chats`), or the first `n` rows of a prompts file."""
    require(spec, key, "prompts ('testbed:reviews' or a .jsonl / .txt file)")
    if spec in REVIEWS or spec in INSTRUCTED:
        return _builtin_prompts(spec, n, seed)
    from alignlab.data.chat import read_prompts

    return read_prompts(spec, key, REVIEWS[0])[:n]


def prompt_split(spec: str, n_train: int, n_eval: int, seed: int, key: str) -> tuple[list[Query], list[Query]]:
    """(training prompts, held-out prompts).

    Built-in reviews: `n_train` drawn with `seed`, `n_eval` from a seed training never uses.
    A file: its last `n_eval` rows are held out, the rest train (`n_train` is not applied).
    """
    require(spec, key, "prompts ('testbed:reviews' or a .jsonl / .txt file)")
    if spec in REVIEWS or spec in INSTRUCTED:
        return _builtin_prompts(spec, n_train, seed), _builtin_prompts(spec, n_eval, HELD_OUT_SEED)
    from alignlab.data.chat import read_prompts

    rows = read_prompts(spec, key, REVIEWS[0])
    if n_eval <= 0:
        return rows, []
    if len(rows) <= n_eval:
        raise DataError(f"{spec}: {len(rows)} prompts; {key} needs more than {n_eval} "
                        f"(the last {n_eval} rows are held out)")
    return rows[:-n_eval], rows[-n_eval:]


# --- rewards -----------------------------------------------------------------------------------


def gold_sentiment_reward(prompts: list[str], responses: list[str]) -> list[float]:
    """The built-in gold sentiment reward of each response (the prompt is not scored)."""
    from alignlab.testbed.lexicon import sentiment_reward

    return [sentiment_reward(r) for r in responses]


def gold_instruction_reward(prompts: list[str], responses: list[str]) -> list[float]:
    """The built-in gold obedience of each response to the instruction in its (rendered) prompt."""
    from alignlab.testbed.instructions import instruction_reward

    return [instruction_reward(p, r) for p, r in zip(prompts, responses, strict=True)]


def reward_fn(spec: str, key: str = "reward") -> RewardFn:
    """`gold:sentiment` (alias `gold`), `gold:instruction` or the folder of a learned reward model."""
    require(spec, key, "a reward ('gold:sentiment', 'gold:instruction' or a reward-model folder)")
    if spec in GOLD:
        return gold_sentiment_reward
    if spec == GOLD_INSTRUCTION:
        return gold_instruction_reward
    if spec.startswith("gold:"):
        raise ConfigError(f"{key} '{spec}': the only gold rewards are 'gold:sentiment' and 'gold:instruction'")
    if not Path(spec).expanduser().exists():
        raise ConfigError(f"{key} '{spec}': not a gold reward ('gold:sentiment', 'gold:instruction') and no such reward-model folder")
    from alignlab.rl.rewards import learned_reward_fn

    return learned_reward_fn(Path(spec).expanduser())


def gold_measure(prompts_spec: str, reward_spec: str) -> RewardFn | None:
    """The built-in gold reward, to report beside a learned one, when the prompts are built in
    and the training reward is not already gold; else None (instructed prompts: obedience)."""
    if prompts_spec in REVIEWS and reward_spec not in GOLD:
        return gold_sentiment_reward
    if prompts_spec in INSTRUCTED and reward_spec != GOLD_INSTRUCTION:
        return gold_instruction_reward
    return None


def principle(spec: str) -> str:
    """A principle to prefix to a query: built-in headers `testbed:<kind>` (positive, negative,
    short, long, formal, cheerful, grumpy; `testbed:none` = the same form without content), else
    `spec` itself as the literal text."""
    if not spec.startswith("testbed:"):
        return spec
    from alignlab.testbed import instructions as ins

    name = spec.split(":", 1)[1]
    if name == "none":
        return ins.NO_INSTRUCTION
    if name not in ins.KINDS and name not in ins.PERSONAS:
        raise ConfigError(f"principle '{spec}': choose one of "
                          + ", ".join(f"testbed:{k}" for k in (*ins.KINDS, *ins.PERSONAS, "none")))
    return ins.header(name)


def context_prompts(spec: str, n: int, seed: int = 0, key: str = "data") -> dict[str, list[str]]:
    """Prompts of rising context complexity, the same subjects per index (`testbed:contexts`):
    plain, instructed (half positive, half negative), distracted_1, distracted_3, multi_turn."""
    require(spec, key, "context levels ('testbed:contexts')")
    if spec != CONTEXTS:
        raise ConfigError(f"{key} '{spec}': the only built-in context set is '{CONTEXTS}'")
    from alignlab.testbed.instructions import context_levels

    return context_levels(_world(), n, seed)


# --- reference texts ---------------------------------------------------------------------------


def reference_texts(spec: str, n: int) -> list[str]:
    """Held-out reference texts for perplexity: the built-in neutral stories or a .txt/.jsonl
    file (first `n`); "" → [] (no held-out perplexity is measured)."""
    if not spec:
        return []
    if spec == NEUTRAL:
        return _world().heldout_neutral(n)
    from alignlab.eval.drift import read_reference_texts

    return read_reference_texts(spec)[:n]


# --- code problems -----------------------------------------------------------------------------


@dataclass
class CodeProblems:
    """Training and held-out code problems; `fresh_tests`: the training problems' tests may be
    regenerated per draw from their reference solutions (the built-in exercises)."""

    train: list[Problem]
    held: list[Problem]
    fresh_tests: bool = False


def code_problems(spec: str, eval_spec: str = "", heldout_every: int = 5, key: str = "problems") -> CodeProblems:
    """Built-in code exercises (`testbed`; `testbed:hard`: digit constants, every 5th held out), or a
    HumanEval-format file: every `heldout_every`-th row held out, or all rows train and `eval_spec`
    holds out. The splits never share a task_id."""
    from alignlab.eval import pass_at_k as pak

    require(spec, key, "code problems ('testbed', 'testbed:hard' or a HumanEval-format .jsonl file)")
    if spec in CODE or spec == CODE_HARD:
        world = _world()
        if spec == CODE_HARD:
            from alignlab.testbed.code import heldout_split

            train_ex, held_ex = heldout_split(world.digit_code_exercises)
        else:
            train_ex, held_ex = world.train_code, world.heldout_code
        train = [pak.Problem.from_dict(e.as_humaneval(), e.task_id) for e in train_ex]
        held = [pak.Problem.from_dict(e.as_humaneval(), e.task_id) for e in held_ex]
        out = CodeProblems(train, held, fresh_tests=True)
    else:
        rows = pak.load_humaneval(spec)
        if eval_spec:
            train, held = rows, pak.load_humaneval(eval_spec)
        else:
            if heldout_every < 2:
                raise ConfigError(f"heldout_every: {heldout_every} would leave no training problems; use ≥ 2")
            train = [p for i, p in enumerate(rows) if i % heldout_every != 0]
            held = [p for i, p in enumerate(rows) if i % heldout_every == 0]
        if not train:
            raise DataError(f"{spec}: no training problems left after holding out every {heldout_every}-th row")
        out = CodeProblems(train, held, fresh_tests=False)
    overlap = {p.task_id for p in out.held} & {p.task_id for p in out.train}
    if overlap:
        raise DataError(f"held-out problems overlap the training problems: {sorted(overlap)[:3]}")
    return out


# --- inference-time data -----------------------------------------------------------------------


def _jsonl_rows(path: str, fields: tuple[str, ...]) -> list[tuple[str, dict]]:
    """(where, row) of a data file (JSONL, JSON, CSV, parquet, arrow or a dataset folder) whose rows
    all carry string `fields`."""
    from alignlab.data.tables import read_rows

    out = []
    for where, row in read_rows(Path(path), what="data file"):
        missing = [k for k in fields if not isinstance(row.get(k), str)]
        if missing:
            raise DataError(f"{where}: needs string field(s) {missing} (has {sorted(row)})")
        out.append((where, row))
    if not out:
        raise DataError(f"{path}: no rows")
    return out


def contrast_pairs(spec: str, n: int = 64, seed: int = 0, key: str = "data") -> list[ContrastPair]:
    """Steering contrast pairs: built-in sentiment pairs (`testbed:sentiment`, n drawn with seed)
    or a data file (JSONL, JSON, CSV, parquet, dataset folder) of {prompt, positive, negative}."""
    from alignlab.interventions.steering import ContrastPair

    require(spec, key, "contrast pairs ('testbed:sentiment' or a JSONL file of {prompt, positive, negative})")
    if spec in SENTIMENT_PAIRS:
        from alignlab.testbed.tasks import sentiment_pairs

        return sentiment_pairs(_world(), n, seed)
    return [ContrastPair(r["prompt"], r["positive"], r["negative"])
            for _, r in _jsonl_rows(spec, ("prompt", "positive", "negative"))]


def word_pairs(spec: str, key: str = "data") -> list[tuple[str, str]]:
    """In-context (input, output) pairs: a built-in task (`testbed:antonym`, `testbed:plural`,
    `testbed:capital`, `testbed:copy`; `testbed` = antonyms) or a JSON list of {input, output}."""
    require(spec, key, "word pairs ('testbed:antonym' or a JSON list of {input, output})")
    if spec == "testbed" or spec.startswith("testbed:"):
        tasks = _world().icl_tasks
        task = spec.split(":", 1)[1] if ":" in spec else "antonym"
        if task not in tasks:
            raise ConfigError(f"{key} '{spec}': unknown built-in task; choose one of "
                              + ", ".join(f"testbed:{t}" for t in tasks))
        return list(tasks[task])
    from alignlab.eval.benchmarks import load_word_pairs

    return load_word_pairs(spec)


def sea_demos(spec: str, key: str = "data") -> list[Demo]:
    """SEA demonstrations: built-in truth vs myth (`testbed:facts`, training countries;
    `testbed:myth_facts`, only the myth-majority ones) or a
    JSONL file of {prompt, positive, negative} (+ optional "neutral")."""
    from alignlab.interventions.sea import Demo

    require(spec, key, "demonstrations ('testbed:facts' or a JSONL file of {prompt, positive, negative})")
    if spec in FACTS or spec == MYTH_FACTS:
        from alignlab.testbed.tasks import fact_demos

        return fact_demos(_world(), split="train", myth_major_only=spec == MYTH_FACTS)
    return [Demo(r["prompt"], r["positive"], r["negative"], r.get("neutral"))
            for _, r in _jsonl_rows(spec, ("prompt", "positive", "negative"))]


@dataclass
class MCSet:
    """Multiple-choice items and how to prompt them (None: `evaluate_mc`'s default Q/A prompt)."""

    items: list[MCItem]
    prompt_fn: Callable[[str], str] | None = field(default=None)


def mc_items(spec: str, key: str = "eval_data") -> MCSet:
    """Multiple-choice items: built-in held-out facts (`testbed:facts`, test countries, or
    `testbed:myth_facts`, only those whose Q/A documents mostly give the myth; the questions carry
    their own answer cue), a TruthfulQA CSV, or a JSONL file of
    {question, best, correct: [...], incorrect: [...]}."""
    from alignlab.eval.multiple_choice import MCItem

    require(spec, key, "multiple-choice items ('testbed:facts', a TruthfulQA .csv or a JSONL file)")
    if spec in FACTS or spec == MYTH_FACTS:
        from alignlab.testbed.tasks import fact_items

        return MCSet(fact_items(_world(), split="test", myth_major_only=spec == MYTH_FACTS), prompt_fn=lambda q: q)
    if spec.endswith(".csv"):
        from alignlab.eval.benchmarks import load_truthfulqa

        return MCSet(load_truthfulqa(spec))
    items = []
    for where, r in _jsonl_rows(spec, ("question", "best")):
        if not isinstance(r.get("incorrect"), list) or not r["incorrect"]:
            raise DataError(f"{where}: 'incorrect' must be a non-empty list of answers")
        items.append(MCItem(r["question"], r["best"], tuple(r.get("correct", [r["best"]])), tuple(r["incorrect"])))
    return MCSet(items)


@dataclass
class BiasSet:
    """Bias questions and how to prompt them (for `alignlab.eval.bias.evaluate_bias`)."""

    questions: list[BiasQuestion]
    prompt_fn: Callable[[BiasQuestion], str]


def bias_questions(spec: str = "testbed:bias", n: int = 200, seed: int = 0, key: str = "data") -> BiasSet:
    """Built-in held-out BBQ-style questions (`testbed:bias`, half ambiguous; the stereotype leaks
    into the corpus's ambiguous answers for some group/question combos)."""
    require(spec, key, "bias questions ('testbed:bias')")
    if spec not in BIAS:
        raise ConfigError(f"{key} '{spec}': the only built-in bias set is 'testbed:bias'")
    from alignlab.testbed import tasks

    return BiasSet(tasks.bias_questions(_world(), n, seed), tasks.bias_prompt)


def bias_demos(spec: str = "testbed:bias", n: int = 120, seed: int = 1, key: str = "data") -> list[Demo]:
    """SEA demonstrations for bias (`testbed:bias`): correct (positive) vs stereotyped (negative) answer."""
    require(spec, key, "bias demonstrations ('testbed:bias')")
    if spec not in BIAS:
        raise ConfigError(f"{key} '{spec}': the only built-in bias set is 'testbed:bias'")
    from alignlab.testbed import tasks

    return tasks.bias_demos(_world(), n, seed)
