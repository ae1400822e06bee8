"""Text and JSON-lines files (gzip allowed): every unreadable byte or bad line is a DataError
naming file:line, a corrupt or truncated .gz one naming the file."""

from __future__ import annotations

import gzip
import json
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from alignlab.errors import DataError

_GZIP_MAGIC = b"\x1f\x8b"


def _open_binary(p: Path):
    """A binary line stream of `p`, gunzipped when it starts with the gzip magic bytes."""
    raw = open(p, "rb")  # noqa: SIM115 - closed by the caller's `with`
    head = raw.read(2)
    raw.seek(0)
    if head == _GZIP_MAGIC:
        return gzip.GzipFile(fileobj=raw, mode="rb")
    if p.suffix == ".gz":
        raw.close()
        raise DataError(f"{p}: not a gzip file (a .gz file must start with the gzip header)")
    return raw


def iter_text_lines(path: str | Path, what: str = "data file") -> Iterator[tuple[int, str]]:
    """Yield (1-based line number, text without the newline) of a UTF-8 text file, plain or gzip.

    A missing file, a line that is not UTF-8 or holds NUL bytes, or a corrupt / truncated gzip
    stream raises DataError naming the file (and the line)."""
    p = Path(path)
    if not p.is_file():
        raise DataError(f"{what} not found: {p}" + (" (a folder)" if p.is_dir() else ""))
    number = 0
    try:
        with _open_binary(p) as stream:
            for number, data in enumerate(stream, 1):
                try:
                    text = data.decode("utf-8-sig" if number == 1 else "utf-8")
                except UnicodeDecodeError as e:
                    raise DataError(f"{p}:{number}: not UTF-8 text (bad byte at column {e.start + 1})") from e
                if "\0" in text:
                    raise DataError(f"{p}:{number}: binary content (NUL byte); expected text")
                yield number, text.rstrip("\r\n")
    except (EOFError, zlib.error, gzip.BadGzipFile) as e:
        where = f"after line {number}" if number else "at the start"
        raise DataError(f"{p}: corrupt or truncated gzip file ({where}: {e or type(e).__name__})") from e


def iter_jsonl(path: str | Path, what: str = "data file") -> Iterator[tuple[str, dict[str, Any]]]:
    """Yield ('file:line', object) for each non-blank line; a missing file or bad line raises DataError."""
    p = Path(path)
    for i, line in iter_text_lines(p, what):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as e:
            raise DataError(f"{p}:{i}: not valid JSON ({e.msg})") from e
        except RecursionError as e:
            raise DataError(f"{p}:{i}: JSON nested too deeply to read") from e
        if not isinstance(row, dict):
            raise DataError(f"{p}:{i}: each line must be a JSON object")
        yield f"{p}:{i}", row


def read_jsonl(path: str | Path, allow_empty: bool = False) -> list[dict[str, Any]]:
    """All rows of a JSONL file (.gz allowed); a bad line raises DataError naming it, and so does
    a file without rows unless `allow_empty`."""
    rows = [row for _, row in iter_jsonl(path)]
    if not rows and not allow_empty:
        raise DataError(f"{path}: no examples (the file has no JSON rows)")
    return rows
