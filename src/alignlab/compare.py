"""`alignlab compare RUN_DIR...`: overlay the reward-vs-drift curves of several RLHF runs.

Each run contributes its evaluation points (one per `eval.every` iterations) from
metrics.jsonl: reward against KL(π‖π0) and against the perplexity of held-out reference
text. Runs with the same label (e.g. three seeds of one setting) can be averaged with
`--group`, pointwise by iteration.
"""

from __future__ import annotations

import argparse
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

from alignlab.errors import DataError
from alignlab.runs import read_metrics

DRIFT_KEYS = {"eval_kl": "KL(π‖π0) per response (nats)", "eval_ppl": "perplexity of held-out reference text"}


def eval_points(records: Sequence[Mapping[str, Any]], drift_key: str = "eval_kl",
                reward_key: str = "eval_reward") -> list[tuple[int, float, float]]:
    """(iteration, drift, reward) of every evaluation record that has both numbers."""
    out = []
    for r in records:
        d, y = r.get(drift_key), r.get(reward_key)
        if isinstance(d, (int, float)) and isinstance(y, (int, float)):
            out.append((int(r.get("iteration", r.get("step", 0))), float(d), float(y)))
    return out


def mean_curve(runs: Sequence[Sequence[Mapping[str, Any]]], drift_key: str = "eval_kl",
               reward_key: str = "eval_reward") -> tuple[list[float], list[float]]:
    """Pointwise mean (drift, reward) over runs, at the iterations every run evaluated."""
    per_run = [{it: (d, y) for it, d, y in eval_points(r, drift_key, reward_key)} for r in runs]
    common = sorted(set.intersection(*(set(p) for p in per_run))) if per_run else []
    xs = [sum(p[it][0] for p in per_run) / len(per_run) for it in common]
    ys = [sum(p[it][1] for p in per_run) / len(per_run) for it in common]
    return xs, ys


def drift_figures(groups: Mapping[str, Sequence[Sequence[Mapping[str, Any]]]], out_dir: str | Path,
                  title: str = "", reward_key: str = "eval_reward", stem: str = "reward_vs_drift") -> list[Path]:
    """Reward-vs-KL and reward-vs-perplexity PNGs; one line per label (mean over its runs)."""
    from alignlab.plots import line_plot

    figs = []
    for key, xlabel in DRIFT_KEYS.items():
        series = {}
        for label, runs in groups.items():
            xs, ys = mean_curve(runs, key, reward_key)
            if xs:
                n = f" ({len(runs)} runs)" if len(runs) > 1 else ""
                series[f"{label}{n}"] = (xs, ys)
        if series:
            suffix = "kl" if key == "eval_kl" else "ppl"
            figs.append(line_plot(series, Path(out_dir) / f"{stem}_{suffix}.png",
                                  title=title or "reward vs drift", xlabel=xlabel,
                                  ylabel=reward_key.replace("eval_", ""), markers=True))
    return figs


def label_of_config(cfg: Mapping[str, Any], default: str = "run") -> str:
    """Legend label of a PPO config (as a dict): 'PPO β=..' or 'Elastic Reset n=.. β=..'."""
    er, ppo = cfg.get("elastic_reset") or {}, cfg.get("ppo") or {}
    if not isinstance(ppo, Mapping) or "kl_coef" not in ppo:
        return default
    if isinstance(er, Mapping) and er.get("enabled"):
        return f"Elastic Reset n={er.get('reset_every')} β={ppo['kl_coef']:g}"
    return f"PPO β={ppo['kl_coef']:g}" + (" adaptive" if ppo.get("kl_target", 0) > 0 else "")


def run_label(run_dir: Path) -> str:
    """A run's legend label from its config.yaml (falls back to the folder name)."""
    cfg_path = run_dir / "config.yaml"
    try:
        cfg = yaml.safe_load(cfg_path.read_text()) if cfg_path.exists() else None
    except yaml.YAMLError:
        cfg = None
    return label_of_config(cfg, run_dir.name) if isinstance(cfg, dict) else run_dir.name


def compare_runs(run_dirs: Sequence[str | Path], out: str | Path, group: bool = False) -> Path:
    """Overlay the runs' reward-vs-drift curves; writes PNGs and OUT/report.html."""
    from alignlab.report import write_report

    groups: dict[str, list[list[dict[str, Any]]]] = {}
    rows = []
    for d in map(Path, run_dirs):
        records = read_metrics(d / "metrics.jsonl")
        pts = eval_points(records)
        if not pts:
            raise DataError(f"{d}: no evaluation records with eval_reward and eval_kl in metrics.jsonl")
        label = run_label(d) if group else f"{run_label(d)} [{d.name}]"
        groups.setdefault(label, []).append(records)
        last = [r for r in records if "eval_reward" in r][-1]
        rows.append({"run": str(d), "label": run_label(d), "iteration": last.get("iteration"),
                     "reward": last["eval_reward"], "kl": last.get("eval_kl"), "ppl": last.get("eval_ppl")})
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    figs = drift_figures(groups, out, title="reward vs drift")
    return write_report(out, "RLHF runs: reward vs drift", figures=figs,
                        tables={"Last evaluation of each run": rows}, curve_keys=(),
                        notes=["One point per evaluation; lines go up-left for a better reward/drift trade-off."])


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("compare", help="Overlay reward-vs-drift curves of several PPO runs (PNG + HTML)")
    p.add_argument("runs", nargs="+", metavar="RUN_DIR", help="run directories of `alignlab ppo`")
    p.add_argument("--out", default="runs/compare", help="output folder (default runs/compare)")
    p.add_argument("--group", action="store_true", help="average runs with the same setting (e.g. seeds)")

    def handler(args: argparse.Namespace) -> int:
        report = compare_runs(args.runs, args.out, args.group)
        print(f"report: {report}")
        return 0

    p.set_defaults(func=handler)
