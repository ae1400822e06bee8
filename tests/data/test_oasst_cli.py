"""`alignlab data stats|export` through `register` on a plain argparse parser."""

from __future__ import annotations

import argparse
import json
import sys

import pytest

from alignlab.data.oasst.cli import register


def run(*argv: str) -> int:
    """Parse argv with a parser holding only the data command, and call its handler."""
    parser = argparse.ArgumentParser(prog="alignlab")
    register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(list(argv))
    return args.func(args)


def msg(mid, parent, role, **fields):
    """A flat message record."""
    return {
        "message_id": mid,
        "parent_id": parent,
        "role": role,
        "text": f"text {mid}",
        "review_result": True,
        "lang": "en",
        "tree_state": "ready_for_export",
        **fields,
    }


def tree_rows(n: int) -> list[str]:
    """n small valid trees (root, two ranked replies, a follow-up) as JSONL lines."""
    rows = []
    for i in range(n):
        rows += [
            msg(f"r{i}", None, "prompter"),
            msg(f"a{i}", f"r{i}", "assistant", rank=0),
            msg(f"b{i}", f"r{i}", "assistant", rank=1),
            msg(f"p{i}", f"a{i}", "prompter"),
        ]
    return [json.dumps(r) for r in rows]


@pytest.fixture
def good(tmp_path):
    path = tmp_path / "good.jsonl"
    path.write_text("\n".join(tree_rows(30)) + "\n")
    return path


@pytest.fixture
def bad(tmp_path):
    """Valid trees with a malformed line 3."""
    lines = tree_rows(30)
    lines[2] = '{"message_id": "b0", "parent_id": '
    path = tmp_path / "bad.jsonl"
    path.write_text("\n".join(lines) + "\n")
    return path


def test_stats_prints_a_table(good, capsys):
    assert run("data", "stats", str(good)) == 0
    out = capsys.readouterr().out
    assert "trees" in out and "30" in out and "ranked sibling groups" in out


def test_stats_without_rich(good, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "rich.console", None)  # makes `import rich.console` fail
    assert run("data", "stats", str(good)) == 0
    out = capsys.readouterr().out
    assert "messages by role" in out and "assistant: 60, prompter: 60" in out and "┃" not in out


@pytest.mark.parametrize(("mode", "per_tree"), [("sft", 2), ("rm", 1), ("rl", 2)])
def test_export_with_validation_split(good, tmp_path, capsys, mode, per_tree):
    out = tmp_path / "out.jsonl"
    argv = ["data", "export", str(good), "--mode", mode, "--out", str(out), "--split-val", "0.3"]
    assert run(*argv, "--seed", "1") == 0
    train = [json.loads(line) for line in out.read_text().splitlines()]
    val = [json.loads(line) for line in (tmp_path / "out.val.jsonl").read_text().splitlines()]
    assert len(train) + len(val) == 30 * per_tree and train and val
    assert not {r["tree_id"] for r in train} & {r["tree_id"] for r in val}
    printed = capsys.readouterr().out
    assert f"exported {30 * per_tree} {mode} records from 30 trees" in printed
    assert f"{len(val)} to {tmp_path / 'out.val.jsonl'}" in printed


def test_export_options(good, tmp_path, capsys):
    out = tmp_path / "o.jsonl"
    argv = ["data", "export", str(good), "--mode", "sft", "--out", str(out)]
    assert run(*argv, "--lang", "de,fr") == 2  # no records: an error that says which filter removed the trees
    assert "no sft records to export" in capsys.readouterr().err and not out.exists()
    assert run(*argv, "--lang", "de,fr", "--allow-empty") == 0
    assert out.read_text() == ""
    argv = ["data", "export", str(good), "--mode", "sft", "--out", str(out), "--top-k", "1"]
    loose = ["--keep-deleted", "--keep-synthetic", "--any-state", "--any-review"]
    assert run(*argv, "--lang", "EN", *loose) == 0
    assert len(out.read_text().splitlines()) == 30  # only the rank-0 thread of each tree
    with pytest.raises(SystemExit):
        run("data", "export", str(good), "--mode", "sft", "--out", str(out), "--split-val", "1.5")


def test_strict_malformed_file_exits_2_without_writing(bad, tmp_path, capsys):
    out = tmp_path / "out.jsonl"
    out.write_text("previous export\n")
    code = run("data", "export", str(bad), "--mode", "sft", "--out", str(out), "--strict")
    err = capsys.readouterr().err
    assert code == 2 and f"{bad}:3:" in err and "malformed_json" in err and "Traceback" not in err
    assert out.read_text() == "previous export\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.jsonl", "out.jsonl"]
    assert run("data", "stats", str(bad), "--strict") == 2


def test_lenient_run_skips_and_reports(bad, tmp_path, capsys):
    out = tmp_path / "out.jsonl"
    assert run("data", "export", str(bad), "--mode", "rm", "--out", str(out)) == 1
    captured = capsys.readouterr()
    assert f"{bad}:3: [malformed_json]" in captured.err
    # the message on line 3 (b0) is lost, so tree r0 has one ranked reply left: no example
    assert "exported 29 rm records from 29 trees" in captured.out
    assert "0 skipped for problems; lines skipped: 1" in captured.out
    assert len(out.read_text().splitlines()) == 29


def test_unusable_files_exit_2(tmp_path, capsys):
    out = tmp_path / "out.jsonl"
    garbage = tmp_path / "garbage.jsonl"
    garbage.write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00binary")
    assert run("data", "export", str(garbage), "--mode", "sft", "--out", str(out)) == 2
    assert f"{garbage}:1:" in capsys.readouterr().err and not out.exists()
    assert run("data", "stats", str(tmp_path / "missing.jsonl")) == 2
    assert "No such file" in capsys.readouterr().err
    cut = tmp_path / "cut.jsonl.gz"
    cut.write_bytes(b"\x1f\x8b\x08\x00broken")
    assert run("data", "stats", str(cut)) == 2
    assert "cannot read" in capsys.readouterr().err


def test_unwritable_output_exits_2(good, tmp_path, capsys):
    out = tmp_path / "no" / "such" / "dir.jsonl"
    assert run("data", "export", str(good), "--mode", "rl", "--out", str(out)) == 2
    assert "cannot write" in capsys.readouterr().err


def test_bare_data_command_shows_usage(capsys):
    assert run("data") == 2
    assert "stats" in capsys.readouterr().err
