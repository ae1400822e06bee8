"""The real OpenAssistant samples beside the repo: tree and message files export identically."""

from __future__ import annotations

from pathlib import Path

import pytest

from alignlab.data.oasst import (
    ExportFilters,
    export_rl,
    export_rm,
    export_sft,
    read_trees,
    stats,
    write_messages,
)

DATA = (Path(__file__).parents[2] / ".." / "shared" / "data" / "oasst").resolve()


def load(name: str):
    """Read one sample file, or skip when the shared data folder is not beside the repo."""
    path = DATA / name
    if not path.exists():
        pytest.skip(
            f"real OpenAssistant sample {path} not found (shared data is not beside the repo)"
        )
    return read_trees(path)


@pytest.fixture(scope="module")
def both():
    """(trees from the tree file, trees from the message file)."""
    (tree_file, r1), (message_file, r2) = load("en_100_tree.jsonl"), load("en_100_message.jsonl")
    assert r1.ok and r2.ok
    return tree_file, message_file


FILTERS = {
    "defaults": ExportFilters(),
    "synthetic kept": ExportFilters(drop_synthetic=False),
    "all off, top_k 2": ExportFilters(
        ready_only=False, reviewed_only=False, drop_deleted=False, drop_synthetic=False, top_k=2
    ),
}


@pytest.mark.parametrize("filters", FILTERS.values(), ids=FILTERS.keys())
@pytest.mark.parametrize("export", [export_sft, export_rm, export_rl])
def test_tree_and_message_files_export_identically(both, export, filters):
    from_trees, from_messages = both
    records = export(from_trees, filters)
    assert records and records == export(from_messages, filters)


def test_counts_on_the_100_trees(both):
    trees, _ = both
    s = stats(trees)
    assert (s.trees, s.messages, s.synthetic, s.ranked_groups) == (100, 1167, 22, 212)
    # 5 trees are entirely synthetic (model-written): the default filter drops them
    assert [len(export(trees)) for export in (export_sft, export_rm, export_rl)] == [547, 207, 475]
    loose = ExportFilters(drop_synthetic=False)
    assert [len(export(trees, loose)) for export in (export_sft, export_rm, export_rl)] == [
        564,
        212,
        480,
    ]
    for record in export_rm(trees):
        assert len(record["replies"]) >= 2 and record["ranks"] == sorted(record["ranks"])
        assert record["prompt"][-1]["role"] == "user"
    for record in export_sft(trees):
        roles = [turn["role"] for turn in record["messages"]]
        assert roles[-1] == "assistant" and roles[::2] == ["user"] * len(roles[::2])


def test_round_trip_through_flat_file(both, tmp_path):
    trees, _ = both
    write_messages(trees, tmp_path / "m.jsonl")
    again, report = read_trees(tmp_path / "m.jsonl")
    assert report.ok and again == trees


def test_backend_test_trees_load():
    trees, report = load("backend_test_trees.jsonl")
    # older field set: no tree_state, review_result or deleted — read as unrecorded
    assert report.records == 21 and report.trees == 20 and report.trees_skipped == 1
    # line 2 really has an assistant replying to an assistant: reported, not a crash
    (issue,) = report.issues
    assert (issue.kind, issue.line) == ("role_order", 2)
    assert all(t.tree_state is None for t in trees)
    assert len(export_sft(trees, ExportFilters(drop_synthetic=False))) == 72
