"""JSON-lines files (.gz allowed): every bad line is an error naming file:line."""

from __future__ import annotations

import gzip
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from alignlab.errors import DataError


def iter_jsonl(path: str | Path, what: str = "data file") -> Iterator[tuple[str, dict[str, Any]]]:
    """Yield ('file:line', object) for each non-blank line; a missing file or bad line raises DataError."""
    p = Path(path)
    if not p.is_file():
        raise DataError(f"{what} not found: {p}")
    opener = gzip.open if p.suffix == ".gz" else open
    with opener(p, "rt", encoding="utf-8") as f:
        for i, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as e:
                raise DataError(f"{p}:{i}: not valid JSON ({e.msg})") from e
            if not isinstance(row, dict):
                raise DataError(f"{p}:{i}: each line must be a JSON object")
            yield f"{p}:{i}", row


def read_jsonl(path: str | Path) -> list[dict[str, Any]]:
    """All rows of a JSONL file (.gz allowed); a bad line raises DataError naming it, and so does an empty file."""
    rows = [row for _, row in iter_jsonl(path)]
    if not rows:
        raise DataError(f"{path}: no examples")
    return rows
