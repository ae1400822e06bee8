"""`alignlab testbed build|info`: build the testbed models, or show what a build measured."""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

from alignlab.testbed.sizes import SIZES


def _build(args: argparse.Namespace) -> int:
    from alignlab.progress import print_table
    from alignlab.testbed.build import build_summary, ensure_testbed

    rows = []
    for size in args.size:
        path = ensure_testbed(size)
        if args.out:
            dest = Path(args.out) if len(args.size) == 1 else Path(args.out) / size
            shutil.copytree(path, dest, dirs_exist_ok=True)
            path = dest
        s = build_summary(path)
        rows.append({"size": size, "params": s["params"], "val_ppl": s["val_ppl"], "unigram_ppl": s["unigram_ppl"],
                     "fact_true_vs_myth": s["fact_true_vs_myth"], "qa_true_vs_myth": s["qa_true_vs_myth"],
                     "qa_myth_majority": s.get("qa_true_vs_myth_majority", float("nan")),
                     "build_s": s["build_seconds"], "threads": s.get("threads", 0),
                     "load_before_after": f"{s.get('load_before', float('nan')):.1f}/{s.get('load_after', float('nan')):.1f}",
                     "path": str(path)})
    print_table("testbed models", rows)
    return 0


def _info(args: argparse.Namespace) -> int:
    from alignlab.testbed.build import build_summary, ensure_testbed

    print(json.dumps(build_summary(ensure_testbed(args.size)), indent=2))
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("testbed", help="Build the offline testbed: world, tokenizer and base models")
    s = p.add_subparsers(dest="testbed_cmd", metavar="ACTION")
    b = s.add_parser("build", help="build (or reuse) base models; smallest size 'tiny' is the one tests use")
    b.add_argument("--size", nargs="+", default=["student"], choices=list(SIZES),
                   help=f"model size(s) to build: {', '.join(SIZES)} (default student)")
    b.add_argument("--out", help="also copy the tokenizer + model files to this folder")
    b.set_defaults(func=_build)
    i = s.add_parser("info", help="print the build summary of a size")
    i.add_argument("--size", default="student", choices=list(SIZES))
    i.set_defaults(func=_info)
    p.set_defaults(func=lambda a: p.print_help() or 0)
