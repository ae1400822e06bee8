"""`alignlab data ...`: print statistics of an OpenAssistant file, or export it for SFT / RM / RL."""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
from collections import Counter
from pathlib import Path
from typing import Any

from .export import EXPORTERS, ExportFilters, split_by_tree
from .io import read_trees, write_jsonl_files
from .issues import DataError, ValidationReport
from .models import Tree
from .stats import stats

OK, SKIPPED, FAILED = 0, 1, 2
_EXIT_CODES = (
    "Exit status: 0 = no problems; 1 = done, but trees/lines with problems were skipped "
    "(listed on stderr); 2 = nothing done (unreadable, malformed or empty file, no records to "
    "export, --out naming the input, --strict problem)"
)
_SHOWN_ISSUES = 20


def _fraction(text: str) -> float:
    """argparse type: a validation fraction in [0, 1)."""
    value = float(text)
    if not 0.0 <= value < 1.0:
        raise argparse.ArgumentTypeError(f"must be in [0, 1), got {text}")
    return value


def _positive(text: str) -> int:
    """argparse type: an integer >= 1."""
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {text}")
    return value


_TREE_FILTERS = {
    "state": "the tree_state filter (not ready_for_export; --any-state keeps them)",
    "review": "the review filter (root failed or lacks review; --any-review keeps them)",
    "lang": "the language filter (--lang)",
}
_EXAMPLE = {
    "sft": "a thread ending on an assistant reply",
    "rm": "a prompter message with at least 2 ranked assistant replies",
    "rl": "a prompter message",
}


def _fail(message: str) -> int:
    """Print an error to stderr and return the failure exit code."""
    print(f"alignlab: error: {message}", file=sys.stderr)
    return FAILED


def _same_file(a: Path, b: Path) -> bool:
    """True when two paths name one file: the same path, a link to it, or the same inode."""
    try:
        return a.resolve() == b.resolve() or (a.exists() and b.exists() and os.path.samefile(a, b))
    except OSError:
        return False


def _load(args: argparse.Namespace) -> tuple[list[Tree], ValidationReport] | int:
    """Read and validate the input file; an exit code instead when nothing usable can be read
    (an empty file too, unless --allow-empty)."""
    try:
        trees, report = read_trees(args.file, strict=args.strict)
    except DataError as error:
        return _fail(str(error))
    if not report.records and not args.allow_empty:
        return _fail(f"{args.file}: no rows (the file is empty; --allow-empty accepts that)")
    if report.issues and not report.trees and not report.trees_skipped:
        return _fail(
            f"{args.file}: no OpenAssistant messages or trees found; first problem: "
            f"{report.issues[0]}"
        )
    for issue in report.issues[:_SHOWN_ISSUES]:
        print(f"skipped: {issue}", file=sys.stderr)
    if len(report.issues) > _SHOWN_ISSUES:
        print(
            f"skipped: ... and {len(report.issues) - _SHOWN_ISSUES} more problems", file=sys.stderr
        )
    return trees, report


def _print_table(title: str, rows: list[tuple[str, str]]) -> None:
    """Print (name, value) rows as a rich table when rich is installed, else as plain text."""
    try:
        from rich.console import Console
        from rich.table import Table
    except ImportError:
        print(title)
        width = max(len(name) for name, _ in rows)
        for name, value in rows:
            print(f"  {name:<{width}}  {value}")
        return
    table = Table(title=title)
    table.add_column("what")
    table.add_column("value", overflow="fold")
    for name, value in rows:
        table.add_row(name, value)
    Console().print(table)


def run_stats(args: argparse.Namespace) -> int:
    """Handler of `data stats`: validate the file and print its statistics."""
    loaded = _load(args)
    if isinstance(loaded, int):
        return loaded
    trees, report = loaded
    rows = stats(trees).rows()
    rows.append(("problems", report.summary() if not report.ok else "none"))
    _print_table(f"OpenAssistant trees in {args.file}", rows)
    return SKIPPED if report.issues else OK


def _val_path(out: Path) -> Path:
    """OUT.jsonl → OUT.val.jsonl (also for .jsonl.gz); any other name gets .val.jsonl appended."""
    for suffix in (".jsonl.gz", ".jsonl"):
        if out.name.endswith(suffix):
            return out.with_name(out.name[: -len(suffix)] + ".val" + suffix)
    return out.with_name(out.name + ".val.jsonl")


def _why_empty(trees: list[Tree], report: ValidationReport, filters: ExportFilters, mode: str) -> str:
    """Why an export has no records: trees skipped for problems, or which filters removed them."""
    if not trees:
        return f"all {report.trees_skipped} trees were skipped for problems (listed above)"
    drops = Counter(filters.drops_tree_by(tree) for tree in trees)
    kept = drops.pop(None, 0)
    removed = ", ".join(f"{n} by {_TREE_FILTERS[why]}" for why, n in drops.items())
    text = f"{len(trees)} valid trees, " + (f"{sum(drops.values())} removed: {removed}" if removed else "none removed by the tree filters")
    if kept:
        kept_trees = [tree for tree in trees if filters.keeps_tree(tree)]
        loose = dataclasses.replace(filters, drop_deleted=False, drop_synthetic=False, top_k=None)
        text += f"; the {kept} kept trees have no {mode} example ({_EXAMPLE[mode]})"
        if EXPORTERS[mode](kept_trees, loose):
            text += " once deleted / synthetic messages" + (" and --top-k" if filters.top_k else "") + \
                " are dropped (--keep-deleted / --keep-synthetic keep those messages)"
    return text


def run_export(args: argparse.Namespace) -> int:
    """Handler of `data export`: filter, export, optionally split by tree, and write atomically.
    An output that is the input is refused before anything is read or written."""
    targets = [args.out, _val_path(args.out)] if args.split_val else [args.out]
    for target in targets:
        if _same_file(args.file, target):
            return _fail(f"output {target} is the input file {args.file}; exporting would replace "
                         "the input: choose another --out")
    languages = {
        code.strip() for item in args.lang or () for code in item.split(",") if code.strip()
    }
    filters = ExportFilters(
        ready_only=not args.any_state,
        reviewed_only=not args.any_review,
        languages=languages or None,
        drop_deleted=not args.keep_deleted,
        drop_synthetic=not args.keep_synthetic,
        top_k=args.top_k,
    )
    loaded = _load(args)
    if isinstance(loaded, int):
        return loaded
    trees, report = loaded
    records = EXPORTERS[args.mode](trees, filters)
    if not records and not args.allow_empty:
        why = _why_empty(trees, report, filters, args.mode)
        return _fail(f"{args.file}: no {args.mode} records to export: {why}; nothing written "
                     "(--allow-empty writes an empty file)")
    outputs: list[tuple[Path, list[dict[str, Any]]]] = [(args.out, records)]
    if args.split_val:
        train, val = split_by_tree(records, args.split_val, args.seed)
        outputs = [(args.out, train), (_val_path(args.out), val)]
    try:
        counts = write_jsonl_files(outputs)
    except OSError as error:
        return _fail(f"cannot write {error.filename or args.out}: {error.strerror or error}")
    kept = sum(1 for tree in trees if filters.keeps_tree(tree))
    used = len({record["tree_id"] for record in records})
    written = ", ".join(f"{n} to {path}" for (path, _), n in zip(outputs, counts, strict=True))
    print(f"exported {len(records)} {args.mode} records from {used} trees ({written})")
    print(
        f"trees: {report.trees} valid, {report.trees - kept} filtered out, "
        f"{report.trees_skipped} skipped for problems; lines skipped: {report.lines_skipped}"
    )
    return SKIPPED if report.issues else OK


def _usage(parser: argparse.ArgumentParser) -> int:
    """Handler of bare `data`: show its usage."""
    parser.print_help(sys.stderr)
    return FAILED


def register(subparsers: Any) -> None:
    """Add the `data` command (with `stats` and `export`) to an argparse subparsers object."""
    data = subparsers.add_parser(
        "data",
        help="Read, validate and export OpenAssistant conversation trees",
        description="Read, validate and export OpenAssistant conversation trees (JSONL, plain or "
        ".gz: flat messages, trees, or parquet-style rows; detected per line).",
    )
    data.set_defaults(func=lambda args: _usage(data))
    commands = data.add_subparsers(dest="data_command", metavar="{stats,export}")

    p_stats = commands.add_parser(
        "stats", help="Validate a file and print its statistics", epilog=_EXIT_CODES
    )
    p_stats.add_argument("file", type=Path, help="OpenAssistant JSONL file (.gz allowed)")
    p_stats.add_argument("--strict", action="store_true", help="fail on the first problem")
    p_stats.add_argument("--allow-empty", action="store_true", help="accept an empty file")
    p_stats.set_defaults(func=run_stats)

    p_export = commands.add_parser(
        "export",
        help="Export SFT threads, ranking examples or RL prompts as JSONL",
        epilog="Filters are on by default: tree_state ready_for_export, reviewed root, no deleted "
        "or synthetic messages (a file that records no tree_state / review_result at all, such as "
        "a plain message list, passes those two). " + _EXIT_CODES,
    )
    p_export.add_argument("file", type=Path, help="OpenAssistant JSONL file (.gz allowed)")
    p_export.add_argument(
        "--mode",
        choices=sorted(EXPORTERS),
        required=True,
        help="sft: threads; rm: ranking examples; rl: prompts",
    )
    p_export.add_argument(
        "--out",
        type=Path,
        required=True,
        help="output JSONL (.gz compresses); with --split-val also OUT.val.jsonl",
    )
    p_export.add_argument(
        "--split-val",
        type=_fraction,
        default=0.0,
        metavar="FRACTION",
        help="fraction of trees for validation (split by tree; default 0)",
    )
    p_export.add_argument("--seed", type=int, default=0, help="seed of the split (default 0)")
    p_export.add_argument(
        "--top-k",
        type=_positive,
        default=None,
        metavar="K",
        help="sft: keep only threads whose assistants are ranked < K",
    )
    p_export.add_argument(
        "--lang",
        action="append",
        metavar="CODE",
        help="keep trees in these root languages (repeat or comma-separate)",
    )
    p_export.add_argument("--keep-deleted", action="store_true", help="keep deleted messages")
    p_export.add_argument("--keep-synthetic", action="store_true", help="keep synthetic messages")
    p_export.add_argument(
        "--any-state",
        action="store_true",
        help="keep trees in any tree_state, not only ready_for_export",
    )
    p_export.add_argument(
        "--any-review", action="store_true", help="keep trees whose root failed review"
    )
    p_export.add_argument("--strict", action="store_true", help="fail on the first problem")
    p_export.add_argument(
        "--allow-empty",
        action="store_true",
        help="accept an empty input file or an export without records (writes an empty file)",
    )
    p_export.set_defaults(func=run_export)
