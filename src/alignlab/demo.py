"""`alignlab demo`: the whole workflow end to end on the built-in testbed.

Builds (or reuses) the testbed student, then runs each stage in `demo_stages`
(SFT → reward model → DPO vs Cal-DPO → PPO vs Elastic Reset → steering/SEA →
embedding reward models), printing one summary table and writing one HTML report.
"""

from __future__ import annotations

import argparse
import importlib
import time
from pathlib import Path

from alignlab.demo_stages import DemoContext, StageResult
from alignlab.progress import console, print_table
from alignlab.report import write_report
from alignlab.testbed.build import build_summary, ensure_testbed
from alignlab.testbed.world import World

STAGES = ["sft", "prefs", "rlhf", "psle", "inference", "embedding_rm", "akd"]


def run_demo(out_dir: str | Path = "runs/demo", quick: bool = False, seed: int = 0,
             stages: list[str] | None = None, size: str = "student") -> list[StageResult]:
    """Run the demo stages in order; returns their results (also written to report.html)."""
    t_all = time.time()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    world = World()
    t0 = time.time()
    base = ensure_testbed(size)
    summary = build_summary(base)
    results = [StageResult("testbed", rows=[{
        "stage": "testbed", "method": f"base {size} ({summary['params'] / 1e6:.2f}M params)",
        "val_ppl": summary["val_ppl"], "unigram_ppl": summary["unigram_ppl"],
        "fact_true_vs_myth": summary["fact_true_vs_myth"]}], seconds=time.time() - t0)]
    ctx = DemoContext(world=world, base_model=str(base), out_dir=out, seed=seed, quick=quick)
    for name in stages or STAGES:
        try:
            module = importlib.import_module(f"alignlab.demo_stages.{name}")
        except ModuleNotFoundError as e:
            if e.name == f"alignlab.demo_stages.{name}":
                continue
            raise
        console.rule(f"demo stage: {name}")
        t = time.time()
        res = module.run(ctx)
        res.seconds = time.time() - t
        results.append(res)
    rows = [dict(r, seconds=round(res.seconds, 1)) if i == 0 else r
            for res in results for i, r in enumerate(res.rows)]
    print_table("alignlab demo — testbed results", [_compact(r) for r in rows])
    figs = [f for res in results for f in res.figures]
    notes = [n for res in results for n in res.notes]
    notes.append(f"Total time {time.time() - t_all:.0f} s.")
    report = write_report(out, "alignlab demo", notes=notes, figures=figs, tables={"Summary": rows}, curve_keys=())
    console.print(f"report: {report}")
    return results


def _compact(row: dict) -> dict:
    """stage | method | 'metric=value, ...' — one readable line per row on any terminal."""
    rest = ", ".join(f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}"
                     for k, v in row.items() if k not in ("stage", "method") and v not in ("", None))
    return {"stage": row.get("stage", ""), "method": row.get("method", ""), "results": rest}


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("demo", help="Run the end-to-end demo on the built-in testbed (offline, CPU)")
    p.add_argument("--out", default="runs/demo", help="output folder (default runs/demo)")
    p.add_argument("--quick", action="store_true", help="smallest settings (a smoke test)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--stages", nargs="*", choices=STAGES, help="run only these stages")
    p.set_defaults(func=lambda a: run_demo(a.out, a.quick, a.seed, a.stages) and 0)
