"""`alignlab steer`, `alignlab fv`, `alignlab sea fit|eval`: inference-time alignment commands.

Examples:
  alignlab steer model.name_or_path=testbed:student coefficients=[-4,0,4]
  alignlab fv data=../shared/data/function_vectors/antonym.json template=qa model.name_or_path=real:smollm2
  alignlab sea fit feature=tanh top_layers=2 --out runs/sea
  alignlab sea eval editor=runs/sea/editor eval_data=TruthfulQA.csv model.name_or_path=real:smollm2
"""

from __future__ import annotations

import argparse

from alignlab.recipe import add_recipe_args, config_from_args


def _show(title: str, result) -> int:
    from alignlab.progress import print_table

    m = result.metrics
    if "rows" in m:
        print_table(title, m["rows"])
    elif "by_layer" in m:
        rows = [{"layer": ly, "zero-shot + FV": acc} for ly, acc in m["by_layer"].items()]
        rows += [{"layer": "zero-shot", "zero-shot + FV": m["zero_shot"]},
                 {"layer": "few-shot", "zero-shot + FV": m["few_shot"]}]
        print_table(title, rows)
    elif "before" in m:
        print_table(title, [{"model": "before", **m["before"]}, {"model": "SEA", **m["after"]}])
    print(f"results in {result.run_dir}")
    return 0


def _steer(args: argparse.Namespace) -> int:
    from alignlab.interventions.recipes import SteerConfig, run_steer

    return _show("steering sweep (mean gold reward)", run_steer(config_from_args(SteerConfig, args)))


def _fv(args: argparse.Namespace) -> int:
    from alignlab.interventions.recipes import FVConfig, run_fv

    return _show("function vector: top-1 accuracy", run_fv(config_from_args(FVConfig, args)))


def _sea(args: argparse.Namespace) -> int:
    from alignlab.interventions.recipes import SEAConfig, run_sea

    return _show(f"SEA {args.mode}", run_sea(config_from_args(SEAConfig, args), args.mode))


def register(sub: argparse._SubParsersAction) -> None:
    """Add the steer, fv and sea subcommands."""
    p = sub.add_parser("steer", help="Train a steering vector (CAA) and sweep layers x coefficients")
    add_recipe_args(p)
    p.set_defaults(func=_steer)
    p = sub.add_parser("fv", help="Extract a function vector; zero-shot accuracy vs layer")
    add_recipe_args(p)
    p.set_defaults(func=_fv)
    p = sub.add_parser("sea", help="Spectral editing of activations: fit or evaluate an editor")
    p.add_argument("mode", choices=["fit", "eval"], help="fit: fit and save an editor; eval: evaluate a saved one")
    add_recipe_args(p)
    p.set_defaults(func=_sea)
