"""`alignlab demo`: the whole workflow end to end on the built-in testbed.

Builds (or reuses) the testbed student, then runs each stage in `demo_stages`
(SFT → reward model → DPO vs Cal-DPO → PPO vs Elastic Reset → steering/SEA →
embedding reward models), printing a line as each stage starts and ends, the headline and
summary tables, and writing one HTML report: a headline table, then one section per stage.
"""

from __future__ import annotations

import argparse
import importlib
import time
from pathlib import Path

from alignlab.demo_stages import DemoContext, StageResult
from alignlab.progress import fmt_duration, heartbeat, print_table, say

STAGES = ["sft", "prefs", "rlhf", "psle", "inference", "embedding_rm", "akd"]
TITLES = {
    "testbed": "Testbed: the pretrained base student",
    "sft": "SFT: supervised fine-tuning on exported threads",
    "prefs": "Reward model, then DPO vs Cal-DPO",
    "rlhf": "RLHF: PPO + KL penalty vs Elastic Reset",
    "psle": "PSLE: principle-guided self-labelling",
    "inference": "Inference-time alignment: SEA, steering, function vectors",
    "embedding_rm": "Embedding reward models and best-of-N",
    "akd": "AKD: adversarial knowledge distillation of code",
}


def _testbed_stage(base: Path, size: str, seconds: float) -> StageResult:
    from alignlab.testbed.build import build_summary

    summary = build_summary(base)
    params = summary["params"] / 1e6
    return StageResult("testbed", rows=[{
        "stage": "testbed", "method": f"base {size} ({params:.2f}M params)",
        "val_ppl": summary["val_ppl"], "unigram_ppl": summary["unigram_ppl"],
        "fact_true_vs_myth": summary["fact_true_vs_myth"]}], seconds=seconds,
        verdict=f"The base {size} ({params:.2f}M parameters) reads the built-in world at validation perplexity "
                f"{summary['val_ppl']:.2f} (a unigram model: {summary['unigram_ppl']:.1f}); every stage starts from it.")


def _timed_stage(label: str, fn):
    """Run fn() with a start line, an end line with its time, and heartbeats in a log."""
    t = time.time()
    say(f"demo: {label} started at {time.strftime('%H:%M:%S')}")
    try:
        with heartbeat(lambda: f"demo: {label} running for {fmt_duration(time.time() - t)}"):
            res = fn()
    except BaseException:
        say(f"demo: {label} failed after {fmt_duration(time.time() - t)}")
        raise
    say(f"demo: {label} done in {fmt_duration(time.time() - t)}")
    return res, time.time() - t


def run_demo(out_dir: str | Path = "runs/demo", quick: bool = False, seed: int = 0,
             stages: list[str] | None = None, size: str = "student") -> list[StageResult]:
    """Run the demo stages in order; returns their results (also written to report.html)."""
    from alignlab.testbed.build import ensure_testbed
    from alignlab.testbed.world import World

    t_all = time.time()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    base, secs = _timed_stage(f"testbed {size} (built once, then cached)", lambda: ensure_testbed(size))
    results = [_testbed_stage(base, size, secs)]
    ctx = DemoContext(world=World(), base_model=str(base), out_dir=out, seed=seed, quick=quick)
    names = stages or STAGES
    for i, name in enumerate(names, 1):
        try:
            module = importlib.import_module(f"alignlab.demo_stages.{name}")
        except ModuleNotFoundError as e:
            if e.name == f"alignlab.demo_stages.{name}":
                say(f"demo: stage {name} skipped (not installed in this build)")
                continue
            raise
        res, seconds = _timed_stage(f"stage {i}/{len(names)} {name}", lambda m=module: m.run(ctx))
        res.seconds = seconds
        results.append(res)
    total = time.time() - t_all
    headline = [dict(h, stage=res.name) for res in results for h in res.headline]
    if headline:
        print_table("alignlab demo — headline", [{k: h.get(k) for k in ("method", "measure", "before", "after")}
                                                 for h in headline])
    rows = [dict(r, seconds=round(res.seconds, 1)) if i == 0 else r
            for res in results for i, r in enumerate(res.rows)]
    print_table("alignlab demo — testbed results", [_compact(r) for r in rows])
    report = write_demo_report(out, results, total, quick, seed)
    say(f"demo: all done in {fmt_duration(total)}; report: {report}")
    return results


def write_demo_report(out: Path, results: list[StageResult], total: float, quick: bool, seed: int) -> Path:
    """report.html: the headline table, then one section per stage (verdict, its own tables, plots)."""
    from alignlab.report import Section, write_report

    sections = [Section(title=TITLES.get(r.name, r.name), verdict=r.verdict or _verdict_of(r), tables=r.tables(),
                        figures=r.figures, notes=r.notes, meta=fmt_duration(r.seconds)) for r in results]
    headline = [dict(h, stage=r.name) for r in results for h in r.headline]
    mode = "quick settings (a smoke test: numbers are not meaningful)" if quick else "full settings"
    return write_report(out, "alignlab demo", verdict="", curve_keys=(), sections=sections, headline=headline,
                        anchors=[r.name for r in results],
                        subtitle=f"{len(results) - 1} stages on the built-in testbed · {mode} · seed {seed} · "
                                 f"total {fmt_duration(total)}")


def _verdict_of(res: StageResult) -> str:
    """A stage's verdict when it gave none: its headline rows as 'method: measure a → b'."""
    return "; ".join(f"{h['method']}: {h['measure']} {h['before']:.3g} → {h['after']:.3g}" for h in res.headline
                     if isinstance(h.get("before"), (int, float)) and isinstance(h.get("after"), (int, float)))


def _compact(row: dict) -> dict:
    """stage | method | 'metric=value, ...' — one readable line per row on any terminal."""
    rest = ", ".join(f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}"
                     for k, v in row.items() if k not in ("stage", "method", "table") and v not in ("", None))
    return {"stage": row.get("stage", ""), "method": row.get("method", ""), "results": rest}


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("demo", help="Run the end-to-end demo on the built-in testbed (offline, CPU)")
    p.add_argument("--out", help="output folder (default runs/demo, or runs/demo-quick with --quick: a run folder "
                                 "never changes what it is)")
    p.add_argument("--quick", action="store_true", help="smallest settings (a smoke test)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--stages", nargs="*", choices=STAGES, help="run only these stages")
    p.set_defaults(func=lambda a: run_demo(a.out or ("runs/demo-quick" if a.quick else "runs/demo"), a.quick, a.seed,
                                           a.stages) and 0)
