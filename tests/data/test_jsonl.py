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


def test_undecodable_bytes_and_deep_nesting_name_the_line(tmp_path):
    p = tmp_path / "latin1.jsonl"
    p.write_bytes(b'{"x": 1}\n{"x": "caf\xe9"}\n')
    with pytest.raises(DataError, match=r"latin1\.jsonl:2: not UTF-8 text"):
        read_jsonl(p)
    p = tmp_path / "deep.jsonl"
    p.write_text('{"x": 1}\n' + "[" * 100_000 + "]" * 100_000 + "\n")
    with pytest.raises(DataError, match=r"deep\.jsonl:2: JSON nested too deeply"):
        read_jsonl(p)


def test_corrupt_or_truncated_gzip_names_the_file(tmp_path):
    whole = gzip.compress(b'{"x": 1}\n' * 2000)
    cut = tmp_path / "cut.jsonl.gz"
    cut.write_bytes(whole[: len(whole) // 2])
    with pytest.raises(DataError, match=r"cut\.jsonl\.gz: corrupt or truncated gzip file"):
        read_jsonl(cut)
    bad = tmp_path / "bad.jsonl.gz"
    bad.write_bytes(whole[:20] + b"\x00" * 40 + whole[60:])
    with pytest.raises(DataError, match=r"bad\.jsonl\.gz: corrupt or truncated gzip file"):
        read_jsonl(bad)
    plain = tmp_path / "plain.jsonl.gz"
    plain.write_text('{"x": 1}\n')
    with pytest.raises(DataError, match=r"plain\.jsonl\.gz: not a gzip file"):
        read_jsonl(plain)


def test_gzip_is_found_by_content_and_empty_is_allowed_when_asked(tmp_path):
    p = tmp_path / "rows.jsonl"  # gzip bytes without a .gz name
    p.write_bytes(gzip.compress(b'{"x": 1}\n'))
    assert read_jsonl(p) == [{"x": 1}]
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    assert read_jsonl(empty, allow_empty=True) == []


def test_prompt_and_reference_text_files_name_the_bad_line(tmp_path):
    from alignlab.data.chat import read_prompts
    from alignlab.eval.drift import read_reference_texts

    p = tmp_path / "prompts.txt"
    p.write_bytes(b"good prompt\n\xff\xfe bad\n")
    with pytest.raises(DataError, match=r"prompts\.txt:2: not UTF-8"):
        read_prompts(p, "prompts", "builtin")
    p.write_text("\n\n")
    with pytest.raises(DataError, match=r"prompts\.txt: no prompts"):
        read_prompts(p, "prompts", "builtin")
    assert read_prompts(p, "prompts", "builtin", allow_empty=True) == []
    ref = tmp_path / "ref.txt"
    ref.write_bytes(b"one\ntwo \x00 three\n")
    with pytest.raises(DataError, match=r"ref\.txt:2: binary content"):
        read_reference_texts(ref)
    ref = tmp_path / "ref.jsonl.gz"
    ref.write_bytes(gzip.compress(b'{"text": "a"}\n{"text": "b"}\n'))
    assert read_reference_texts(ref) == ["a", "b"]
