"""One reader for every input form a recipe's `data=` accepts: JSONL (as before), JSON, CSV,
parquet / arrow files, a `datasets.save_to_disk` folder or a local hub-layout dataset folder,
with a column map onto the field names the recipes read.

Each row comes back as ('where', dict): 'file:line' for JSONL (unchanged), 'file:row N'
(N from 1) for the table forms, so a bad row is still named in every error. `datasets` and
`pyarrow` are imported only when a parquet / arrow file or a folder is read.
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from alignlab.data.jsonl import iter_jsonl, iter_text_lines
from alignlab.errors import DataError

Row = tuple[str, dict[str, Any]]
# CSV cells are text; these fields hold lists there, written as JSON.
_JSON_CELLS = ("messages", "replies", "ranks")
_MAYBE_MESSAGES = ("prompt", "chosen", "rejected")


@dataclass
class ColumnMap:
    """The input column holding each field the recipes read; "" = a column of the field's own name
    (YAML `data_columns: {prompt: question, chosen: good}`, CLI `data_columns.prompt=question`)."""

    prompt: str = ""
    response: str = ""
    chosen: str = ""
    rejected: str = ""
    messages: str = ""

    def renames(self) -> dict[str, str]:
        """{input column: field name} for every mapped field."""
        return {getattr(self, f.name): f.name for f in fields(self) if getattr(self, f.name) not in ("", f.name)}


def read_rows(path: str | Path, columns: ColumnMap | None = None, split: str = "train",
              what: str = "data file") -> list[Row]:
    """Every row of `path` as ('where', dict) with `columns` applied; `split` picks the split of a
    dataset folder (files have none). Any unreadable input or row is a DataError naming it."""
    p = Path(path)
    if p.is_dir():
        rows = _folder_rows(p, split)
    elif not p.is_file():
        raise DataError(f"{what} not found: {p}")
    else:
        suffix = p.suffixes[-2] if p.suffix == ".gz" and len(p.suffixes) > 1 else p.suffix
        reader = {".json": _json_rows, ".csv": _csv_rows, ".tsv": _csv_rows, ".parquet": _parquet_rows,
                  ".arrow": _arrow_rows}.get(suffix.lower())
        rows = reader(p) if reader else list(iter_jsonl(p, what))
    renames = (columns or ColumnMap()).renames()
    return [(where, _renamed(row, renames, where)) for where, row in rows] if renames else rows


def _renamed(row: dict[str, Any], renames: dict[str, str], where: str) -> dict[str, Any]:
    out = dict(row)
    for source, name in renames.items():
        if source not in out:
            raise DataError(f"{where}: no column '{source}' (data_columns.{name}); the row has {sorted(row)}")
        out[name] = out.pop(source)
    return out


def _numbered(p: Path | str, records: list[Any]) -> list[Row]:
    """('p:row N', row) for table records; a record that is not an object, or null cells, handled here."""
    out = []
    for n, rec in enumerate(records, 1):
        where = f"{p}:row {n}"
        if not isinstance(rec, dict):
            raise DataError(f"{where}: each row must be an object with named fields, got {type(rec).__name__}")
        out.append((where, {k: v for k, v in rec.items() if v is not None}))  # a null cell reads as missing
    return out


def _json_rows(p: Path) -> list[Row]:
    """A JSON list of rows or {"data": [...]}; a file of one object per line reads as JSONL."""
    text = "\n".join(line for _, line in iter_text_lines(p))
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as e:
        if e.msg == "Extra data":
            return list(iter_jsonl(p))
        raise DataError(f"{p}:{e.lineno}: not valid JSON ({e.msg})") from e
    except RecursionError as e:
        raise DataError(f"{p}: JSON nested too deeply to read") from e
    if isinstance(doc, dict) and isinstance(doc.get("data"), list):
        doc = doc["data"]
    if not isinstance(doc, list):
        raise DataError(f"{p}: a .json data file must hold a list of rows or {{\"data\": [rows]}}")
    return _numbered(p, doc)


def _cell(name: str, value: str, where: str) -> Any:
    """A CSV cell as its value: JSON for list fields, chat messages when a text field holds them."""
    if name in _JSON_CELLS:
        try:
            return json.loads(value)
        except json.JSONDecodeError as e:
            raise DataError(f"{where}: '{name}' must be JSON in a CSV cell ({e.msg})") from e
    if name in _MAYBE_MESSAGES and value.lstrip().startswith("[{"):
        try:
            parsed = json.loads(value)
        except json.JSONDecodeError:
            return value
        if isinstance(parsed, list) and all(isinstance(m, dict) and "role" in m for m in parsed):
            return parsed
    return value


def _csv_rows(p: Path) -> list[Row]:
    """A CSV (or TSV) file with a header row; list fields (messages, replies, ranks) as JSON cells."""
    lines = (line + "\n" for _, line in iter_text_lines(p))
    try:
        reader = csv.DictReader(lines, delimiter="\t" if ".tsv" in p.suffixes else ",")
        records = list(reader)
    except csv.Error as e:
        raise DataError(f"{p}: not a readable CSV file ({e})") from e
    if reader.fieldnames is None:
        return []
    rows = []
    for where, rec in _numbered(p, records):
        if None in rec:
            raise DataError(f"{where}: more cells than the header's {len(reader.fieldnames)} columns")
        rows.append((where, {k: _cell(k, v, where) for k, v in rec.items() if v != "" or k not in _JSON_CELLS}))
    return rows


def _parquet_rows(p: Path) -> list[Row]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        return _numbered(p, pq.read_table(p).to_pylist())
    except (pa.ArrowException, OSError) as e:
        raise DataError(f"{p}: not a readable parquet file ({e})") from e


def _arrow_rows(p: Path) -> list[Row]:
    import pyarrow as pa
    from datasets import Dataset

    try:
        return _numbered(p, Dataset.from_file(str(p)).to_list())
    except (pa.ArrowException, OSError, ValueError) as e:
        raise DataError(f"{p}: not a readable arrow file ({e})") from e


def _folder_rows(p: Path, split: str) -> list[Row]:
    """A `save_to_disk` folder (a Dataset or a DatasetDict) or a hub-layout folder, read offline."""
    import datasets
    from datasets.utils.logging import (
        disable_progress_bar,
        enable_progress_bar,
        is_progress_bar_enabled,
    )

    bars = is_progress_bar_enabled()
    disable_progress_bar()  # recipes never print
    try:
        if (p / "dataset_dict.json").is_file() or (p / "state.json").is_file():
            ds = datasets.load_from_disk(str(p))
            if isinstance(ds, datasets.DatasetDict):
                if split not in ds:
                    raise DataError(f"{p}: no split '{split}' (splits: {sorted(ds)}); set data_split")
                ds = ds[split]
            where = p
        else:
            ds = datasets.load_dataset(str(p), split=split)
            where = f"{p}[{split}]"
        return _numbered(where, ds.to_list())
    except DataError:
        raise
    except Exception as e:  # datasets raises many kinds (no data files, unknown split, bad arrow)
        raise DataError(f"{p}: not a readable dataset folder for split '{split}' ({type(e).__name__}: {e})") from e
    finally:
        if bars:
            enable_progress_bar()
