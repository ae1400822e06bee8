"""Rebuild trees from parent ids and check every SPEC rule; bad trees are skipped and reported."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import replace

from .issues import (
    BAD_ROLE,
    CYCLE,
    DUPLICATE_ID,
    DUPLICATE_RANK,
    LABEL_RANGE,
    LINE_KINDS,
    MULTIPLE_ROOTS,
    ROLE_ORDER,
    UNKNOWN_PARENT,
    DataError,
    Issue,
    ValidationReport,
)
from .models import PROMPTER, ROLES, Message, Tree


class _Groups:
    """Union-find over message indices: messages linked by parent, tree id or a shared id."""

    def __init__(self, n: int) -> None:
        """Start with every message in its own group."""
        self.parent = list(range(n))

    def find(self, i: int) -> int:
        """The representative of i's group (with path halving)."""
        while self.parent[i] != i:
            self.parent[i] = self.parent[self.parent[i]]
            i = self.parent[i]
        return i

    def union(self, i: int, j: int) -> None:
        """Merge the groups of i and j."""
        self.parent[self.find(i)] = self.find(j)

    def groups(self) -> list[list[int]]:
        """Every group as a sorted list of indices."""
        out: dict[int, list[int]] = {}
        for i in range(len(self.parent)):
            out.setdefault(self.find(i), []).append(i)
        return list(out.values())


def _at(kind: str, text: str, message: Message, file: str | None) -> Issue:
    """An issue located at `message` (its line and id)."""
    return Issue(kind, text, file, message.line, message.message_id)


def _structure_issues(
    group: list[int], msgs: Sequence[Message], first: dict[str, int], file: str | None
) -> list[Issue]:
    """Unknown parents, cycles and extra roots inside one group."""
    issues: list[Issue] = []
    roots = [i for i in group if msgs[i].parent_id is None]
    done: set[int] = set()
    for start in group:
        path: list[int] = []
        on_path: set[int] = set()
        node: int | None = start
        while node is not None and node not in done:
            if node in on_path:
                loop = path[path.index(node) :]
                ids = " -> ".join(msgs[k].message_id for k in [*loop, node])
                issues.append(_at(CYCLE, f"parent ids form a cycle: {ids}", msgs[node], file))
                break
            path.append(node)
            on_path.add(node)
            m = msgs[node]
            if m.parent_id is None:
                node = None
            elif m.parent_id in first:
                node = first[m.parent_id]
            else:
                text = f"parent {m.parent_id!r} is not in the data"
                issues.append(_at(UNKNOWN_PARENT, text, m, file))
                node = None
        done.update(path)
    if len(roots) > 1:
        ids = ", ".join(msgs[i].message_id for i in roots)
        text = f"one tree has {len(roots)} roots: {ids}"
        issues += [_at(MULTIPLE_ROOTS, text, msgs[i], file) for i in roots[1:]]
    return issues


def _content_issues(
    group: list[int], msgs: Sequence[Message], first: dict[str, int], file: str | None
) -> list[Issue]:
    """Roles, sibling ranks and label ranges inside one group."""
    issues: list[Issue] = []
    ranks: dict[tuple[str, int], str] = {}
    for i in group:
        m = msgs[i]
        parent = msgs[first[m.parent_id]] if m.parent_id in first else None
        if m.role not in ROLES:
            text = f"role {m.role!r} is neither prompter nor assistant"
            issues.append(_at(BAD_ROLE, text, m, file))
        elif m.parent_id is None and m.role != PROMPTER:
            text = f"the root is an {m.role} message; a tree starts with a prompter"
            issues.append(_at(ROLE_ORDER, text, m, file))
        elif parent is not None and parent.role == m.role:
            text = f"{m.role} replies to {m.role} {parent.message_id}; roles must alternate"
            issues.append(_at(ROLE_ORDER, text, m, file))
        if m.rank is not None and m.parent_id is not None:
            sibling = ranks.setdefault((m.parent_id, m.rank), m.message_id)
            if sibling != m.message_id:
                text = f"rank {m.rank} is also held by sibling {sibling}"
                issues.append(_at(DUPLICATE_RANK, text, m, file))
        for name, label in m.labels.items():
            if not 0.0 <= label.value <= 1.0:
                text = f"label {name!r} has value {label.value}, outside [0, 1]"
                issues.append(_at(LABEL_RANGE, text, m, file))
    return issues


def _assemble(group: list[int], msgs: Sequence[Message], first: dict[str, int]) -> Tree:
    """Link copies of a checked group's messages into a `Tree` (replies in file order)."""
    copies = {i: replace(msgs[i], replies=[]) for i in group}
    root = next(copies[i] for i in group if msgs[i].parent_id is None)
    for i in group:
        parent_id = msgs[i].parent_id
        if parent_id is not None:
            copies[first[parent_id]].replies.append(copies[i])
    tree_id = root.message_tree_id or root.message_id
    state = root.tree_state or next((c.tree_state for c in copies.values() if c.tree_state), None)
    for copy in copies.values():
        copy.message_tree_id = copy.message_tree_id or tree_id
        copy.tree_state = copy.tree_state or state
    return Tree(message_tree_id=tree_id, prompt=root, tree_state=state)


def _root_index(group: list[int], msgs: Sequence[Message]) -> int:
    """Where a group's root sits in the file (its first message if it has none): orders trees."""
    return next((i for i in group if msgs[i].parent_id is None), group[0])


def build_trees(
    messages: Sequence[Message],
    *,
    file: str | None = None,
    issues: Iterable[Issue] = (),
    strict: bool = False,
) -> tuple[list[Tree], ValidationReport]:
    """Group flat messages into trees, check them, and return the good trees and a report.

    `issues` are problems already met while reading (they are reported too, and a tree with a
    message from a line that had a field problem is skipped). `strict` raises `DataError` for
    the first problem (by line) instead of skipping.
    """
    found = list(issues)
    tainted_lines = {i.line for i in found if i.kind not in LINE_KINDS and i.line is not None}
    groups = _Groups(len(messages))
    first: dict[str, int] = {}
    by_tree: dict[str, int] = {}
    for i, m in enumerate(messages):
        if m.message_id in first:
            earlier = messages[first[m.message_id]].line
            found.append(
                _at(DUPLICATE_ID, f"id already used by the message on line {earlier}", m, file)
            )
            groups.union(i, first[m.message_id])
        else:
            first[m.message_id] = i
        if m.message_tree_id is not None:
            groups.union(i, by_tree.setdefault(m.message_tree_id, i))
    for i, m in enumerate(messages):
        if m.parent_id is not None and m.parent_id in first:
            groups.union(i, first[m.parent_id])

    duplicated = {i for i, m in enumerate(messages) if first[m.message_id] != i}
    report = ValidationReport(file=file)
    trees: list[Tree] = []
    for group in sorted(groups.groups(), key=lambda g: _root_index(g, messages)):
        problems = _structure_issues(group, messages, first, file)
        problems += _content_issues(group, messages, first, file)
        found.extend(problems)
        bad = problems or any(i in duplicated or messages[i].line in tainted_lines for i in group)
        if bad:
            report.trees_skipped += 1
            report.messages_skipped += len(group)
        else:
            trees.append(_assemble(group, messages, first))
            report.messages += len(group)
    report.trees = len(trees)
    report.issues = sorted(found, key=lambda i: (i.line is None, i.line or 0))
    if strict and report.issues:
        raise DataError(report.issues[0], len(report.issues) - 1)
    return trees, report


def validate(
    messages: Sequence[Message], *, file: str | None = None, strict: bool = False
) -> ValidationReport:
    """Check in-memory messages against every SPEC rule (for files use `read_trees`/`validate_file`)."""
    return build_trees(messages, file=file, strict=strict)[1]
