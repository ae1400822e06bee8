"""Fixtures of the preference tests: the testbed's ranking export written as JSONL."""

from __future__ import annotations

import json
from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def ranking_file(tmp_path_factory, world) -> Path:
    """The testbed's OASST-format trees exported as ranking examples (what `alignlab data export --mode rm` writes)."""
    from alignlab.data.oasst import export_rm, read_trees

    folder = tmp_path_factory.mktemp("prefs_data")
    trees_path = folder / "trees.jsonl"
    trees_path.write_text("".join(json.dumps(t) + "\n" for t in world.dialogue_trees(n=300)))
    trees, _ = read_trees(trees_path)
    out = folder / "rm.jsonl"
    out.write_text("".join(json.dumps(r) + "\n" for r in export_rm(trees)))
    return out
