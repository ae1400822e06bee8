"""The one recipe contract: a typed config dataclass + `run(cfg) -> RunResult`.

Every command (sft, rm, prefs, ppo, psle, akd, steer, fv, sea, embed, erm) is registered with
`register_recipe`: one flag style (`-c CONFIG`, `key=value` overrides, `--out RUN_DIR`, and
`--resume-anyway` to go on in a run dir whose recorded config differs), one summary printer
(`print_summary`). The run records the command that resumes it (RUN/command.txt). A recipe writes RUN/config.yaml, RUN/metrics.jsonl and
RUN/report.html and never prints; the CLI prints.
"""

from __future__ import annotations

import argparse
import shlex
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from alignlab.config import load_config
from alignlab.runs import launched

T = TypeVar("T")
Scalar = int | float | str | bool | None
RowsFn = Callable[[list[dict[str, Any]]], list[dict[str, Any]]]


@dataclass
class RunResult:
    """What a recipe returns: where its run lives and its headline numbers (scalars only)."""

    run_dir: Path
    metrics: dict[str, Scalar] = field(default_factory=dict)
    model_dir: Path | None = None

    def __post_init__(self) -> None:
        bad = [k for k, v in self.metrics.items() if not isinstance(v, (int, float, str, bool, type(None)))]
        if bad:
            raise TypeError(f"RunResult.metrics must hold scalars; {bad} are not (log rows to metrics.jsonl)")


def add_recipe_args(parser: argparse.ArgumentParser) -> None:
    """--config FILE, key=value overrides, --out RUN_DIR, --resume-anyway."""
    parser.add_argument("--config", "-c", help="YAML config file (see examples/)")
    parser.add_argument("--out", help="run directory (default: runs/<recipe>-<time>); an existing run there "
                        "with the same config resumes, one with another config is refused")
    parser.add_argument("--resume-anyway", action="store_true",
                        help="continue the run in --out even though its config differs from the one it was "
                        "started with (the change is logged in RUN/config_changes.log)")
    parser.add_argument("overrides", nargs="*", metavar="key=value", help="config overrides, e.g. train.lr=1e-4")


def resume_command(prog: str, args: argparse.Namespace) -> list[str]:
    """The command line that reruns this recipe, minus where it writes (`RunDir` appends
    `--out RUN`, so rerunning it resumes that run, see `alignlab.runs`)."""
    cmd = shlex.split(prog)
    if getattr(args, "config", None):
        cmd += ["-c", args.config]
    return cmd + [o for o in (args.overrides or []) if not o.strip().startswith("output_dir=")]


def config_from_args(cls: type[T], args: argparse.Namespace) -> T:
    """Load the recipe config; `--out` overrides `output_dir` when the config has one."""
    overrides = list(args.overrides or [])
    if getattr(args, "out", None):
        overrides.append(f"output_dir={args.out}")
    return load_config(cls, args.config, overrides)


def default_run_dir(recipe: str) -> str:
    return str(Path("runs") / f"{recipe}-{time.strftime('%Y%m%d-%H%M%S')}")


def print_summary(name: str, res: RunResult, rows_fn: RowsFn | None = None, rows_title: str = "") -> None:
    """The CLI's closing output, the same for every recipe: an optional table of per-step /
    per-iteration rows (`rows_fn(metrics records)`), the headline metrics, and the report path."""
    from alignlab.progress import print_table
    from alignlab.runs import read_metrics

    if rows_fn is not None:
        rows = rows_fn(read_metrics(res.run_dir / "metrics.jsonl"))
        if rows:
            print_table(rows_title or f"{name} progress", rows)
    print_table(f"{name} run {res.run_dir}", [{"metric": k, "value": v} for k, v in res.metrics.items()])
    report = res.run_dir / "report.html"
    if report.exists():
        print(f"report: {report}")
    if res.model_dir is not None:
        print(f"model: {res.model_dir}")


def register_recipe(sub: argparse._SubParsersAction, name: str, help: str, config_cls: type[T],
                    run: Callable[[T], RunResult], rows_fn: RowsFn | None = None, rows_title: str = "",
                    title: str = "") -> argparse.ArgumentParser:
    """Add subcommand `name`: parse the config the one way, run, print the one summary."""
    p = sub.add_parser(name, help=help, description=(config_cls.__doc__ or help).strip())
    add_recipe_args(p)

    def handler(args: argparse.Namespace) -> int:
        cfg = config_from_args(config_cls, args)
        with launched(resume_command(p.prog, args), resume_anyway=bool(getattr(args, "resume_anyway", False))):
            res = run(cfg)
        print_summary(title or name, res, rows_fn, rows_title)
        return 0

    p.set_defaults(func=handler, config_cls=config_cls)
    return p
