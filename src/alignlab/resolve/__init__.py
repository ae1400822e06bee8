"""The one name resolver: config strings → models, prompts, rewards, texts and task data.

Method code takes a reward function or a list of items; only this module (and the testbed
package it calls) knows the built-in names:

- models: `testbed:<size>` (built on first use), `real:smollm2` (offline SmolLM2), a folder,
  or a hub id;
- prompts: `testbed:reviews`, `testbed:instructed_reviews`, `testbed:distracted_reviews`,
  `testbed:chats`, or a .jsonl / .txt file (`alignlab.data.chat.read_prompts`);
- principles: `testbed:<kind>` instruction headers (`principle`), or literal text;
- rewards: `gold:sentiment` (alias `gold`), `gold:instruction`, or a reward-model folder;
- reference texts: `testbed:neutral`, or a .txt / .jsonl file;
- code problems: `testbed`, or a HumanEval-format file;
- inference-time data: contrast pairs (`testbed:sentiment`), ICL word pairs
  (`testbed:antonym`, …), SEA demonstrations and multiple-choice items (`testbed:facts`,
  `testbed:myth_facts`), bias questions and demonstrations (`testbed:bias`), context levels
  for steering (`testbed:contexts`).

An empty spec is a ConfigError naming the config key that should have given it.
"""

from alignlab.resolve.data import (
    BiasSet,
    CodeProblems,
    MCSet,
    Query,
    bias_demos,
    bias_questions,
    code_problems,
    context_prompts,
    contrast_pairs,
    gold_instruction_reward,
    gold_measure,
    gold_sentiment_reward,
    mc_items,
    principle,
    prompt_split,
    prompts,
    reference_texts,
    reward_fn,
    sea_demos,
    word_pairs,
)
from alignlab.resolve.models import model_path, require

__all__ = [
    "BiasSet", "CodeProblems", "MCSet", "Query", "bias_demos", "bias_questions", "code_problems", "context_prompts",
    "contrast_pairs", "gold_instruction_reward", "gold_measure", "gold_sentiment_reward", "mc_items", "model_path",
    "principle", "prompt_split", "prompts", "reference_texts", "require", "reward_fn", "sea_demos", "word_pairs",
]
