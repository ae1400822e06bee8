"""Every SPEC validation rule: each problem is reported with file/line/id, its tree skipped, none crash."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest

from alignlab.data.oasst import DataError, read_messages, read_trees, validate, validate_file


def msg(mid: str, parent: str | None, role: str, **fields) -> dict:
    """A flat message record with sensible defaults."""
    return {
        "message_id": mid,
        "parent_id": parent,
        "role": role,
        "text": f"text {mid}",
        "lang": "en",
        "review_result": True,
        "deleted": False,
        "synthetic": False,
        "rank": None,
        **fields,
    }


def write(path: Path, rows: list) -> Path:
    """Write rows as JSONL; a str row is written verbatim (for malformed lines)."""
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows))
    return path


GOOD = [msg("g", None, "prompter"), msg("g1", "g", "assistant", rank=0)]


def check(tmp_path: Path, rows: list, kind: str, line: int, message_id: str | None, kept=("g",)):
    """Read GOOD + rows; the first issue of `kind` is at (line, id); only the `kept` trees remain."""
    trees, report = read_trees(write(tmp_path / "x.jsonl", GOOD + rows))
    found = [i for i in report.issues if i.kind == kind]
    assert found, report.issues
    assert (found[0].line, found[0].message_id) == (line, message_id)
    assert found[0].file == str(tmp_path / "x.jsonl")
    assert [t.message_tree_id for t in trees] == list(kept)
    assert report.trees == len(kept) and report.counts[kind] == len(found)
    return report


def test_clean_file_has_no_issues(tmp_path):
    trees, report = read_trees(write(tmp_path / "x.jsonl", GOOD))
    assert report.ok and report.trees == 1 and report.messages == 2 and report.records == 2
    assert trees[0].prompt.replies[0].message_id == "g1"


def test_unknown_parent(tmp_path):
    rows = [msg("r", None, "prompter"), msg("a", "r", "assistant"), msg("p", "ghost", "prompter")]
    report = check(tmp_path, rows, "unknown_parent", 5, "p", kept=("g", "r"))
    # r/a is a good tree of its own; p (whose parent is missing) is the one skipped
    assert report.trees_skipped == 1 and report.messages_skipped == 1


def test_cycle(tmp_path):
    rows = [msg("x", "y", "prompter"), msg("y", "x", "assistant"), msg("z", "z", "prompter")]
    report = check(tmp_path, rows, "cycle", 3, "x")
    assert report.counts["cycle"] == 2  # x<->y and the self-loop z
    assert report.trees_skipped == 2 and "x -> y -> x" in report.issues[0].message


def test_more_than_one_root(tmp_path):
    rows = [
        msg("r1", None, "prompter", message_tree_id="T"),
        msg("r2", None, "prompter", message_tree_id="T"),
    ]
    report = check(tmp_path, rows, "multiple_roots", 4, "r2")
    assert report.trees_skipped == 1 and report.messages_skipped == 2


def test_roles_must_alternate(tmp_path):
    rows = [msg("r", None, "prompter"), msg("a", "r", "assistant"), msg("a2", "a", "assistant")]
    check(tmp_path, rows, "role_order", 5, "a2")


def test_root_must_be_prompter(tmp_path):
    check(tmp_path, [msg("r", None, "assistant")], "role_order", 3, "r")


def test_unknown_role(tmp_path):
    rows = [msg("r", None, "prompter"), msg("s", "r", "system")]
    check(tmp_path, rows, "bad_role", 4, "s")


def test_duplicate_ids(tmp_path):
    rows = [msg("r", None, "prompter"), msg("a", "r", "assistant"), msg("a", "r", "assistant")]
    report = check(tmp_path, rows, "duplicate_id", 5, "a")
    assert "line 4" in report.issues[0].message and report.trees_skipped == 1


def test_duplicate_ranks_among_siblings(tmp_path):
    rows = [
        msg("r", None, "prompter"),
        msg("a", "r", "assistant", rank=0),
        msg("b", "r", "assistant", rank=0),
    ]
    check(tmp_path, rows, "duplicate_rank", 5, "b")


def test_same_rank_in_different_sibling_groups_is_fine(tmp_path):
    rows = [
        msg("r", None, "prompter"),
        msg("a", "r", "assistant", rank=0),
        msg("p", "a", "prompter"),
        msg("b", "p", "assistant", rank=0),
    ]
    _, report = read_trees(write(tmp_path / "x.jsonl", rows))
    assert report.ok


@pytest.mark.parametrize(
    "labels",
    [
        {"quality": {"value": 1.5, "count": 3}},  # SPEC shape
        [{"name": "spam", "value": -0.1, "count": 2}],  # parquet-style list
        {"name": ["humor"], "value": [2.0], "count": [1]},  # columnar
    ],
)
def test_label_values_outside_unit_interval(tmp_path, labels):
    rows = [msg("r", None, "prompter"), msg("a", "r", "assistant", labels=labels)]
    check(tmp_path, rows, "label_range", 4, "a")


def test_malformed_json_line_reports_line_number(tmp_path):
    rows = ["{not json", "", msg("r", None, "prompter")]
    report = check(tmp_path, rows, "malformed_json", 3, None, kept=("g", "r"))
    assert report.lines_skipped == 1 and report.trees == 2
    assert ":3: [malformed_json]" in str(report.issues[0])


def test_json_that_is_not_a_record(tmp_path):
    report = check(tmp_path, ["[1, 2]", '{"hello": 1}'], "bad_record", 3, None)
    assert report.counts["bad_record"] == 2


def test_bad_field_skips_its_tree(tmp_path):
    rows = [msg("r", None, "prompter"), msg("a", "r", "assistant", rank="first")]
    report = check(tmp_path, rows, "bad_field", 4, "a")
    assert "rank" in report.issues[0].message
    # r and a are both skipped: r is not exported silently without its reply
    assert report.trees_skipped == 1 and report.messages_skipped == 2


def test_message_without_id_is_reported(tmp_path):
    rows = [{"role": "prompter", "text": "hi", "message_id": None}]
    check(tmp_path, rows, "bad_field", 3, None)


def test_nested_reply_naming_another_parent(tmp_path):
    tree = {
        "message_tree_id": "t",
        "tree_state": "ready_for_export",
        "prompt": msg("t", None, "prompter", replies=[msg("a", "elsewhere", "assistant")]),
    }
    check(tmp_path, [tree], "parent_mismatch", 3, "a")


def test_strict_raises_data_error_naming_file_line_and_id(tmp_path):
    rows = [msg("r", None, "prompter"), msg("a", "r", "assistant"), msg("a2", "a", "assistant")]
    path = write(tmp_path / "x.jsonl", GOOD + rows)
    with pytest.raises(DataError) as info:
        read_trees(path, strict=True)
    assert isinstance(info.value, ValueError)
    assert info.value.issue.line == 5 and info.value.issue.message_id == "a2"
    assert f"{path}:5" in str(info.value) and "a2" in str(info.value)
    with pytest.raises(DataError, match=":1: \\[malformed_json\\]"):
        read_messages(write(tmp_path / "y.jsonl", ["{", msg("r", None, "prompter")]), strict=True)


def test_garbage_never_crashes(tmp_path):
    path = tmp_path / "garbage.jsonl"
    path.write_bytes(
        b"\x00\xff\xfe garbage\n\x89PNG\r\n" + b"9" * 50 + b"\n" + b"[" * 100_000 + b"\n"
    )
    trees, report = read_trees(path)
    assert trees == [] and report.lines_skipped == 4 and report.trees == 0


def test_every_rule_at_once_is_counted(tmp_path):
    rows = [
        "{",
        msg("r", None, "prompter"),
        msg("a", "r", "assistant", rank=0),
        msg("b", "r", "assistant", rank=0),
        msg("o", "nobody", "prompter"),
    ]
    trees, report = read_trees(write(tmp_path / "x.jsonl", rows))
    assert trees == [] and report.trees_skipped == 2
    assert dict(report.counts) == {"malformed_json": 1, "duplicate_rank": 1, "unknown_parent": 1}
    assert "skipped 2 trees" in report.summary()
    assert [i.line for i in report.issues] == sorted(i.line for i in report.issues)


def test_truncated_gzip_is_a_data_error(tmp_path):
    blob = gzip.compress(("\n".join(json.dumps(r) for r in GOOD * 50) + "\n").encode())
    path = tmp_path / "cut.jsonl.gz"
    path.write_bytes(blob[: len(blob) // 2])
    with pytest.raises(DataError, match="cannot read"):
        validate_file(path)
    with pytest.raises(DataError, match="No such file"):
        validate_file(tmp_path / "missing.jsonl")


def test_validate_in_memory_messages(tmp_path):
    messages, issues = read_messages(
        write(tmp_path / "x.jsonl", GOOD + [msg("z", "q", "prompter")])
    )
    assert issues == [] and [m.message_id for m in messages] == ["g", "g1", "z"]
    report = validate(messages)
    assert report.counts == {"unknown_parent": 1} and report.trees == 1
