"""The `alignlab` command: one subcommand per recipe and tool.

Each module listed below has `register(subparsers)`, which adds its subcommand and sets
`func(args) -> int`. The CLI only parses and calls; the work lives in the recipes.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys

from alignlab.errors import AlignlabError, describe_os_error

COMMAND_MODULES = [
    "alignlab.demo",
    "alignlab.testbed.cli",
    "alignlab.data.oasst.cli",
    "alignlab.recipes.sft",
    "alignlab.recipes.rm",
    "alignlab.recipes.prefs",
    "alignlab.recipes.ppo",
    "alignlab.recipes.psle",
    "alignlab.recipes.akd",
    "alignlab.recipes.steer",
    "alignlab.recipes.fv",
    "alignlab.recipes.sea",
    "alignlab.recipes.embed",
    "alignlab.recipes.erm",
    "alignlab.recipes.sample",
    "alignlab.compare",
    "alignlab.runs_index",
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="alignlab",
        description="Align causal language models: data, SFT, reward models, DPO/IPO/Cal-DPO, "
        "PPO + Elastic Reset, steering/SEA, embedding reward models. Runs offline on a built-in test world.",
    )
    from alignlab import __version__

    parser.add_argument("--version", action="version", version=f"alignlab {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as e:
            if e.name and name.startswith(e.name):
                continue  # that part of the toolkit is not installed in this build
            raise
        module.register(sub)
    return parser


def quiet_transformers() -> None:
    """Our progress bars and tables say what happens; drop transformers' per-load bars and
    load reports (e.g. 'score.weight MISSING' for a fresh reward head, which is expected).
    ALIGNLAB_VERBOSE=1 keeps them."""
    if os.environ.get("ALIGNLAB_VERBOSE"):
        return
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()


def main(argv: list[str] | None = None) -> int:
    quiet_transformers()
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if extra:  # key=value overrides may also follow --out / -c (argparse stops the positional list there)
        if not hasattr(args, "overrides") or any("=" not in x or x.startswith("-") for x in extra):
            parser.error(f"unrecognized arguments: {' '.join(extra)}")
        args.overrides = list(args.overrides or []) + extra
    if not getattr(args, "func", None):
        parser.print_help()
        return 0 if args.command is None else 2
    try:
        return int(args.func(args) or 0)
    except AlignlabError as e:
        print(f"alignlab: error: {e}", file=sys.stderr)
        return 2
    except FileNotFoundError as e:
        print(f"alignlab: error: file not found: {e.filename or e}", file=sys.stderr)
        return 2
    except OSError as e:  # disk full, read-only or forbidden run dir, unreadable input
        where = f"while writing under {args.out}" if getattr(args, "out", None) else ""
        print(f"alignlab: error: {describe_os_error(e, where)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        from alignlab.runs import resume_hint

        print(f"alignlab: interrupted; completed checkpoints are intact. {resume_hint()}", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
