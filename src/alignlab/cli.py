"""The `alignlab` command: one subcommand per recipe and tool.

Each module listed below has `register(subparsers)`, which adds its subcommand and sets
`func(args) -> int`. The CLI only parses and calls; the work lives in the recipes.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from types import ModuleType

from alignlab.errors import AlignlabError, describe_os_error

# name -> (module whose `register(sub)` adds it, one-line help). Static, so `alignlab --help`
# imports nothing heavy; only the chosen command's module is imported (see `build_parser`).
COMMANDS: dict[str, tuple[str, str]] = {
    "demo": ("alignlab.demo", "Run the end-to-end demo on the built-in test world (offline, CPU)"),
    "claims": ("alignlab.claims.cli", "Re-measure each seed paper's headline claim (≥ 3 seeds, 95-percent t intervals)"),
    "testbed": ("alignlab.testbed.cli", "Build the offline testbed: world, tokenizer and base models"),
    "data": ("alignlab.data.oasst.cli", "Read, validate and export OpenAssistant conversation trees"),
    "sft": ("alignlab.recipes.sft", "Supervised fine-tuning on chat threads or prompt/response pairs"),
    "rm": ("alignlab.recipes.rm", "Train a scalar-head reward model on ranking examples / preference pairs"),
    "prefs": ("alignlab.recipes.prefs", "Preference optimisation: preference.loss=dpo | ipo | cal_dpo"),
    "ppo": ("alignlab.recipes.ppo", "RLHF with PPO + KL penalty (optionally Elastic Reset)"),
    "psle": ("alignlab.recipes.psle", "PSLE: principle-guided self-labelling"),
    "akd": ("alignlab.recipes.akd", "AKD: adversarial knowledge distillation for code"),
    "steer": ("alignlab.recipes.steer", "Train a steering vector (CAA) and sweep layers x coefficients"),
    "fv": ("alignlab.recipes.fv", "Extract a function vector; zero-shot accuracy vs layer"),
    "sea": ("alignlab.recipes.sea", "Spectral editing of activations: fit or evaluate an editor"),
    "embed": ("alignlab.recipes.embed", "Embed (prompt, response) rows once with a frozen model (cached)"),
    "erm": ("alignlab.recipes.erm", "Embedding reward models: train or evaluate heads/ensembles"),
    "sample": ("alignlab.recipes.sample", "Print sampled completions of a model or run"),
    "chat": ("alignlab.recipes.sample", "Chat with a model or run on stdin"),
    "compare": ("alignlab.compare", "Overlay reward-vs-drift curves of several PPO runs (PNG + HTML)"),
    "runs": ("alignlab.runs_index", "Index the runs under a folder as HTML (status, metrics, reports, curves)"),
}


ALL = "*"  # build_parser(ALL): every command registered in full (what tests that parse any command use)


def chosen_command(argv: list[str]) -> str | None:
    """The subcommand named in argv (its first bare word), if it is one of ours."""
    word = next((a for a in argv if not a.startswith("-")), None)
    return word if word in COMMANDS else None


def _import_command(path: str) -> ModuleType | None:
    """The module of a command; None when that part of the toolkit is not installed in this build."""
    try:
        return importlib.import_module(path)
    except ModuleNotFoundError as e:
        if e.name and path.startswith(e.name):
            return None
        raise


def build_parser(command: str | None = ALL) -> argparse.ArgumentParser:
    """The parser with `command` registered in full (ALL: every command; None: none), every
    other command as a help line only, so only the chosen command's module is imported."""
    parser = argparse.ArgumentParser(
        prog="alignlab",
        description="Align causal language models: data, SFT, reward models, DPO/IPO/Cal-DPO, "
        "PPO + Elastic Reset, steering/SEA, embedding reward models. Runs offline on a built-in test world.",
        epilog="`alignlab COMMAND --help` lists a command's config keys with their defaults and types.",
    )
    from alignlab import __version__

    parser.add_argument("--version", action="version", version=f"alignlab {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (path, help) in COMMANDS.items():
        if name in sub.choices:
            continue  # registered with another command of its module
        chosen = command == ALL or (command in COMMANDS and COMMANDS[command][0] == path)
        module = _import_command(path) if chosen else None
        if module is not None:
            module.register(sub)
        elif command != ALL:
            sub.add_parser(name, help=help)
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
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = build_parser(chosen_command(argv))
    args, extra = parser.parse_known_args(argv)
    if extra:  # key=value overrides may also follow --out / -c (argparse stops the positional list there)
        if not hasattr(args, "overrides") or any("=" not in x or x.startswith("-") for x in extra):
            parser.error(f"unrecognized arguments: {' '.join(extra)}")
        args.overrides = list(args.overrides or []) + extra
    if not getattr(args, "func", None):
        parser.print_help()
        return 0 if args.command is None else 2
    quiet_transformers()
    args.cli_argv = argv  # the command as given (a handler may record it; sys.argv differs when called from Python)
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


def entry() -> None:
    """The `alignlab` command (console script and `python -m alignlab.cli`): `main`, then exit
    with its code; a process of a multi-process run leaves through `sharding.leave`."""
    code = main()
    if "torch" in sys.modules:  # a run that never imported torch has no process group
        from alignlab.train import sharding

        if sharding.group_is_up():
            sharding.leave(code)
    sys.exit(code)


if __name__ == "__main__":
    entry()
