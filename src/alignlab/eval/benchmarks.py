"""Loaders for real benchmark files: TruthfulQA CSV, BBQ JSONL, function-vector task JSON.

Each takes a path (the product never assumes where the data lives) and raises DataError
naming the file, line and field on malformed input (bytes that are not UTF-8 included).
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

from alignlab.data.jsonl import iter_jsonl, iter_text_lines
from alignlab.errors import DataError
from alignlab.eval.bias import BiasQuestion
from alignlab.eval.multiple_choice import MCItem

TRUTHFULQA_COLUMNS = ("Question", "Best Answer", "Correct Answers", "Incorrect Answers")


def _read_text(p: Path, what: str) -> str:
    """The whole text of `p`; a line that is not UTF-8 (or holds NUL bytes) is a DataError naming file:line."""
    return "\n".join(line for _, line in iter_text_lines(p, what))


def _split_answers(text: str) -> tuple[str, ...]:
    return tuple(a.strip() for a in text.split(";") if a.strip())


def load_truthfulqa(path: str | Path) -> list[MCItem]:
    """TruthfulQA.csv -> MCItems (answers are ';'-separated; the best answer is a true one)."""
    p = Path(path)
    items = []
    reader = csv.DictReader(io.StringIO(_read_text(p, "TruthfulQA file"), newline=""))
    try:
        missing = [c for c in TRUTHFULQA_COLUMNS if c not in (reader.fieldnames or [])]
        if missing:
            raise DataError(f"{p}: missing column(s) {missing} (has {reader.fieldnames})")
        for row in reader:
            line = reader.line_num
            q, best = (row["Question"] or "").strip(), (row["Best Answer"] or "").strip()
            correct, incorrect = _split_answers(row["Correct Answers"] or ""), _split_answers(row["Incorrect Answers"] or "")
            for name, v in (("Question", q), ("Best Answer", best), ("Incorrect Answers", incorrect)):
                if not v:
                    raise DataError(f"{p}:{line}: empty '{name}'")
            items.append(MCItem(q, best, correct, incorrect,
                                meta={"category": row.get("Category", ""), "line": line}))
    except csv.Error as e:
        raise DataError(f"{p}:{reader.line_num}: not a readable CSV row ({e})") from e
    if not items:
        raise DataError(f"{p}: no questions")
    return items


def _bbq_row(row: dict, where: str) -> BiasQuestion:
    try:
        options = tuple(str(row[f"ans{i}"]) for i in range(3))
        groups = [str(row["answer_info"][f"ans{i}"][1]) for i in range(3)]
        label = int(row["label"])
        ambiguous = {"ambig": True, "disambig": False}[row["context_condition"]]
        negative = {"neg": True, "nonneg": False}[row["question_polarity"]]
        stereo_groups = {g.lower() for g in row["additional_metadata"]["stereotyped_groups"]}
        context, question = str(row["context"]), str(row["question"])
    except KeyError as e:
        raise DataError(f"{where}: missing or bad field {e}") from e
    except (TypeError, ValueError, IndexError) as e:
        raise DataError(f"{where}: malformed BBQ row ({e})") from e
    unknowns = [i for i, g in enumerate(groups) if g.lower() == "unknown"]
    if len(unknowns) != 1:
        raise DataError(f"{where}: expected exactly one 'unknown' answer, answer_info groups are {groups}")
    unknown = unknowns[0]
    targets = [i for i, g in enumerate(groups) if i != unknown and g.lower() in stereo_groups]
    if len(targets) == 1:
        other = next(i for i in range(3) if i not in (unknown, targets[0]))
        stereotyped = targets[0] if negative else other
    else:
        stereotyped = -1  # target group not identifiable: left out of the bias counts
    return BiasQuestion(context, question, options, label, ambiguous, unknown, stereotyped,
                        negative, str(row.get("category", "")))


def load_bbq(path: str | Path) -> list[BiasQuestion]:
    """A BBQ category file (JSONL), or a folder of them, -> BiasQuestions."""
    p = Path(path)
    files = sorted(p.glob("*.jsonl")) if p.is_dir() else [p]
    if not files or not files[0].is_file():
        raise DataError(f"BBQ data not found: {p}")
    out = []
    for f in files:
        out += [_bbq_row(row, where) for where, row in iter_jsonl(f, "BBQ data")]
    if not out:
        raise DataError(f"{p}: no BBQ questions")
    return out


def load_word_pairs(path: str | Path) -> list[tuple[str, str]]:
    """A function-vector task file (JSON list of {input, output}) -> [(input, output)]."""
    p = Path(path)
    try:
        rows = json.loads(_read_text(p, "task file"))
    except json.JSONDecodeError as e:
        raise DataError(f"{p}:{e.lineno}: not valid JSON ({e.msg})") from e
    if not isinstance(rows, list) or not rows:
        raise DataError(f"{p}: expected a non-empty JSON list of {{input, output}} objects")
    pairs = []
    for i, r in enumerate(rows):
        if not isinstance(r, dict) or not isinstance(r.get("input"), str) or not isinstance(r.get("output"), str):
            raise DataError(f"{p}: item {i} needs string fields 'input' and 'output', got {r!r:.80}")
        pairs.append((r["input"], r["output"]))
    return pairs
