"""Turn conversation trees into SFT threads, reward-model ranking examples and RL prompts (SPEC §1)."""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from .models import ASSISTANT, PROMPTER, READY_FOR_EXPORT, Message, Tree

Record = dict[str, Any]
_CHAT_ROLE = {PROMPTER: "user", ASSISTANT: "assistant"}


@dataclass(frozen=True)
class ExportFilters:
    """Which trees and threads an export keeps; defaults are SPEC's (all on, any language, no top_k)."""

    ready_only: bool = True  # keep trees with tree_state == ready_for_export
    reviewed_only: bool = True  # keep trees whose root has review_result true
    languages: frozenset[str] | None = None  # root languages to keep; None = all
    drop_deleted: bool = True  # drop threads/prefixes/replies with a deleted message
    drop_synthetic: bool = True  # drop threads/prefixes/replies with a synthetic message
    top_k: int | None = None  # SFT: drop threads with an assistant ranked >= top_k
    # A file that does not record tree_state / review_result at all (flat message lists,
    # early exports) passes those two filters; set False to require them.
    accept_unrecorded: bool = True

    def __post_init__(self) -> None:
        """Normalise languages to a lower-case frozenset and check top_k."""
        if self.languages is not None:
            if isinstance(self.languages, str):
                raise TypeError(
                    "languages must be a collection of codes, e.g. {'en'}, not a string"
                )
            object.__setattr__(self, "languages", frozenset(x.lower() for x in self.languages))
        if self.top_k is not None and self.top_k < 1:
            raise ValueError(f"top_k must be >= 1, got {self.top_k}")

    def keeps_tree(self, tree: Tree) -> bool:
        """True when the tree passes the state, review and language filters."""
        return self.drops_tree_by(tree) is None

    def drops_tree_by(self, tree: Tree) -> str | None:
        """The first tree-level filter that drops the tree ('state', 'review', 'lang'), else None."""
        root = tree.prompt
        if self.ready_only and not self._matches(tree.tree_state, READY_FOR_EXPORT):
            return "state"
        if self.reviewed_only and not self._matches(root.review_result, True):
            return "review"
        if self.languages is not None and (root.lang or "").lower() not in self.languages:
            return "lang"
        return None

    def _matches(self, value: object, wanted: object) -> bool:
        """A tree field equals what a filter wants, or is unrecorded and that is accepted."""
        return value == wanted or (value is None and self.accept_unrecorded)

    def keeps_message(self, message: Message) -> bool:
        """True unless the message is deleted or synthetic and that filter is on."""
        return not (self.drop_deleted and message.deleted) and not (
            self.drop_synthetic and message.synthetic
        )


DEFAULT_FILTERS = ExportFilters()


def chat(messages: Iterable[Message]) -> list[dict[str, str]]:
    """Messages as chat-template turns: prompter → user, assistant → assistant."""
    return [{"role": _CHAT_ROLE[m.role], "content": m.text} for m in messages]


def _prefixes(tree: Tree) -> Iterator[list[Message]]:
    """Every root-to-node path of the tree, depth-first in reply order."""
    stack: list[list[Message]] = [[tree.prompt]]
    while stack:
        path = stack.pop()
        yield path
        stack.extend([*path, reply] for reply in reversed(path[-1].replies))


def _within_top_k(thread: Sequence[Message], top_k: int) -> bool:
    """SPEC top_k rule: assistants ranked < top_k; an unranked assistant only as an only child."""
    for i, m in enumerate(thread):
        if m.role != ASSISTANT:
            continue
        if m.rank is None:
            if i > 0 and len(thread[i - 1].replies) > 1:
                return False
        elif m.rank >= top_k:
            return False
    return True


def sft_threads(tree: Tree, filters: ExportFilters = DEFAULT_FILTERS) -> list[list[Message]]:
    """Unique root-to-leaf threads ending on an assistant (a prompter leaf is dropped), filtered."""
    threads: list[list[Message]] = []
    seen: set[tuple[str, ...]] = set()
    for path in _prefixes(tree):
        if path[-1].replies:
            continue
        thread = path[:-1] if path[-1].role == PROMPTER else path
        if not thread or thread[-1].role != ASSISTANT:
            continue
        if not all(filters.keeps_message(m) for m in thread):
            continue
        if filters.top_k is not None and not _within_top_k(thread, filters.top_k):
            continue
        key = tuple(m.message_id for m in thread)
        if key not in seen:
            seen.add(key)
            threads.append(thread)
    return threads


def ranking_examples(
    tree: Tree, filters: ExportFilters = DEFAULT_FILTERS
) -> list[tuple[list[Message], list[Message]]]:
    """(prefix ending on a prompter, its kept ranked assistant replies best-first), ≥ 2 replies."""
    examples = []
    for path in _prefixes(tree):
        if path[-1].role != PROMPTER or not all(filters.keeps_message(m) for m in path):
            continue
        replies = [
            r
            for r in path[-1].replies
            if r.role == ASSISTANT and r.rank is not None and filters.keeps_message(r)
        ]
        if len(replies) >= 2:
            examples.append((path, sorted(replies, key=lambda r: r.rank)))
    return examples


def rl_prompts(tree: Tree, filters: ExportFilters = DEFAULT_FILTERS) -> list[list[Message]]:
    """Every prefix ending on a prompter message whose messages all pass the filters."""
    return [
        path
        for path in _prefixes(tree)
        if path[-1].role == PROMPTER and all(filters.keeps_message(m) for m in path)
    ]


def _export(
    trees: Iterable[Tree], filters: ExportFilters, per_tree: Callable[[Tree], Iterable[Record]]
) -> list[Record]:
    """Records of every tree that passes the tree-level filters, in tree order."""
    return [record for tree in trees if filters.keeps_tree(tree) for record in per_tree(tree)]


def export_sft(trees: Iterable[Tree], filters: ExportFilters = DEFAULT_FILTERS) -> list[Record]:
    """SFT records: {"messages": [{"role", "content"}, ...], "tree_id"} (loss on assistant turns)."""
    return _export(
        trees,
        filters,
        lambda tree: (
            {"messages": chat(thread), "tree_id": tree.message_tree_id}
            for thread in sft_threads(tree, filters)
        ),
    )


def export_rm(trees: Iterable[Tree], filters: ExportFilters = DEFAULT_FILTERS) -> list[Record]:
    """Ranking records: {"prompt": [turns], "replies": [texts best-first], "ranks", "tree_id"}."""
    return _export(
        trees,
        filters,
        lambda tree: (
            {
                "prompt": chat(prefix),
                "replies": [r.text for r in replies],
                "ranks": [r.rank for r in replies],
                "tree_id": tree.message_tree_id,
            }
            for prefix, replies in ranking_examples(tree, filters)
        ),
    )


def export_rl(trees: Iterable[Tree], filters: ExportFilters = DEFAULT_FILTERS) -> list[Record]:
    """RL prompt records: {"prompt": [turns ending on the user], "tree_id"}."""
    return _export(
        trees,
        filters,
        lambda tree: (
            {"prompt": chat(prefix), "tree_id": tree.message_tree_id}
            for prefix in rl_prompts(tree, filters)
        ),
    )


EXPORTERS: dict[str, Callable[[Iterable[Tree], ExportFilters], list[Record]]] = {
    "sft": export_sft,
    "rm": export_rm,
    "rl": export_rl,
}


def pairwise_preferences(ranks: Sequence[int]) -> list[tuple[int, int]]:
    """All (i, j) reply-index pairs of one ranking example where reply i is preferred (rank_i < rank_j)."""
    return [(i, j) for i in range(len(ranks)) for j in range(len(ranks)) if ranks[i] < ranks[j]]


def in_validation(tree_id: str, fraction: float, seed: int = 0) -> bool:
    """Whether a tree goes to validation, from a seeded hash of its id.

    The answer never depends on the other trees, the export mode or the filters, so a tree is
    never in train for one export and in validation for another.
    """
    if not 0.0 <= fraction < 1.0:
        raise ValueError(f"validation fraction must be in [0, 1), got {fraction}")
    digest = hashlib.sha256(f"{seed}\x00{tree_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2.0**64 < fraction


def split_by_tree(
    records: Iterable[Record], fraction: float, seed: int = 0
) -> tuple[list[Record], list[Record]]:
    """Split records into (train, validation) by their tree_id, seeded; order is kept."""
    train: list[Record] = []
    val: list[Record] = []
    for record in records:
        (val if in_validation(record["tree_id"], fraction, seed) else train).append(record)
    return train, val
