"""What `alignlab claims` writes: DIR/claims.json (every number), DIR/CLAIMS.md (the table, the
rule, each row's per-seed numbers), DIR/report.html (the same, verdicts coloured, plots inlined:
one file to open in a browser) and DIR/plots/*.png (per-row intervals and curves)."""

from __future__ import annotations

import json
import math
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from alignlab.claims.runner import RowOutcome
from alignlab.claims.stats import LEVEL

INTERVAL = (f"{LEVEL:.0%} Student t interval over seeds: mean ± t(n−1, 0.975) · sd / √n "
            "(each seed an independent repeat: data draw, initialisation order, sampling)")
RULE = ("A claim is a set of tests; each is a quantity measured per seed (mostly a paired difference, "
        "method − baseline in the same seed) with the direction the paper claims. A test supports the claim "
        "when its 95 % interval lies wholly on the claimed side of 0, contradicts it when wholly on the other "
        "side, else is inconclusive. Verdict: reproduced = every test supports; partly = at least one does; "
        "not = none does; untestable here = a test has no interval (< 2 seeds), a seed failed, or the row "
        "found that the testbed cannot show the effect (its reason is given).")


def table_rows(outcomes: Sequence[RowOutcome]) -> list[dict[str, str]]:
    """paper | model | claim | our measurement | verdict (with its reason) — the printed and written table."""
    from alignlab.claims.registry import model_of

    return [{"paper": o.row.paper, "model": model_of(o.row.key), "claim": o.row.claim,
             "our measurement": o.measurement() or "—",
             "verdict": f"{o.verdict} ({o.reason})"} for o in outcomes]


def forest_plot(o: RowOutcome, path: Path) -> Path | None:
    """Each test's mean and 95 % interval, per-seed values as dots, 0 marked."""
    tests = [t for t in o.row.tests if t.key in o.intervals]
    if not tests:
        return None
    from alignlab.plots import plt, save_figure

    fig, ax = plt.subplots(figsize=(6.5, 0.8 + 0.7 * len(tests)), dpi=110)
    for i, t in enumerate(tests):
        iv = o.intervals[t.key]
        y = len(tests) - 1 - i
        if not math.isnan(iv.lo):
            ax.plot([iv.lo, iv.hi], [y, y], color="tab:blue", lw=2)
        ax.plot([iv.mean], [y], "o", color="tab:blue")
        ax.plot([r.numbers[t.key] for r in o.results], [y] * len(o.results), ".", color="grey", alpha=0.7)
        ax.annotate(f"{o.outcomes[t.key]} (claimed {'> 0' if t.direction == 'greater' else '< 0'})", (iv.mean, y),
                    xytext=(0, 8), textcoords="offset points", ha="center", fontsize=7)
    ax.axvline(0.0, color="grey", lw=0.8, ls="--")
    ax.set_yticks(range(len(tests)), [t.label for t in reversed(tests)], fontsize=8)
    ax.set_ylim(-0.6, len(tests) - 0.3)
    ax.set_title(f"{o.row.key}: {o.verdict} — 95 % intervals over {len(o.results)} seeds", fontsize=9)
    return save_figure(fig, path)


def curves_plot(o: RowOutcome, path: Path) -> Path | None:
    """The row's curves of every seed in one plot (e.g. reward vs drift)."""
    series = {name: xy for r in o.results for name, xy in r.curves.items()}
    if not series:
        return None
    from alignlab.plots import line_plot

    x, y = o.row.curve_axes
    return line_plot(series, path, title=f"{o.row.key}: per-seed curves", xlabel=x, ylabel=y, markers=True)


def _md_escape(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def settings_text(outcomes: Sequence[RowOutcome], facts: dict[str, Any]) -> str:
    """'full' / 'quick (…)', with what a partial or resumed run must say about its rows."""
    mode = "quick (a smoke test: too small to read as evidence)" if facts["quick"] else "full"
    if facts.get("partial"):
        mode += f"; PARTIAL: {len(outcomes)} row(s) done so far, the run goes on"
    if facts.get("reused"):
        mode += (f"; rows {', '.join(facts['reused'])} taken from the earlier run in this folder (not measured again; "
                 "their times and loads are that run's)")
    return mode


def source_line(src: dict[str, Any]) -> str:
    """One source run of a merge: its command, the rows taken from it (and those a later run
    replaced), its wall time and load."""
    replaced = f" (its {', '.join(src['replaced'])} taken from a later run)" if src.get("replaced") else ""
    return (f"`{src['command']}` — rows {', '.join(src['rows']) or 'none'}{replaced}; "
            f"{float(src['seconds'] or 0) / 60:.1f} min, load average {src['load_average_start']} → "
            f"{src['load_average_end']}")


def shown_keys(o: RowOutcome) -> list[str]:
    """The numbers a row's section shows: its tests', then its extra keys, those with an interval."""
    tests = [t.key for t in o.row.tests]
    return [k for k in tests + [k for k in o.row.extra_keys if k not in tests] if k in o.intervals]


def markdown(outcomes: Sequence[RowOutcome], facts: dict[str, Any], command: str, figures: dict[str, list[Path]],
             out: Path) -> str:
    """CLAIMS.md: how it was run, the rule, the table, then one section per row."""
    from alignlab.claims.registry import BUILT_IN, model_of

    mode = settings_text(outcomes, facts)
    marks = list(dict.fromkeys(model_of(o.row.key) for o in outcomes)) or [BUILT_IN]
    where = " and ".join("the built-in test world" if m == BUILT_IN else m for m in marks)
    lines = [f"# Seed papers' claims, re-measured on {where}", "",
             f"Command: `{command}`  ", f"Settings: {mode}; seeds {facts['seeds']}; "
             f"wall time {facts['seconds'] / 60:.1f} min; load average (1/5/15 min) at start {facts['load_average_start']}, "
             f"at end {facts['load_average_end']}; {facts['cpu_count']} CPUs, one torch thread; written "
             f"{time.strftime('%Y-%m-%d %H:%M')}.", ""]
    if facts.get("sources"):  # a merged report (`alignlab claims --merge`): where each row was measured
        lines += ["Merged from these runs (wall time = the rows' own times added up; each row re-judged from its "
                  "per-seed numbers):", ""]
        lines += [f"- {source_line(src)}" for src in facts["sources"]]
        lines.append("")
    lines += [f"Intervals: {INTERVAL}.", "", f"Verdict rule: {RULE}", "",
             "| paper | model | claim | our measurement (mean [95 % interval]) | verdict |", "|---|---|---|---|---|"]
    lines += [f"| {_md_escape(r['paper'])} | {_md_escape(r['model'])} | {_md_escape(r['claim'])} | "
              f"{_md_escape(r['our measurement'])} | {_md_escape(r['verdict'])} |" for r in table_rows(outcomes)]
    for o in outcomes:
        lines += ["", f"## {o.row.key} — {o.row.paper}", "", f"Claim: {o.row.claim}.  ",
                  f"Model: {model_of(o.row.key)}.  ", f"Setup: {o.row.setup}.  ",
                  f"Verdict: **{o.verdict}** ({o.reason}); {o.seconds / 60:.1f} min.  "]
        lines += [f"Reading: {o.summary}."] if o.summary else []
        lines.append("")
        keys = shown_keys(o)
        if keys:
            lines += ["| number | " + " | ".join(f"seed {s}" for s in o.seeds) + " | mean [95 % interval] |",
                      "|---|" + "---|" * (len(o.seeds) + 1)]
            for k in keys:
                vals = " | ".join(f"{r.numbers[k]:+.4f}" for r in o.results)
                lines.append(f"| {k} | {vals} | {o.intervals[k].text(4)} |")
        notes = [f"seed {s}: {r.note}" for s, r in zip(o.seeds, o.results) if r.note]
        lines += [""] + [f"- {n}" for n in notes] if notes else []
        lines += [""] + [f"![{p.stem}]({p.relative_to(out).as_posix()})" for p in figures.get(o.row.key, [])]
    return "\n".join(lines) + "\n"


VERDICT_CLASS = {"reproduced": "up", "partly": "mid", "not": "down", "untestable": "muted"}


def verdict_class(column: str, value: Any) -> str:
    """The CSS class of a table cell: verdicts coloured (reproduced green … not red), others plain."""
    if column != "verdict":
        return ""
    return next((c for word, c in VERDICT_CLASS.items() if str(value).startswith(word)), "")


def html_page(outcomes: Sequence[RowOutcome], facts: dict[str, Any], command: str,
              figures: dict[str, list[Path]]) -> str:
    """report.html: the claims table first (verdicts coloured), then a section per row with its
    per-seed numbers beside its plots; setup, rule and sources folded into notes."""
    from alignlab.claims.registry import model_of
    from alignlab.report import Section, render_page

    counts = {v: sum(o.verdict == v for o in outcomes) for v in ("reproduced", "partly", "not", "untestable here")}
    summary = ", ".join(f"{n} {v}" for v, n in counts.items() if n)
    top = Section(title="Claims", verdict=f"{len(outcomes)} claims: {summary}." + (
                      " Partial: the run is still going or was stopped." if facts.get("partial") else ""),
                  tables={" ": table_rows(outcomes)},
                  cell_class=verdict_class, full_tables=True,
                  notes=[f"Command: {command}", f"Settings: {settings_text(outcomes, facts)}; seeds {facts['seeds']}; wall time "
                         f"{facts['seconds'] / 60:.1f} min; load average at start {facts['load_average_start']}, at end "
                         f"{facts['load_average_end']}; {facts['cpu_count']} CPUs.", f"Intervals: {INTERVAL}.",
                         f"Verdict rule: {RULE}", *(f"Merged from: {source_line(x)}" for x in facts.get("sources") or [])])
    sections = [top]
    for o in outcomes:
        rows = [{"number": k, **{f"seed {s}": r.numbers[k] for s, r in zip(o.seeds, o.results)},
                 "mean [95 % interval]": o.intervals[k].text(4)} for k in shown_keys(o)]
        notes = [f"Claim: {o.row.claim}.", f"Setup: {o.row.setup}."] + ([f"Reading: {o.summary}."] if o.summary else [])
        notes += [f"seed {s}: {r.note}" for s, r in zip(o.seeds, o.results) if r.note]
        notes += [f"Error: {o.error}"] if o.error else []
        sections.append(Section(title=o.row.key, meta=f"{o.row.paper} · {model_of(o.row.key)} · {o.seconds / 60:.1f} min",
                                verdict=f"{o.verdict} ({o.reason}): {o.measurement() or '—'}",
                                tables={"per seed": rows}, figures=figures.get(o.row.key, []), notes=notes))
    anchors = ["claims"] + [o.row.key for o in outcomes]
    return render_page("alignlab claims — seed papers' headline claims", sections, anchors=anchors,
                       subtitle=f"{'quick' if facts['quick'] else 'full'}; written {time.strftime('%Y-%m-%d %H:%M')}")


def write_all(outcomes: Sequence[RowOutcome], facts: dict[str, Any], command: str, out: Path) -> dict[str, Path]:
    """Write the plots, claims.json and CLAIMS.md under `out`; returns their paths."""
    from alignlab.runs import atomic_write_text

    out.mkdir(parents=True, exist_ok=True)
    figures: dict[str, list[Path]] = {}
    for o in outcomes:
        figs = [forest_plot(o, out / "plots" / f"{o.row.key}_intervals.png"),
                curves_plot(o, out / "plots" / f"{o.row.key}_curves.png")]
        figures[o.row.key] = [f for f in figs if f is not None]
    data = {"command": command, **facts, "interval": INTERVAL, "verdict_rule": RULE,
            "rows": [o.as_dict() for o in outcomes]}
    json_path, md_path, html_path = out / "claims.json", out / "CLAIMS.md", out / "report.html"
    atomic_write_text(json_path, json.dumps(strict_json(data), indent=2, default=_json_default, allow_nan=False))
    atomic_write_text(md_path, markdown(outcomes, facts, command, figures, out))
    atomic_write_text(html_path, html_page(outcomes, facts, command, figures))
    return {"json": json_path, "markdown": md_path, "html": html_path}


def strict_json(v: Any) -> Any:
    """`v` with every non-finite float as None (JSON has no NaN; jq and browsers reject it)."""
    if isinstance(v, float):
        return v if math.isfinite(v) else None
    if isinstance(v, dict):
        return {k: strict_json(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [strict_json(x) for x in v]
    return v


def _json_default(v: Any) -> Any:
    if isinstance(v, Path):
        return str(v)
    if hasattr(v, "item"):
        return v.item()
    raise TypeError(f"not JSON-serialisable: {type(v).__name__}")
