"""Read OpenAssistant JSONL (messages, trees or parquet-style rows; plain or gzip) and write it back."""

from __future__ import annotations

import gzip
import json
import os
import tempfile
import zlib
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from .issues import (
    BAD_FIELD,
    BAD_RECORD,
    MALFORMED_JSON,
    PARENT_MISMATCH,
    UNREADABLE,
    DataError,
    Issue,
    ValidationReport,
)
from .models import Message, Tree
from .records import FieldError, message_from_dict, message_to_dict
from .validate import build_trees

PathLike = str | os.PathLike[str]
_GZIP_MAGIC = b"\x1f\x8b"


def _lines(path: PathLike) -> Iterator[tuple[int, bytes]]:
    """Yield (1-based line number, raw bytes) of a plain or gzip file; unreadable → `DataError`."""
    line = 0
    try:
        with open(path, "rb") as raw:
            gzipped = raw.read(2) == _GZIP_MAGIC
            raw.seek(0)
            stream = gzip.GzipFile(fileobj=raw) if gzipped else raw
            for line, data in enumerate(stream, start=1):
                yield line, data
    except (OSError, EOFError, zlib.error) as error:
        reason = error.strerror if isinstance(error, OSError) and error.strerror else str(error)
        where = f"after line {line}" if line else "from the start"
        message = f"cannot read the file {where}: {reason or type(error).__name__}"
        raise DataError(Issue(UNREADABLE, message, str(path), line or None)) from error


def iter_json_lines(path: PathLike) -> Iterator[tuple[int, Any] | Issue]:
    """Yield (line number, decoded JSON) per non-blank line, or an `Issue` for a line that is not JSON."""
    file = str(path)
    for number, data in _lines(path):
        if not data.strip():
            continue
        try:
            text = data.decode("utf-8-sig" if number == 1 else "utf-8")
            yield number, json.loads(text)
        except UnicodeDecodeError as error:
            yield Issue(MALFORMED_JSON, f"not UTF-8 text (byte {error.start})", file, number)
        except json.JSONDecodeError as error:
            yield Issue(
                MALFORMED_JSON, f"not valid JSON: {error.msg} at column {error.colno}", file, number
            )
        except RecursionError:
            yield Issue(MALFORMED_JSON, "JSON nested too deeply to read", file, number)


def _flatten(
    root: Any,
    line: int,
    file: str,
    tree_id: str | None,
    state: str | None,
    messages: list[Message],
    issues: list[Issue],
) -> None:
    """Append `root` and its nested replies as flat messages (parent ids from the nesting)."""

    def report(kind: str, text: str, message_id: str | None = None) -> None:
        issues.append(Issue(kind, text, file, line, message_id))

    stack: list[tuple[Any, str | None]] = [(root, None)]
    while stack:
        data, parent = stack.pop()
        if not isinstance(data, Mapping):
            report(BAD_FIELD, f"a reply of this message is a {type(data).__name__}", parent)
            continue
        errors: list[FieldError] = []
        try:
            message = message_from_dict(data, line=line, errors=errors)
        except FieldError as error:  # no usable message_id: it cannot be placed in a tree
            report(BAD_FIELD, f"{error}; the message and its replies are left out")
            continue
        mid = message.message_id
        for error in errors:
            report(BAD_FIELD, str(error), mid)
        if parent is not None:
            if "parent_id" in data and message.parent_id != parent:
                text = f"parent_id {message.parent_id!r}, but nested under {parent!r}"
                report(PARENT_MISMATCH, text, mid)
            message.parent_id = parent
        message.message_tree_id = message.message_tree_id or tree_id
        message.tree_state = message.tree_state or state
        messages.append(message)
        replies = data.get("replies")
        if isinstance(replies, list):
            stack.extend((reply, mid) for reply in reversed(replies))
        elif replies is not None:
            report(BAD_FIELD, "field 'replies' must be a list", mid)


def _parse_record(
    obj: Any, line: int, file: str, messages: list[Message], issues: list[Issue]
) -> None:
    """Detect the shape of one decoded line (tree or message) and append its messages."""
    if isinstance(obj, Mapping) and isinstance(obj.get("prompt"), Mapping):
        tree_id, state = obj.get("message_tree_id"), obj.get("tree_state")
        for name, value in (("message_tree_id", tree_id), ("tree_state", state)):
            if value is not None and not isinstance(value, str):
                issues.append(Issue(BAD_FIELD, f"tree field {name!r} must be a string", file, line))
        tree_id = tree_id if isinstance(tree_id, str) else None
        state = state if isinstance(state, str) else None
        _flatten(obj["prompt"], line, file, tree_id, state, messages, issues)
    elif isinstance(obj, Mapping) and "message_id" in obj:
        _flatten(obj, line, file, None, None, messages, issues)
    else:
        what = "an object without 'message_id' or 'prompt'"
        if not isinstance(obj, Mapping):
            what = f"a JSON {type(obj).__name__}"
        issues.append(Issue(BAD_RECORD, f"neither a message nor a tree: {what}", file, line))


def _parse_file(path: PathLike) -> tuple[list[Message], list[Issue], int]:
    """All messages of a file in file order, the problems met, and the number of non-blank lines."""
    file, messages, issues, records = str(path), [], [], 0
    for item in iter_json_lines(path):
        records += 1
        if isinstance(item, Issue):
            issues.append(item)
        else:
            _parse_record(item[1], item[0], file, messages, issues)
    return messages, issues, records


def read_messages(path: PathLike, *, strict: bool = False) -> tuple[list[Message], list[Issue]]:
    """Every message of a file of any shape, flat (replies empty), plus the line problems met.

    Trees are not checked here (see `read_trees`); `strict` raises `DataError` on the first problem.
    """
    messages, issues, _ = _parse_file(path)
    if strict and issues:
        raise DataError(issues[0], len(issues) - 1)
    return messages, issues


def read_trees(path: PathLike, *, strict: bool = False) -> tuple[list[Tree], ValidationReport]:
    """Read a file of any shape, rebuild and validate its trees; bad trees are skipped and reported.

    `strict` raises `DataError` (file, line, message id) on the first problem instead.
    """
    messages, issues, records = _parse_file(path)
    trees, report = build_trees(messages, file=str(path), issues=issues, strict=strict)
    report.records = records
    return trees, report


def tree_to_dict(tree: Tree) -> dict[str, Any]:
    """The tree-file form of one tree: {message_tree_id, tree_state, prompt: {..., replies}}."""
    return {
        "message_tree_id": tree.message_tree_id,
        "tree_state": tree.tree_state,
        "prompt": message_to_dict(tree.prompt, nested=True),
    }


def _write_temp(path: Path, records: Iterable[Mapping[str, Any]]) -> tuple[str, int]:
    """Write records to a new temp file beside `path` (gzip for .gz); return its name and count."""
    fd, temp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        # mkstemp makes 0600: keep the mode of the file being replaced, else the usual 0644
        os.fchmod(fd, path.stat().st_mode & 0o777 if path.exists() else 0o644)
        count = 0
        with os.fdopen(fd, "wb") as handle:
            gz = path.suffix == ".gz"
            writer = gzip.GzipFile(path.name, "wb", fileobj=handle, mtime=0) if gz else handle
            for record in records:
                writer.write(json.dumps(record, ensure_ascii=False).encode("utf-8") + b"\n")
                count += 1
            if writer is not handle:
                writer.close()
            handle.flush()
            os.fsync(handle.fileno())
    except BaseException:
        os.unlink(temp)
        raise
    return temp, count


def write_jsonl_files(outputs: Sequence[tuple[PathLike, Iterable[Mapping[str, Any]]]]) -> list[int]:
    """Write several JSONL files all-or-nothing: temp files first, then `os.replace` each.

    Returns the number of records written to each file. On an error while writing, no target
    is touched and no temp file is left behind.
    """
    temps: list[tuple[str, Path]] = []
    counts: list[int] = []
    try:
        for target, records in outputs:
            path = Path(target)
            temp, count = _write_temp(path, records)
            temps.append((temp, path))
            counts.append(count)
    except BaseException:
        for temp, _ in temps:
            os.unlink(temp)
        raise
    for temp, path in temps:
        os.replace(temp, path)
    return counts


def write_jsonl(records: Iterable[Mapping[str, Any]], path: PathLike) -> int:
    """Write records as JSONL (gzip for .gz) atomically; returns how many were written."""
    return write_jsonl_files([(path, records)])[0]


def write_trees(trees: Iterable[Tree], path: PathLike) -> int:
    """Write trees in the tree-file shape, one per line; returns how many were written."""
    return write_jsonl((tree_to_dict(tree) for tree in trees), path)


def write_messages(trees: Iterable[Tree], path: PathLike) -> int:
    """Write every message of `trees` as a flat list (root first, depth-first); returns the count."""
    return write_jsonl((message_to_dict(m) for tree in trees for m in tree.messages()), path)


def validate_file(path: PathLike, *, strict: bool = False) -> ValidationReport:
    """Read a file and return only its validation report (`strict` raises `DataError`)."""
    return read_trees(path, strict=strict)[1]
