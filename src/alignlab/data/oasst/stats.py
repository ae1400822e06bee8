"""Summary numbers for a set of conversation trees (what a data card or `alignlab data stats` shows)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field

from .models import ASSISTANT, Tree


@dataclass
class TreeStats:
    """Counts over trees: roles, languages, states, depths, ranked sibling groups, label means."""

    trees: int = 0
    messages: int = 0
    roles: Counter[str] = field(default_factory=Counter)
    languages: Counter[str] = field(default_factory=Counter)
    tree_states: Counter[str] = field(default_factory=Counter)
    deleted: int = 0
    synthetic: int = 0
    depths: Counter[int] = field(default_factory=Counter)  # messages per depth (root = 0)
    tree_depths: Counter[int] = field(default_factory=Counter)  # trees per longest thread length
    ranked_groups: int = 0  # sibling groups with >= 2 ranked assistant replies
    ranked_replies: int = 0  # ranked assistant replies inside those groups
    label_means: dict[str, float] = field(default_factory=dict)  # mean value per label name
    label_messages: Counter[str] = field(default_factory=Counter)  # messages carrying each label

    def rows(self) -> list[tuple[str, str]]:
        """(name, value) rows for printing as a table."""

        def fmt(counter: Counter) -> str:
            return ", ".join(f"{k}: {v}" for k, v in sorted(counter.items())) or "-"

        rows = [
            ("trees", str(self.trees)),
            ("messages", str(self.messages)),
            ("messages by role", fmt(self.roles)),
            ("languages (messages)", fmt(self.languages)),
            ("tree states", fmt(self.tree_states)),
            ("deleted / synthetic", f"{self.deleted} / {self.synthetic}"),
            ("messages by depth", fmt(self.depths)),
            ("trees by longest thread", fmt(self.tree_depths)),
            ("ranked sibling groups", f"{self.ranked_groups} ({self.ranked_replies} replies)"),
        ]
        rows += [
            (f"label {name} (mean, n={self.label_messages[name]})", f"{mean:.3f}")
            for name, mean in sorted(self.label_means.items())
        ]
        return rows


def stats(trees: Iterable[Tree]) -> TreeStats:
    """Count what is in `trees`; a missing tree state counts as 'unrecorded'."""
    out = TreeStats()
    label_sums: Counter[str] = Counter()
    for tree in trees:
        out.trees += 1
        out.tree_states[tree.tree_state or "unrecorded"] += 1
        stack = [(tree.prompt, 0)]
        deepest = 0
        while stack:
            message, depth = stack.pop()
            deepest = max(deepest, depth)
            out.messages += 1
            out.roles[message.role] += 1
            out.languages[message.lang or "unknown"] += 1
            out.deleted += message.deleted
            out.synthetic += message.synthetic
            out.depths[depth] += 1
            for name, label in message.labels.items():
                label_sums[name] += label.value
                out.label_messages[name] += 1
            ranked = sum(1 for r in message.replies if r.role == ASSISTANT and r.rank is not None)
            if ranked >= 2:
                out.ranked_groups += 1
                out.ranked_replies += ranked
            stack.extend((reply, depth + 1) for reply in message.replies)
        out.tree_depths[deepest + 1] += 1
    out.label_means = {name: label_sums[name] / out.label_messages[name] for name in label_sums}
    return out
