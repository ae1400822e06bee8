"""OpenAssistant-format conversation trees for the testbed, ranked by the gold reward.

The trees only need a way to write an answer, so this module takes a `write_answer`
function and does not import the world (the world imports it).
"""

from __future__ import annotations

import math
import random
import uuid
from collections.abc import Callable
from typing import Any

from alignlab.testbed import lexicon as lx

QUESTIONS = ["tell me about the {s} .", "what did you think of the {s} ?", "how was the {s} ?"]
FOLLOW_UPS = ["why ?", "anything else ?", "tell me more ."]


def _id(rng: random.Random) -> str:
    return str(uuid.UUID(int=rng.getrandbits(128), version=4))


def _message(rng: random.Random, tree_id: str, parent: str | None, role: str, text: str) -> dict[str, Any]:
    reward = lx.sentiment_reward(text) if role == "assistant" else 0.0
    quality = 1 / (1 + math.exp(-2 * reward))
    return {
        "message_id": tree_id if parent is None else _id(rng),
        "parent_id": parent,
        "user_id": _id(rng),
        "created_date": "2026-01-01T00:00:00+00:00",
        "text": text,
        "role": role,
        "lang": "en",
        "review_count": 3,
        "review_result": True,
        "deleted": False,
        "rank": None,
        "synthetic": False,
        "model_name": None,
        "emojis": {"+1": int(quality * 5)} if role == "assistant" else {},
        "labels": {
            "spam": {"value": 0.0, "count": 3},
            "quality": {"value": round(quality, 3), "count": 3},
            "helpfulness": {"value": round(quality, 3), "count": 3},
            "toxicity": {"value": round(max(0.0, -reward) / 3, 3), "count": 3},
        },
        "replies": [],
    }


def _rank(children: list[dict[str, Any]]) -> None:
    order = sorted(range(len(children)), key=lambda i: -lx.sentiment_reward(children[i]["text"]))
    for r, i in enumerate(order):
        children[i]["rank"] = r


def make_trees(write_answer: Callable[[random.Random], str], n: int, rng: random.Random) -> list[dict[str, Any]]:
    """`n` trees: a question, 2-4 ranked assistant answers, some with a follow-up turn.

    `write_answer(rng)` writes one assistant answer (the world's review without its prefix).
    """
    trees = []
    for _ in range(n):
        tree_id = _id(rng)
        subject = rng.choice(lx.SUBJECTS)
        root = _message(rng, tree_id, None, "prompter", rng.choice(QUESTIONS).format(s=subject))
        for _ in range(rng.randint(2, 4)):
            reply = _message(rng, tree_id, root["message_id"], "assistant", write_answer(rng))
            root["replies"].append(reply)
            if rng.random() < 0.4:
                follow = _message(rng, tree_id, reply["message_id"], "prompter", rng.choice(FOLLOW_UPS))
                reply["replies"].append(follow)
                for _ in range(rng.randint(1, 3)):
                    follow["replies"].append(
                        _message(rng, tree_id, follow["message_id"], "assistant", write_answer(rng))
                    )
                if len(follow["replies"]) > 1:
                    _rank(follow["replies"])
        _rank(root["replies"])
        trees.append({"message_tree_id": tree_id, "tree_state": "ready_for_export", "prompt": root})
    return trees


def dialogue_texts(trees: list[dict[str, Any]]) -> list[list[dict[str, str]]]:
    """Every root-to-leaf conversation as chat messages (for pretraining the base model)."""
    out: list[list[dict[str, str]]] = []

    def walk(node: dict[str, Any], path: list[dict[str, str]]) -> None:
        role = "user" if node["role"] == "prompter" else "assistant"
        path = path + [{"role": role, "content": node["text"]}]
        if not node["replies"]:
            if role == "assistant":
                out.append(path)
            return
        for child in node["replies"]:
            walk(child, path)

    for t in trees:
        walk(t["prompt"], [])
    return out
