"""JSON-lines reading: the data layer's one reader names the file and line of every problem."""

import gzip

import pytest

from alignlab.data.jsonl import iter_jsonl, read_jsonl
from alignlab.errors import DataError


def test_read_jsonl_rows_blank_lines_and_gzip(tmp_path):
    p = tmp_path / "a.jsonl"
    p.write_text('{"x": 1}\n\n{"x": 2}\n')
    assert read_jsonl(p) == [{"x": 1}, {"x": 2}]
    assert [w for w, _ in iter_jsonl(p)] == [f"{p}:1", f"{p}:3"]
    gz = tmp_path / "a.jsonl.gz"
    with gzip.open(gz, "wt", encoding="utf-8") as f:
        f.write('{"x": 3}\n')
    assert read_jsonl(gz) == [{"x": 3}]


def test_read_jsonl_errors_name_the_file_and_line(tmp_path):
    p = tmp_path / "bad.jsonl"
    p.write_text('{"x": 1}\n{oops\n')
    with pytest.raises(DataError, match=r"bad\.jsonl:2: not valid JSON"):
        read_jsonl(p)
    p.write_text('{"x": 1}\n[1, 2]\n')
    with pytest.raises(DataError, match=r"bad\.jsonl:2: each line must be a JSON object"):
        read_jsonl(p)
    with pytest.raises(DataError, match="not found"):
        read_jsonl(tmp_path / "missing.jsonl")


def test_read_jsonl_empty_file_is_an_error(tmp_path):
    p = tmp_path / "empty.jsonl"
    p.write_text("\n\n")
    with pytest.raises(DataError, match=r"empty\.jsonl: no examples"):
        read_jsonl(p)
