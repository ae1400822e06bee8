"""What every recipe shares: config from YAML + overrides, a run directory, a result.

A recipe is a config dataclass plus `run(config) -> RunResult`; its CLI is
`add_recipe_args` + `config_from_args` + `run`.
"""

from __future__ import annotations

import argparse
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from alignlab.config import load_config

T = TypeVar("T")


@dataclass
class RunResult:
    """What a recipe returns: where its run lives and its headline numbers."""

    run_dir: Path
    metrics: dict[str, Any] = field(default_factory=dict)
    model_dir: Path | None = None


def add_recipe_args(parser: argparse.ArgumentParser) -> None:
    """--config FILE, key=value overrides, --out RUN_DIR."""
    parser.add_argument("--config", "-c", help="YAML config file (see examples/)")
    parser.add_argument("--out", help="run directory (default: runs/<recipe>-<time>)")
    parser.add_argument("overrides", nargs="*", metavar="key=value", help="config overrides, e.g. train.lr=1e-4")


def config_from_args(cls: type[T], args: argparse.Namespace) -> T:
    """Load the recipe config; `--out` overrides `output_dir` when the config has one."""
    overrides = list(args.overrides or [])
    if getattr(args, "out", None):
        overrides.append(f"output_dir={args.out}")
    return load_config(cls, args.config, overrides)


def default_run_dir(recipe: str) -> str:
    return str(Path("runs") / f"{recipe}-{time.strftime('%Y%m%d-%H%M%S')}")


def print_run_summary(name: str, res: RunResult, rows_title: str, row_fn: Any) -> None:
    """The CLI's closing output: one table of per-round/iteration rows (`row_fn(metrics records)`)
    and one of the run's headline metrics."""
    from alignlab.progress import print_table
    from alignlab.runs import read_metrics

    print_table(rows_title, row_fn(read_metrics(res.run_dir / "metrics.jsonl")))
    print_table(f"{name} run {res.run_dir}", [{"metric": k, "value": v} for k, v in res.metrics.items()])
