"""Headline RLHF experiment: PPO + KL at several β_KL vs Elastic Reset, three seeds each, on
the testbed sentiment task from the pretrained student; one reward-vs-drift plot.

    .venv/bin/python benchmarks/rlhf_reward_vs_drift.py [--out runs/rlhf_reward_vs_drift] [--quick]

Every run evaluates (gold reward, KL(π‖π0) on fresh samples, perplexity of held-out neutral
text) every `eval_every` iterations. The comparison the Elastic Reset paper makes — more
reward at the same drift — is read off the reward-vs-KL frontier: for a KL budget b, the best
evaluated reward among a run's points with KL ≤ b, averaged over seeds. Runs go two at a time
(one torch thread each). Writes OUT/report.html, OUT/reward_vs_drift_{kl,ppl}.png and
OUT/summary.md.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

BETAS = (0.02, 0.05, 0.2)
ER_BETA = 0.05
SEEDS = (0, 1, 2)
BUDGETS = (1.0, 2.0, 4.0, 8.0)


def settings(quick: bool) -> dict:
    return {"iterations": 6 if quick else 36, "rollout_batch": 32, "epochs": 2, "batch_size": 16,
            "max_new_tokens": 16, "lr": 3e-4, "eval_every": 3 if quick else 4, "eval_prompts": 48,
            "reset_every": 6 if quick else 56, "decay": 0.99}


def one_run(args: tuple[str, float, bool, int, str, bool, str]) -> tuple[str, float]:
    name, beta, elastic, seed, out, quick, model = args
    import torch

    torch.set_num_threads(1)
    from alignlab.config import ModelSettings, TrainSettings
    from alignlab.recipes import ppo
    from alignlab.rl.elastic_reset import ElasticResetSettings

    s = settings(quick)
    cfg = ppo.PPOConfig(
        model=ModelSettings(name_or_path=model),
        train=TrainSettings(lr=s["lr"], batch_size=s["batch_size"], log_every=1, save_every=0, seed=seed,
                            progress=False),
        prompts="testbed:reviews", reward="gold:sentiment", n_prompts=512,
        generation=ppo.SamplingSettings(max_new_tokens=s["max_new_tokens"], batch_size=64),
        ppo=ppo.PPOSettings(iterations=s["iterations"], rollout_batch=s["rollout_batch"], epochs=s["epochs"],
                            kl_coef=beta),
        elastic_reset=ElasticResetSettings(enabled=elastic, decay=s["decay"], reset_every=s["reset_every"]),
        eval=ppo.DriftEvalSettings(every=s["eval_every"], n_prompts=s["eval_prompts"], n_reference=48,
                                   reference_text="testbed:neutral"),
        output_dir=str(Path(out) / f"{name}-seed{seed}"),
    )
    t = time.time()
    ppo.run(cfg)
    return cfg.output_dir, time.time() - t


def frontier(points: list[tuple[int, float, float]], budget: float) -> float | None:
    """Best reward among evaluations with KL ≤ budget (None when no point qualifies)."""
    ok = [y for _, kl, y in points if kl <= budget]
    return max(ok) if ok else None


def mean_sd(vals: list[float | None], n_runs: int) -> str:
    """'mean ± sd' over the runs that have a value ('(k/n)' when some have none)."""
    vals = [v for v in vals if v is not None]
    if not vals:
        return "–"
    sd = statistics.stdev(vals) if len(vals) > 1 else 0.0
    return f"{statistics.mean(vals):.3f} ± {sd:.3f}" + (f" ({len(vals)}/{n_runs})" if len(vals) < n_runs else "")


def summarise(groups: dict[str, list[list[dict]]]) -> tuple[list[dict], str]:
    from alignlab.compare import eval_points

    rows, lines = [], []
    head = "| method | final reward | final KL | final ppl | " + " | ".join(f"best reward @ KL≤{b:g}" for b in BUDGETS) + " |"
    lines += [head, "|" + "---|" * (4 + len(BUDGETS))]
    for label, runs in groups.items():
        finals = [[r for r in recs if "eval_reward" in r][-1] for recs in runs]

        fr = {b: [frontier(eval_points(recs), b) for recs in runs] for b in BUDGETS}
        n = len(runs)
        row = {"method": label, "final_reward": mean_sd([f["eval_reward"] for f in finals], n),
               "final_kl": mean_sd([f["eval_kl"] for f in finals], n),
               "final_ppl": mean_sd([f["eval_ppl"] for f in finals], n)}
        row.update({f"reward@KL<={b:g}": mean_sd(fr[b], n) for b in BUDGETS})
        rows.append(row)
        lines.append("| " + " | ".join(str(v) for v in row.values()) + " |")
    return rows, "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default="runs/rlhf_reward_vs_drift")
    ap.add_argument("--quick", action="store_true", help="6 iterations per run (smoke test)")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--model", default="testbed:student")
    a = ap.parse_args()
    import multiprocessing

    from alignlab.resolve import model_path as resolve_model_path

    model = resolve_model_path(a.model)  # builds the testbed model once, before the workers start
    jobs = [(f"ppo-b{b:g}", b, False, s, a.out, a.quick, model) for b in BETAS for s in SEEDS]
    jobs += [(f"elastic-b{ER_BETA:g}", ER_BETA, True, s, a.out, a.quick, model) for s in SEEDS]
    t0 = time.time()
    with ProcessPoolExecutor(a.workers, mp_context=multiprocessing.get_context("spawn")) as pool:
        done = list(pool.map(one_run, jobs))
    wall = time.time() - t0
    from alignlab.compare import compare_runs, run_label
    from alignlab.runs import read_metrics

    dirs = [Path(d) for d, _ in done]
    report = compare_runs(dirs, a.out, group=True)
    groups: dict[str, list[list[dict]]] = {}
    for d in dirs:
        groups.setdefault(run_label(d), []).append(read_metrics(d / "metrics.jsonl"))
    rows, table = summarise(groups)
    s = settings(a.quick)
    md = (f"Model {a.model}. Settings: {json.dumps(s)}; seeds {list(SEEDS)}; wall time {wall:.0f} s for {len(jobs)} runs "
          f"({a.workers} at a time, 1 thread each).\n\n{table}\n")
    Path(a.out, "summary.md").write_text(md)
    print(md)
    print(f"report: {report}")


if __name__ == "__main__":
    main()
