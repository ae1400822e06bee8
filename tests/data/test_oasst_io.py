"""Reading every file shape (plain/gzip, flat/tree/parquet-style, mixed per line) and writing back."""

from __future__ import annotations

import gzip
import json
import os

import pytest

from alignlab.data.oasst import (
    Label,
    read_messages,
    read_trees,
    write_jsonl,
    write_messages,
    write_trees,
)
from alignlab.data.oasst.io import write_jsonl_files


def msg(mid, parent, role, **fields):
    """A flat message record."""
    return {"message_id": mid, "parent_id": parent, "role": role, "text": f"text {mid}", **fields}


ROWS = [
    msg(
        "r",
        None,
        "prompter",
        lang="en",
        review_result=True,
        message_tree_id="r",
        tree_state="ready_for_export",
        emojis={"+1": 2},
        user_id="u1",
        created_date="2023-02-05T14:23:50.983374+00:00",
        review_count=3,
    ),
    msg(
        "a",
        "r",
        "assistant",
        rank=0,
        labels={"quality": {"value": 0.75, "count": 4}},
        detoxify={"toxicity": 0.001},
        custom_key="kept",
    ),
    msg(
        "b",
        "r",
        "assistant",
        rank=1.0,
        labels=[{"name": "quality", "value": 0.25, "count": 4}],
        emojis={"name": ["-1"], "count": [1]},
    ),
    msg(
        "p", "a", "prompter", labels={"name": ["spam", "pii"], "value": [0.0, 1.0], "count": [3, 3]}
    ),
]


def test_flat_file_rebuilds_tree_and_normalises_labels(tmp_path):
    path = tmp_path / "flat.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in ROWS))
    (tree,), report = read_trees(path)
    assert report.ok and tree.message_tree_id == "r" and tree.tree_state == "ready_for_export"
    root = tree.prompt
    assert [m.message_id for m in root.replies] == ["a", "b"]
    a, b = root.replies
    assert a.labels == {"quality": Label(0.75, 4)} and b.labels == {"quality": Label(0.25, 4)}
    assert b.rank == 1 and isinstance(b.rank, int) and b.emojis == {"-1": 1}
    assert a.replies[0].labels == {"spam": Label(0.0, 3), "pii": Label(1.0, 3)}
    assert a.extra == {"custom_key": "kept"} and a.detoxify == {"toxicity": 0.001}
    # the state is filled in from the root
    assert all(m.tree_state == "ready_for_export" for m in tree.messages())
    assert root.user_id == "u1" and root.review_count == 3 and root.emojis == {"+1": 2}


def test_round_trip_tree_and_flat_gzip(tmp_path):
    path = tmp_path / "flat.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in ROWS))
    trees, _ = read_trees(path)
    assert write_trees(trees, tmp_path / "t.jsonl.gz") == 1
    assert write_messages(trees, tmp_path / "m.jsonl.gz") == 4
    with gzip.open(tmp_path / "t.jsonl.gz", "rt") as f:
        line = json.loads(f.readline())
    assert set(line) == {"message_tree_id", "tree_state", "prompt"}
    assert line["prompt"]["replies"][0]["custom_key"] == "kept"
    for other in ("t.jsonl.gz", "m.jsonl.gz"):
        again, report = read_trees(tmp_path / other)
        assert report.ok and again == trees


def test_message_lines_with_nested_replies_and_mixed_shapes(tmp_path):
    # a line may be a message carrying its replies nested (like en_100_message.jsonl),
    # next to a tree line and a plain flat message
    nested = msg("x", None, "prompter", replies=[msg("x1", None, "assistant") | {"replies": []}])
    del nested["replies"][0]["parent_id"]
    tree = {"message_tree_id": "y", "tree_state": "growing", "prompt": msg("y", None, "prompter")}
    lines = [json.dumps(nested), json.dumps(tree), json.dumps(msg("y1", "y", "assistant"))]
    path = tmp_path / "mixed.jsonl"
    path.write_text("\ufeff" + "\n".join(lines) + "\n")
    messages, issues = read_messages(path)
    assert issues == [] and [(m.message_id, m.parent_id, m.line) for m in messages] == [
        ("x", None, 1),
        ("x1", "x", 1),
        ("y", None, 2),
        ("y1", "y", 3),
    ]
    trees, report = read_trees(path)
    assert report.ok and [len(t) for t in trees] == [2, 2] and trees[1].tree_state == "growing"


def test_write_is_atomic(tmp_path):
    target = tmp_path / "out.jsonl"
    target.write_text("old\n")

    def broken():
        yield {"a": 1}
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError):
        write_jsonl(broken(), target)
    assert target.read_text() == "old\n" and os.listdir(tmp_path) == ["out.jsonl"]
    with pytest.raises(RuntimeError):  # the second file fails: the first is not replaced either
        write_jsonl_files([(target, [{"a": 1}]), (tmp_path / "val.jsonl", broken())])
    assert target.read_text() == "old\n" and os.listdir(tmp_path) == ["out.jsonl"]
    assert write_jsonl([{"a": 1}, {"b": "é"}], target) == 2
    assert target.read_text(encoding="utf-8") == '{"a": 1}\n{"b": "é"}\n'
