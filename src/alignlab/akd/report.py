"""What an AKD run shows: one row per round, the headline numbers, report.html.

The functions take the run's records and the few settings they need (the ks of pass@k, the
number of curriculum buckets, notes), never the recipe's config.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from alignlab.runs import RunDir


def round_rows(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One compact row per round for the summary table and the report: pass rates on the proposed
    exercises (student, teacher), pairs, distillation examples, losses, held-out pass@k, exercises
    drawn per bucket (hardest first)."""
    names = {"round": "rd", "student_pass_rate": "stud", "teacher_pass_rate": "teach", "pairs": "pairs",
             "distill": "dist", "pref_loss": "pref", "distill_nll": "nll"}
    rows = []
    for r in records:
        if "round" not in r:
            continue
        row = {v: r[k] for k, v in names.items() if k in r}
        row.update({k.replace("eval_", ""): v for k, v in r.items() if k.startswith("eval_pass@")})
        row = {k: round(v, 2) if isinstance(v, float) else v for k, v in row.items()}
        drawn = [r[k] for k in sorted(r) if k.startswith("bucket") and k.endswith("_drawn")]
        if drawn:
            row["drawn"] = "/".join(str(int(d)) for d in drawn)
        rows.append(row)
    return rows


def summarize(records: list[dict[str, Any]], ks: Sequence[int], seconds: float) -> dict[str, Any]:
    """Headline numbers: held-out pass@k of the student before → after, the teacher's, pairs, time."""
    evals = [r for r in records if any(k.startswith("eval_pass@") for k in r)]
    rounds = [r for r in records if r.get("round", 0) > 0]
    out: dict[str, Any] = {"rounds": len(rounds), "pairs": int(sum(r.get("pairs", 0) for r in rounds)),
                           "distill": int(sum(r.get("distill", 0) for r in rounds)),
                           "steps": int(sum(r.get("steps", 0) for r in rounds)), "seconds": round(seconds, 1)}
    for k in ks:
        key = f"eval_pass@{k}"
        if evals and key in evals[0]:
            out[f"student_pass@{k}_before"], out[f"student_pass@{k}_after"] = evals[0][key], evals[-1][key]
        teach = [r[f"teacher_pass@{k}"] for r in records if f"teacher_pass@{k}" in r]
        if teach:
            out[f"teacher_pass@{k}"] = teach[0]
    return out


def write_akd_report(run_dir: RunDir, records: list[dict[str, Any]], ks: Sequence[int], n_buckets: int,
                     notes: list[str]) -> None:
    """report.html: held-out pass@k per round (teacher as reference), pass rates on the proposed
    exercises, exercises drawn per bucket (of `n_buckets`), losses, and the per-round table."""
    from alignlab.plots import line_plot
    from alignlab.report import write_report

    figs = []
    evals = [r for r in records if any(k.startswith("eval_pass@") for k in r)]
    teacher = next((r for r in records if any(k.startswith("teacher_pass@") for k in r)), {})
    series = {}
    for k in ks:
        pts = [(r["round"], r[f"eval_pass@{k}"]) for r in evals if f"eval_pass@{k}" in r]
        if pts:
            series[f"student pass@{k}"] = ([p[0] for p in pts], [p[1] for p in pts])
            if f"teacher_pass@{k}" in teacher:
                series[f"teacher pass@{k}"] = ([pts[0][0], pts[-1][0]], [teacher[f"teacher_pass@{k}"]] * 2)
    if series:
        figs.append(line_plot(series, run_dir.path / "pass_at_k.png", title="held-out pass@k per round",
                              xlabel="round", ylabel="pass@k", markers=True))
    rounds = [r for r in records if r.get("round", 0) > 0]
    rates = {}
    for key, name in (("student_pass_rate", "student"), ("teacher_pass_rate", "teacher")):
        pts = [(r["round"], r[key]) for r in rounds if key in r]
        if pts:
            rates[name] = ([p[0] for p in pts], [p[1] for p in pts])
    for b in range(n_buckets):
        pts = [(r["round"], r[f"bucket{b}_drawn"] / max(1, r["exercises"])) for r in rounds if f"bucket{b}_drawn" in r]
        if pts:
            rates[f"share drawn from bucket {b}"] = ([p[0] for p in pts], [p[1] for p in pts])
    if rates:
        figs.append(line_plot(rates, run_dir.path / "curriculum.png", xlabel="round", markers=True,
                              title="proposed exercises: pass rates and bucket shares (0 = hardest)"))
    write_report(run_dir.path, title="AKD: adversarial knowledge distillation for code", notes=notes, figures=figs,
                 tables={"Rounds": round_rows(records)}, curve_keys=("loss", "pref_loss", "distill_nll"))
