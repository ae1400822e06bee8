"""Every SPEC export rule on a hand-built tree: SFT (top_k, prompter-leaf dedup), ranking, RL, filters, split."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

from alignlab.data.oasst import (
    ExportFilters,
    export_rl,
    export_rm,
    export_sft,
    pairwise_preferences,
    read_trees,
    split_by_tree,
    stats,
    write_messages,
)


def node(mid: str, role: str, *replies: dict, **fields) -> dict:
    """A nested message (tree-file shape); text is 'text <id>'."""
    return {
        "message_id": mid,
        "role": role,
        "text": f"text {mid}",
        "lang": "en",
        "review_result": True,
        "deleted": False,
        "synthetic": False,
        "rank": None,
        "replies": list(replies),
        **fields,
    }


def P(mid, *replies, **fields):  # noqa: N802 - reads like the tree diagram
    return node(mid, "prompter", *replies, **fields)


def A(mid, *replies, **fields):  # noqa: N802
    return node(mid, "assistant", *replies, **fields)


# R ─┬─ A1 (rank 0) ─┬─ P1 (leaf)         two prompter leaves: one thread R A1
#    │               ├─ P1b (leaf)
#    │               └─ P2 ── A3 (unranked, only child)
#    ├─ A2 (rank 1) ── P3 ─┬─ A4 (rank 0)
#    │                     ├─ A5 (rank 1, deleted) ── P4 (leaf)
#    │                     ├─ A6 (rank 2, synthetic)
#    │                     ├─ A7 (unranked, has siblings)
#    │                     └─ A8 (rank 3)
#    └─ A9 (unranked, has siblings)
def big_tree(tree_id: str = "R", **root_fields) -> dict:
    """The tree drawn above, in tree-file shape."""
    p3 = P(
        "P3",
        A("A4", rank=0),
        A("A5", P("P4"), rank=1, deleted=True),
        A("A6", rank=2, synthetic=True),
        A("A7"),
        A("A8", rank=3),
    )
    root = P(
        tree_id,
        A("A1", P("P1"), P("P1b"), P("P2", A("A3")), rank=0),
        A("A2", p3, rank=1),
        A("A9"),
        **root_fields,
    )
    if tree_id != "R":  # give every message of a copy its own id
        root = json.loads(json.dumps(root).replace('"message_id": "', f'"message_id": "{tree_id}.'))
        root["message_id"] = tree_id
    return {"message_tree_id": tree_id, "tree_state": "ready_for_export", "prompt": root}


def load(tmp_path: Path, *trees: dict) -> list:
    """Write trees to a file and read them back (the reader is part of every export path)."""
    path = tmp_path / "trees.jsonl"
    path.write_text("".join(json.dumps(t) + "\n" for t in trees))
    loaded, report = read_trees(path)
    assert report.ok, report.issues
    return loaded


def ids(record: dict, key: str = "messages") -> list[str]:
    """Message ids of a record's turns (texts are 'text <id>')."""
    return [turn["content"].removeprefix("text ") for turn in record[key]]


def test_sft_threads_with_defaults(tmp_path):
    records = export_sft(load(tmp_path, big_tree()))
    assert [ids(r) for r in records] == [
        ["R", "A1"],  # from P1 and P1b (prompter leaves dropped): once
        ["R", "A1", "P2", "A3"],
        ["R", "A2", "P3", "A4"],
        ["R", "A2", "P3", "A7"],
        ["R", "A2", "P3", "A8"],
        ["R", "A9"],
    ]
    assert records[0]["messages"] == [
        {"role": "user", "content": "text R"},
        {"role": "assistant", "content": "text A1"},
    ]
    assert {r["tree_id"] for r in records} == {"R"}


def test_sft_keep_deleted_and_synthetic(tmp_path):
    trees = load(tmp_path, big_tree())
    deleted = [ids(r) for r in export_sft(trees, ExportFilters(drop_deleted=False))]
    assert ["R", "A2", "P3", "A5"] in deleted  # its prompter leaf P4 dropped
    assert not any("A6" in t for t in deleted)  # A6 is synthetic
    both = [
        ids(r) for r in export_sft(trees, ExportFilters(drop_deleted=False, drop_synthetic=False))
    ]
    assert len(both) == 8 and ["R", "A2", "P3", "A6"] in both


def test_sft_top_k(tmp_path):
    trees = load(tmp_path, big_tree())
    top2 = [ids(r) for r in export_sft(trees, ExportFilters(top_k=2))]
    # A3 is unranked but an only child: kept; A7 and A9 are unranked with siblings: dropped
    assert top2 == [["R", "A1"], ["R", "A1", "P2", "A3"], ["R", "A2", "P3", "A4"]]
    top1 = [ids(r) for r in export_sft(trees, ExportFilters(top_k=1))]
    assert top1 == [["R", "A1"], ["R", "A1", "P2", "A3"]]  # A2 has rank 1
    everything = ExportFilters(top_k=4, drop_deleted=False, drop_synthetic=False)
    assert [ids(r)[-1] for r in export_sft(trees, everything)] == "A1 A3 A4 A5 A6 A8".split()
    with pytest.raises(ValueError):
        ExportFilters(top_k=0)


def test_ranking_examples_drop_deleted_synthetic_unranked(tmp_path):
    trees = load(tmp_path, big_tree())
    records = export_rm(trees)
    assert [ids(r, "prompt") for r in records] == [["R"], ["R", "A2", "P3"]]
    assert records[0]["replies"] == ["text A1", "text A2"] and records[0]["ranks"] == [0, 1]
    # P3: A5 deleted, A6 synthetic, A7 unranked are left out → A4, A8
    assert records[1]["replies"] == ["text A4", "text A8"] and records[1]["ranks"] == [0, 3]
    assert records[1]["prompt"][-1] == {"role": "user", "content": "text P3"}
    loose = export_rm(trees, ExportFilters(drop_deleted=False, drop_synthetic=False))
    assert loose[1]["replies"] == ["text A4", "text A5", "text A6", "text A8"]
    assert loose[1]["ranks"] == [0, 1, 2, 3]
    assert pairwise_preferences([0, 1, 3]) == [(0, 1), (0, 2), (1, 2)]


def test_ranking_needs_two_replies_left(tmp_path):
    tree = {
        "message_tree_id": "S",
        "tree_state": "ready_for_export",
        "prompt": P("S", A("S1", rank=1), A("S0", rank=0, deleted=True), A("S2")),
    }
    trees = load(tmp_path, tree)
    assert export_rm(trees) == []
    kept = export_rm(trees, ExportFilters(drop_deleted=False))
    assert kept[0]["replies"] == ["text S0", "text S1"]  # best first, not file order


def test_ranking_prefix_with_deleted_message_is_skipped(tmp_path):
    tree = {
        "message_tree_id": "D",
        "tree_state": "ready_for_export",
        "prompt": P("D", A("D1", P("D2", A("x", rank=0), A("y", rank=1)), deleted=True)),
    }
    trees = load(tmp_path, tree)
    assert export_rm(trees) == []
    assert len(export_rm(trees, ExportFilters(drop_deleted=False))) == 1


def test_rl_prompts(tmp_path):
    trees = load(tmp_path, big_tree())
    assert [ids(r, "prompt") for r in export_rl(trees)] == [
        ["R"],
        ["R", "A1", "P1"],
        ["R", "A1", "P1b"],
        ["R", "A1", "P2"],
        ["R", "A2", "P3"],
    ]
    loose = export_rl(trees, ExportFilters(drop_deleted=False))
    assert ["R", "A2", "P3", "A5", "P4"] in [ids(r, "prompt") for r in loose]
    assert set(export_rl(trees)[0]) == {"prompt", "tree_id"}


@pytest.mark.parametrize(
    ("tree_fields", "root_fields", "filters", "kept"),
    [
        ({"tree_state": "growing"}, {}, ExportFilters(), False),
        ({"tree_state": "growing"}, {}, ExportFilters(ready_only=False), True),
        ({}, {"review_result": False}, ExportFilters(), False),
        ({}, {"review_result": False}, ExportFilters(reviewed_only=False), True),
        ({"tree_state": None}, {"review_result": None}, ExportFilters(), True),
        ({"tree_state": None}, {}, ExportFilters(accept_unrecorded=False), False),
        ({}, {"review_result": None}, ExportFilters(accept_unrecorded=False), False),
        ({}, {"lang": "de"}, ExportFilters(languages={"en"}), False),
        ({}, {"lang": "DE"}, ExportFilters(languages=["de", "fr"]), True),
        ({}, {}, ExportFilters(languages=None), True),
    ],
)
def test_tree_filters(tmp_path, tree_fields, root_fields, filters, kept):
    tree = big_tree()
    tree.update(tree_fields)
    tree["prompt"].update(root_fields)
    trees = load(tmp_path, tree)
    for export in (export_sft, export_rm, export_rl):
        assert bool(export(trees, filters)) is kept


def test_flat_parquet_and_tree_files_export_identically(tmp_path):
    trees = load(tmp_path, big_tree(), big_tree("T2"))
    flat = tmp_path / "flat.jsonl.gz"
    write_messages(trees, flat)
    # parquet-style rows: labels as a list of {name, value, count}, one message a line
    rows = [json.loads(line) for line in (tmp_path / "trees.jsonl").read_text().splitlines()]
    parquet = tmp_path / "parquet.jsonl"
    with parquet.open("w") as out:
        for row in rows:
            stack = [(row["prompt"], None)]
            while stack:
                m, parent = stack.pop(0)
                stack[:0] = [(r, m["message_id"]) for r in m.pop("replies")]
                m.update(
                    parent_id=parent,
                    message_tree_id=row["message_tree_id"],
                    tree_state=row["tree_state"],
                    labels=[{"name": "quality", "value": 0.5, "count": 2}],
                )
                out.write(json.dumps(m) + "\n")
    for other in (flat, parquet):
        loaded, report = read_trees(other)
        assert report.ok and len(loaded) == 2
        for f in (
            ExportFilters(),
            ExportFilters(drop_deleted=False, drop_synthetic=False, top_k=2),
        ):
            for export in (export_sft, export_rm, export_rl):
                assert export(loaded, f) == export(trees, f)
    assert stats(read_trees(parquet)[0]).label_means == {"quality": 0.5}


def test_split_is_by_tree_seeded_and_deterministic(tmp_path):
    trees = load(tmp_path, *(big_tree(f"t{i}") for i in range(40)))
    records = export_sft(trees)
    train, val = split_by_tree(records, 0.25, seed=3)
    assert (train, val) == split_by_tree(records, 0.25, seed=3)
    assert len(train) + len(val) == len(records) and train and val
    train_trees = {r["tree_id"] for r in train}
    val_trees = {r["tree_id"] for r in val}
    assert not train_trees & val_trees  # a tree never straddles the split
    assert val_trees != {r["tree_id"] for r in split_by_tree(records, 0.25, seed=4)[1]}
    # the same trees go to validation whatever the mode and however the records are ordered
    shuffled = random.Random(0).sample(records, len(records))
    assert {r["tree_id"] for r in split_by_tree(shuffled, 0.25, seed=3)[1]} == val_trees
    rl_val = {r["tree_id"] for r in split_by_tree(export_rl(trees), 0.25, seed=3)[1]}
    assert rl_val == val_trees
    assert split_by_tree(records, 0.0) == (records, [])
    with pytest.raises(ValueError):
        split_by_tree(records, 1.0)


def test_stats(tmp_path):
    s = stats(load(tmp_path, big_tree()))
    assert (s.trees, s.messages) == (1, 15)
    assert s.roles == {"prompter": 6, "assistant": 9}
    assert s.deleted == 1 and s.synthetic == 1 and s.languages == {"en": 15}
    assert s.ranked_groups == 2 and s.ranked_replies == 2 + 4  # R: A1 A2; P3: A4 A5 A6 A8
    assert s.depths == {0: 1, 1: 3, 2: 4, 3: 6, 4: 1}
    assert s.tree_depths == {5: 1} and s.tree_states == {"ready_for_export": 1}
    assert dict(s.rows())["trees"] == "1"
