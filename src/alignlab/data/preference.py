"""Preference and ranking data: read, validate, split (tokenizing and batching: preference_batches.py).

Accepted rows, from any input form `alignlab.data.tables.read_rows` reads (JSONL, JSON, CSV,
parquet, dataset folders; columns mapped by a `ColumnMap`), detected per row:
- `{"prompt", "chosen", "rejected"}`: prompt a string or chat messages; chosen/rejected a string
  or a one-message assistant list (TRL's conversational form).
- `{"chosen", "rejected"}` without a prompt: whole dialogues, either HH-RLHF text
  ("\\n\\nHuman: … \\n\\nAssistant: …") or message lists; the shared turns are the prompt
  and the final assistant turn is the response.
- `{"prompt", "replies", "ranks"}`: the ranking export of `alignlab data export --mode rm`
  (replies best-first; `ranks` optional, 0 = best). For pairwise training every
  (better, worse) pair is used (or best-vs-rest / best-vs-worst).

A bad row (missing field, empty text, chosen == rejected, mismatched dialogues) raises
`DataError` naming file:line, or with `on_bad="skip"` is counted and reported — never
dropped silently. Sequences longer than `max_length` are truncated and counted (or raise
with `truncation="error"`).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from alignlab.data.tables import ColumnMap, read_rows
from alignlab.errors import DataError

Messages = list[dict[str, str]]
Prompt = str | Messages
ROLES = {"user": "user", "assistant": "assistant", "system": "system", "prompter": "user", "human": "user"}
PAIRINGS = ("all", "best_vs_rest", "best_vs_worst")
_HH_TURN = re.compile(r"\n\n(Human|Assistant):[ ]?")


@dataclass
class RankingRecord:
    """One prompt with ≥ 2 replies and their ranks (0 = best); a pair is a ranking of two."""

    prompt: Prompt
    replies: list[str]
    ranks: list[int]
    where: str
    group: str  # rows of one group (tree or prompt) stay on one side of a split


@dataclass
class PreferenceRecord:
    """One (prompt, chosen, rejected) triple in text form."""

    prompt: Prompt
    chosen: str
    rejected: str
    where: str
    group: str


@dataclass
class ReadReport:
    """Rows read and rows skipped (with where and why), so nothing is dropped silently."""

    rows: int = 0
    skipped: list[tuple[str, str]] = field(default_factory=list)

    def summary(self) -> str:
        if not self.skipped:
            return f"{self.rows} rows read, none skipped"
        eg = "; ".join(f"{w}: {why}" for w, why in self.skipped[:3])
        return f"{self.rows} rows read, {len(self.skipped)} skipped (e.g. {eg})"


# --- parsing ----------------------------------------------------------------------------


def _messages(value: Any, where: str, name: str) -> Messages:
    if not isinstance(value, list) or not value:
        raise DataError(f"{where}: '{name}' must be a non-empty list of {{role, content}} messages")
    out = []
    for i, m in enumerate(value):
        if not isinstance(m, dict) or "role" not in m or "content" not in m:
            raise DataError(f"{where}: '{name}'[{i}] must be an object with 'role' and 'content'")
        role = ROLES.get(str(m["role"]).lower())
        if role is None:
            raise DataError(f"{where}: '{name}'[{i}] has unknown role {m['role']!r} (use user/assistant/system)")
        if not isinstance(m["content"], str) or not m["content"].strip():
            raise DataError(f"{where}: '{name}'[{i}] has empty content")
        out.append({"role": role, "content": m["content"]})
    return out


def _prompt(value: Any, where: str) -> Prompt:
    if isinstance(value, str):
        if not value.strip():
            raise DataError(f"{where}: 'prompt' is empty")
        return value
    return _messages(value, where, "prompt")


def _response(value: Any, where: str, name: str) -> str:
    if isinstance(value, list):
        msgs = _messages(value, where, name)
        if len(msgs) != 1 or msgs[0]["role"] != "assistant":
            raise DataError(f"{where}: '{name}' as a list must be exactly one assistant message")
        return msgs[0]["content"]
    if not isinstance(value, str):
        raise DataError(f"{where}: '{name}' must be a string, got {type(value).__name__}")
    if not value.strip():
        raise DataError(f"{where}: '{name}' is empty")
    return value


def parse_hh(text: str, where: str, name: str) -> Messages:
    """An HH-RLHF dialogue string ("\\n\\nHuman: …\\n\\nAssistant: …") as chat messages."""
    parts = _HH_TURN.split(text)
    if len(parts) < 3 or parts[0].strip():
        raise DataError(f"{where}: '{name}' is not an HH-RLHF dialogue (expected '\\n\\nHuman: …' turns)")
    msgs = []
    for role, content in zip(parts[1::2], parts[2::2]):
        msgs.append({"role": "user" if role == "Human" else "assistant", "content": content})
    return msgs


def _dialogue(value: Any, where: str, name: str) -> Messages:
    msgs = parse_hh(value, where, name) if isinstance(value, str) else _messages(value, where, name)
    if msgs[-1]["role"] != "assistant":
        raise DataError(f"{where}: '{name}' must end with an assistant turn")
    if not msgs[-1]["content"].strip():
        raise DataError(f"{where}: '{name}' ends with an empty assistant turn")
    for i, m in enumerate(msgs[:-1]):
        if not m["content"].strip():
            raise DataError(f"{where}: '{name}' turn {i} is empty")
    return msgs


def _group_key(prompt: Prompt) -> str:
    if isinstance(prompt, str):
        return prompt
    return "\x1e".join(f"{m['role']}\x1f{m['content']}" for m in prompt)


def parse_row(row: dict[str, Any], where: str) -> RankingRecord:
    """Any accepted row as a RankingRecord (a pair becomes a ranking of two); DataError if bad."""
    tree = row.get("tree_id")
    if "replies" in row:
        if "prompt" not in row:
            raise DataError(f"{where}: ranking row needs 'prompt' (has {sorted(row)})")
        prompt = _prompt(row["prompt"], where)
        replies = row["replies"]
        if not isinstance(replies, list) or len(replies) < 2:
            raise DataError(f"{where}: 'replies' must be a list of at least 2 texts")
        texts = [_response(r, where, f"replies[{i}]") for i, r in enumerate(replies)]
        ranks = row.get("ranks", list(range(len(texts))))
        if not isinstance(ranks, list) or len(ranks) != len(texts) or not all(isinstance(r, int) for r in ranks):
            raise DataError(f"{where}: 'ranks' must be a list of {len(texts)} integers")
        if len(set(ranks)) < 2:
            raise DataError(f"{where}: all replies have the same rank; no preference to learn")
        return RankingRecord(prompt, texts, list(ranks), where, str(tree or _group_key(prompt)))
    missing = [k for k in ("chosen", "rejected") if k not in row]
    if missing:
        raise DataError(
            f"{where}: missing field(s) {missing}; a row needs 'prompt'+'chosen'+'rejected', "
            f"'chosen'+'rejected' dialogues, or 'prompt'+'replies' (has {sorted(row)})"
        )
    if "prompt" in row:
        prompt = _prompt(row["prompt"], where)
        chosen = _response(row["chosen"], where, "chosen")
        rejected = _response(row["rejected"], where, "rejected")
    else:
        c = _dialogue(row["chosen"], where, "chosen")
        r = _dialogue(row["rejected"], where, "rejected")
        if c[:-1] != r[:-1]:
            raise DataError(f"{where}: 'chosen' and 'rejected' dialogues differ before their last assistant turn")
        if len(c) < 2:
            raise DataError(f"{where}: dialogue has no user turn before the assistant's reply")
        prompt, chosen, rejected = c[:-1], c[-1]["content"], r[-1]["content"]
    if chosen == rejected:
        raise DataError(f"{where}: 'chosen' and 'rejected' are identical")
    return RankingRecord(prompt, [chosen, rejected], [0, 1], where, str(tree or _group_key(prompt)))


def read_rankings(path: str | Path, on_bad: str = "error", columns: ColumnMap | None = None,
                  split: str = "train") -> tuple[list[RankingRecord], ReadReport]:
    """Every row of a preference/ranking data file or dataset folder as a RankingRecord (bad rows:
    error or skip); `columns` and `split` as in `read_rows`."""
    if on_bad not in ("error", "skip"):
        raise DataError(f"on_bad must be 'error' or 'skip', got {on_bad!r}")
    rows = read_rows(path, columns, split)
    if not rows:
        raise DataError(f"{path}: no examples (the file has no JSON rows)")
    report = ReadReport(rows=len(rows))
    out = []
    for where, row in rows:
        try:
            out.append(parse_row(row, where))
        except DataError as e:
            if on_bad == "error":
                raise
            report.skipped.append((where, str(e).removeprefix(f"{where}: ")))
    if not out:
        raise DataError(f"{path}: no usable rows ({report.summary()})")
    return out, report


def to_pairs(records: Sequence[RankingRecord], pairing: str = "all") -> list[PreferenceRecord]:
    """Preference pairs of ranking records: all (better, worse) pairs, best-vs-rest or best-vs-worst."""
    if pairing not in PAIRINGS:
        raise DataError(f"pairs: '{pairing}' is not one of {list(PAIRINGS)}")
    out = []
    for rec in records:
        order = sorted(range(len(rec.replies)), key=lambda i: rec.ranks[i])
        best, worst = order[0], order[-1]
        for i in order:
            for j in order:
                if rec.ranks[i] >= rec.ranks[j]:
                    continue
                if pairing == "best_vs_rest" and rec.ranks[i] != rec.ranks[best]:
                    continue
                if pairing == "best_vs_worst" and (i != best or rec.ranks[j] != rec.ranks[worst]):
                    continue
                out.append(PreferenceRecord(rec.prompt, rec.replies[i], rec.replies[j], rec.where, rec.group))
    return out


def read_preferences(path: str | Path, on_bad: str = "error", pairing: str = "all", columns: ColumnMap | None = None,
                     split: str = "train") -> tuple[list[PreferenceRecord], ReadReport]:
    """Preference pairs from any accepted row shape (ranking rows expand into pairs)."""
    records, report = read_rankings(path, on_bad, columns, split)
    return to_pairs(records, pairing), report


def split_records(records: Sequence[Any], fraction: float, seed: int = 0) -> tuple[list[Any], list[Any]]:
    """(train, validation) by a seeded hash of each record's group (tree id or prompt)."""
    from alignlab.data.oasst.export import in_validation

    train, val = [], []
    for r in records:
        (val if in_validation(r.group, fraction, seed) else train).append(r)
    return train, val
