"""The one recipe contract: a typed config dataclass + `run(cfg) -> RunResult`.

Every command (sft, rm, prefs, ppo, psle, akd, steer, fv, sea, embed, erm) is registered with
`register_recipe`: one flag style (`-c CONFIG`, `key=value` overrides, `--out RUN_DIR`, and
`--resume-anyway` to go on in a run dir whose recorded config differs), one summary printer
(`print_summary`). The run records the command that resumes it (RUN/command.txt). A recipe writes RUN/config.yaml, RUN/metrics.jsonl and
RUN/report.html and never prints; the CLI prints.
"""

from __future__ import annotations

import argparse
import dataclasses
import shlex
import time
import typing
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, TypeVar

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


def type_name(tp: Any) -> str:
    """A config annotation as a reader writes it: float, str | None, 'dpo' | 'ipo', list[str]."""
    if typing.get_origin(tp) is Literal:
        return " | ".join(repr(a) for a in typing.get_args(tp))
    if isinstance(tp, type) and not typing.get_args(tp):
        return tp.__name__
    return str(tp).replace("typing.", "").replace("NoneType", "None")


def config_keys(cls: type, prefix: str = "", defaults: Any = None) -> Iterator[str]:
    """One `dotted.key: type = default` line per leaf field of config dataclass `cls`; nested
    sections are flattened with the defaults the enclosing config gives them."""
    hints = typing.get_type_hints(cls)
    if defaults is None:
        try:
            defaults = cls()
        except TypeError:  # a required field: show the class defaults field by field
            defaults = None
    for f in dataclasses.fields(cls):
        tp, value = hints[f.name], getattr(defaults, f.name, dataclasses.MISSING)
        if isinstance(tp, type) and dataclasses.is_dataclass(tp):
            yield from config_keys(tp, f"{prefix}{f.name}.", value if dataclasses.is_dataclass(value) else None)
            continue
        if value is dataclasses.MISSING and f.default is not dataclasses.MISSING:
            value = f.default
        shown = "(required)" if value is dataclasses.MISSING else repr(value)
        yield f"{prefix}{f.name}: {type_name(tp)} = {shown}"


def config_help(cls: type) -> str:
    """The epilog of a command's --help: every config key with its type and default."""
    lines = "\n".join(f"  {line}" for line in config_keys(cls))
    return f"config keys (set in a -c YAML file or as key=value):\n{lines}"


def add_config_parser(sub: argparse._SubParsersAction, name: str, help: str, config_cls: type,
                      description: str = "") -> argparse.ArgumentParser:
    """A subcommand whose --help ends with its config keys, defaults and types."""
    return sub.add_parser(name, help=help, description=(description or config_cls.__doc__ or help).strip(),
                          epilog=config_help(config_cls), formatter_class=argparse.RawDescriptionHelpFormatter)


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
    p = add_config_parser(sub, name, help, config_cls)
    add_recipe_args(p)

    def handler(args: argparse.Namespace) -> int:
        cfg = config_from_args(config_cls, args)
        with launched(resume_command(p.prog, args), resume_anyway=bool(getattr(args, "resume_anyway", False))):
            res = run(cfg)
        print_summary(title or name, res, rows_fn, rows_title)
        return 0

    p.set_defaults(func=handler, config_cls=config_cls)
    return p
