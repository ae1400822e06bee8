"""An HTML report per run (and for the demo): what happened, at a glance.

A report reads top-down: a headline table (method → the measure that matters, before → after)
when there is one, then one section per run or stage — a one-line verdict, a small table of only
its own metrics, its plots beside the table, notes folded away. The file is self-contained (PNGs
inlined) and opens anywhere.
"""

from __future__ import annotations

import base64
import html
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from alignlab.runs import atomic_write_text, read_metrics

Rows = Sequence[Mapping[str, Any]]
METRIC_ORDER = (("gold",), ("accuracy", "pass@", "win_rate", "acc"), ("reward",), ("eval_",), ("loss",))

CSS = """
:root{--fg:#1f2328;--muted:#656d76;--line:#d0d7de;--soft:#f6f8fa;--up:#1a7f37;--down:#cf222e;--accent:#0969da}
*{box-sizing:border-box}
body{font:15px/1.45 system-ui,-apple-system,"Segoe UI",sans-serif;color:var(--fg);max-width:1240px;margin:0 auto;padding:24px 28px 60px}
h1{font-size:26px;margin:0 0 4px}h2{font-size:19px;margin:0 0 6px}h3{font-size:13px;margin:10px 0 4px;color:var(--muted);font-weight:600;text-transform:uppercase;letter-spacing:.03em}
.meta{color:var(--muted);font-size:13px;font-weight:normal}
header{border-bottom:1px solid var(--line);padding-bottom:10px;margin-bottom:18px}
nav{font-size:13px;margin-top:8px}nav a{margin-right:12px}
a{color:var(--accent);text-decoration:none}a:hover{text-decoration:underline}
section{border:1px solid var(--line);border-radius:8px;padding:14px 18px;margin:0 0 18px;background:#fff}
.verdict{font-size:16px;margin:2px 0 10px;padding:6px 10px;border-left:4px solid var(--accent);background:var(--soft)}
.body{display:flex;flex-wrap:wrap;gap:18px;align-items:flex-start}
.tables{flex:1 1 380px;min-width:0;display:flex;flex-wrap:wrap;gap:4px 32px;align-items:flex-start}
.tbl{max-width:100%}.wide .tables{flex-basis:100%}
.figs{flex:1.4 1 440px;min-width:0;display:grid;grid-template-columns:repeat(auto-fill,minmax(min(480px,100%),1fr));gap:10px}
.scroll{overflow:auto;max-height:460px}section.full .scroll{max-height:none}
table{border-collapse:collapse;font-size:13px;font-variant-numeric:tabular-nums;margin:0 0 6px}
td,th{border-bottom:1px solid #eaeef2;padding:3px 10px;text-align:left}
td.num,th.num{text-align:right;white-space:nowrap}
th{background:var(--soft);font-weight:600;position:sticky;top:0}
tr:hover td{background:#f3f8ff}
table.kv td:first-child{color:var(--muted)}
table.headline{font-size:15px;width:100%}table.headline td,table.headline th{padding:6px 12px}
.up{color:var(--up);font-weight:600}.down{color:var(--down);font-weight:600}.mid{color:#9a6700;font-weight:600}.muted{color:var(--muted)}
figure{margin:0}img{width:100%;height:auto;border:1px solid #eaeef2;border-radius:4px}
figcaption{font-size:12px;color:var(--muted);text-align:center}
details{margin-top:10px;font-size:14px}summary{cursor:pointer;color:var(--muted)}
details p{margin:6px 0}pre{background:var(--soft);padding:8px;overflow:auto;font-size:12px}
code{background:var(--soft);padding:1px 4px;border-radius:3px}
"""


@dataclass
class Section:
    """One run or stage: heading, one-line verdict, its own small tables, plots beside them, notes."""

    title: str = ""
    verdict: str = ""
    tables: Mapping[str, Rows] = field(default_factory=dict)
    cell_class: Callable[[str, Any], str] | None = None  # CSS class per table cell (see `html_table`)
    full_tables: bool = False  # tables at full height (the page's main table), not in a scroll box
    figures: Sequence[str | Path] = ()
    notes: Sequence[str] = ()
    meta: str = ""  # small text beside the title, e.g. "42 s"
    details: Mapping[str, str] = field(default_factory=dict)  # folded <pre> blocks, e.g. config.yaml


def fmt(v: Any, digits: int = 4) -> str:
    """A cell: floats to `digits` significant digits, None as an em dash."""
    if v is None or v == "":
        return "—"
    if isinstance(v, float):
        return f"{v:.{digits}g}"
    return str(v)


def _is_num(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def columns(rows: Rows) -> list[str]:
    """Column names in first-seen order over all rows."""
    cols: list[str] = []
    for r in rows:
        cols += [c for c in r if c not in cols]
    return cols


def html_table(rows: Rows, cls: str = "", cell_class: Callable[[str, Any], str] | None = None) -> str:
    """An HTML table of dict rows (numbers to 4 significant digits). A single wide row is shown
    as a two-column metric | value table, which fits beside a plot. `cell_class(column, value)`
    may name a CSS class for a cell (e.g. 'up' / 'down' to colour a verdict)."""
    if not rows:
        return "<p class='meta'><i>no rows</i></p>"
    if len(rows) == 1 and len(rows[0]) > 3:  # the row's method (if any) heads the value column
        name = str(rows[0].get("method", "value"))
        rows, cls = [{"metric": k, name: v} for k, v in rows[0].items() if k != "method"], (cls + " kv").strip()
    cols = columns(rows)
    numeric = {c for c in cols if all(_is_num(r.get(c)) or r.get(c) in (None, "") for r in rows)}

    def cell(tag: str, c: str, text: str, extra: str = "") -> str:
        classes = " ".join(x for x in ("num" if c in numeric else "", extra) if x)
        return f"<{tag} class='{classes}'>{text}</{tag}>" if classes else f"<{tag}>{text}</{tag}>"

    def td(c: str, v: Any) -> str:
        return cell("td", c, html.escape(fmt(v)), cell_class(c, v) if cell_class else "")

    head = "".join(cell("th", c, html.escape(str(c))) for c in cols)
    body = "".join("<tr>" + "".join(td(c, r.get(c)) for c in cols) + "</tr>" for r in rows)
    klass = f" class='{cls}'" if cls else ""
    return f"<div class='scroll'><table{klass}><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table></div>"


def headline_table(rows: Rows) -> str:
    """Method → measure, before → after, with the change coloured by whether it helped.

    Row keys: method, measure, before, after; optional stage, note, better ('higher' | 'lower')."""
    head = ("<tr><th>method</th><th>measure</th><th class='num'>before</th><th class='num'>after</th>"
            "<th class='num'>change</th><th>note</th></tr>")
    body = []
    for r in rows:
        before, after = r.get("before"), r.get("after")
        change = ""
        if isinstance(before, (int, float)) and isinstance(after, (int, float)):
            d = after - before
            good = d > 0 if r.get("better", "higher") == "higher" else d < 0
            cls = "up" if good and d else "down" if d else ""
            change = f"<span class='{cls}'>{'▲' if d > 0 else '▼' if d < 0 else ''} {d:+.3g}</span>"
        method = html.escape(str(r.get("method", "")))
        if r.get("stage"):
            method = f"<a href='#{html.escape(str(r['stage']))}'>{method}</a>"
        body.append(f"<tr><td>{method}</td><td>{html.escape(str(r.get('measure', '')))}</td>"
                    f"<td class='num'>{html.escape(fmt(before, 3))}</td>"
                    f"<td class='num'><b>{html.escape(fmt(after, 3))}</b></td>"
                    f"<td class='num'>{change}</td><td class='meta'>{html.escape(str(r.get('note', '')))}</td></tr>")
    return f"<table class='headline'><thead>{head}</thead><tbody>{''.join(body)}</tbody></table>"


def _img(path: Path) -> str:
    data = base64.b64encode(Path(path).read_bytes()).decode()
    cap = html.escape(Path(path).stem.replace("_", " "))
    return f"<figure><img src='data:image/png;base64,{data}' alt='{cap}'><figcaption>{cap}</figcaption></figure>"


def _plots_below(tables: Mapping[str, Rows], n_figs: int) -> bool:
    """Plots beside the tables, or in rows of two below them? Below when a table is wide; beside for
    one plot; else below only when clearly shorter (a plot ≈ 430 px tall beside a table, ≈ 330 px in
    a row of two; a table row ≈ 24 px)."""
    if any(len(rows) > 1 and len(columns(rows)) > 5 for rows in tables.values()):
        return True
    if n_figs < 2:
        return False
    # a one-row table is shown as metric | value: a line per metric
    table_px = 24 * sum((len(r[0]) if len(r) == 1 and len(r[0]) > 3 else len(r)) + 2 for r in tables.values())
    return table_px + 330 * -(-n_figs // 2) < 0.75 * max(table_px, 430 * n_figs)


def render_section(s: Section, anchor: str = "") -> str:
    """One <section>: title + meta, verdict, tables beside figures, folded notes/details."""
    ident = f" id='{html.escape(anchor)}'" if anchor else ""
    parts = []
    if s.title:
        meta = f" <span class='meta'>{html.escape(s.meta)}</span>" if s.meta else ""
        parts.append(f"<h2>{html.escape(s.title)}{meta}</h2>")
    if s.verdict:
        parts.append(f"<p class='verdict'>{html.escape(s.verdict)}</p>")
    tables = "".join("<div class='tbl'>" + (f"<h3>{html.escape(name)}</h3>" if name.strip() else "")
                     + html_table(rows, cell_class=s.cell_class) + "</div>" for name, rows in s.tables.items() if rows)
    shown = [Path(f) for f in s.figures if Path(f).exists()]
    figs = "".join(_img(f) for f in shown)
    if tables or figs:
        wide = _plots_below(s.tables, len(shown))
        parts.append(f"<div class='body{' wide' if wide else ''}'>" + (f"<div class='tables'>{tables}</div>" if tables else "")
                     + (f"<div class='figs'>{figs}</div>" if figs else "") + "</div>")
    if s.notes:
        notes = "".join(f"<p>{html.escape(n)}</p>" for n in s.notes)
        parts.append(f"<details><summary>Notes ({len(s.notes)})</summary>{notes}</details>")
    for name, text in s.details.items():
        parts.append(f"<details><summary>{html.escape(name)}</summary><pre>{html.escape(text)}</pre></details>")
    klass = " class='full'" if s.full_tables else ""
    return f"<section{ident}{klass}>{''.join(parts)}</section>"


def render_page(title: str, sections: Sequence[Section], headline: Rows = (), subtitle: str = "",
                anchors: Sequence[str] = ()) -> str:
    """The whole document: header (with a contents line when sections are anchored), headline table,
    sections."""
    anchors = list(anchors) + [""] * (len(sections) - len(anchors))
    nav = "".join(f"<a href='#{html.escape(a)}'>{html.escape(s.title)}</a>" for s, a in zip(sections, anchors) if a)
    head = (f"<header><h1>{html.escape(title)}</h1>"
            + (f"<div class='meta'>{html.escape(subtitle)}</div>" if subtitle else "")
            + (f"<nav>{nav}</nav>" if nav else "") + "</header>")
    top = f"<section><h2>Headline</h2>{headline_table(headline)}</section>" if headline else ""
    body = "".join(render_section(s, a) for s, a in zip(sections, anchors))
    return (f"<!doctype html><html lang='en'><head><meta charset='utf-8'>"
            f"<meta name='viewport' content='width=device-width,initial-scale=1'><title>{html.escape(title)}</title>"
            f"<style>{CSS}</style></head><body>{head}{top}{body}</body></html>")


def auto_verdict(records: Sequence[Mapping[str, Any]], max_evals: int = 3) -> str:
    """A one-line summary of metrics.jsonl: steps, loss first → last, the last evaluation's numbers."""
    steps = [r["step"] for r in records if isinstance(r.get("step"), int)]
    losses = [r["loss"] for r in records if isinstance(r.get("loss"), (int, float))]
    parts = []
    if steps and max(steps) > 0:
        parts.append(f"{max(steps)} steps")
    if len(losses) > 1:
        parts.append(f"loss {losses[0]:.3g} → {losses[-1]:.3g}")
    elif losses:
        parts.append(f"loss {losses[-1]:.3g}")
    evals = [r for r in records if any(k.startswith("eval_") for k in r)]
    if evals:
        last = {k: v for k, v in evals[-1].items() if k.startswith("eval_") and _is_num(v)}
        best = sorted(last, key=lambda k: (metric_rank(k), list(last).index(k)))[:max_evals]
        parts.append("held-out " + ", ".join(f"{k[5:]} {last[k]:.3g}" for k in best))
    return "; ".join(p for p in parts if p) + ("." if parts else "")


def metric_rank(key: str) -> int:
    """How much a metric says about a run, for picking a few: gold-reward measures first, then
    accuracies / pass@k / win rates, rewards, other evaluations, the loss, everything else."""
    k = key.lower()
    return next((rank for rank, words in enumerate(METRIC_ORDER) if any(w in k for w in words)), len(METRIC_ORDER))


def write_report(
    run_dir: str | Path,
    title: str,
    notes: Sequence[str] = (),
    figures: Sequence[str | Path] = (),
    tables: Mapping[str, Rows] | None = None,
    curve_keys: Sequence[str] = ("loss",),
    verdict: str | None = None,
    sections: Sequence[Section] = (),
    headline: Rows = (),
    anchors: Sequence[str] = (),
    subtitle: str = "",
) -> Path:
    """Write RUN/report.html; curves of `curve_keys` are drawn from RUN/metrics.jsonl automatically.

    The run's own section shows `verdict` (default: `auto_verdict` of metrics.jsonl), `tables`,
    the figures and the notes (folded); `sections` follow it (e.g. the demo's stages) and
    `headline` rows open the page; `subtitle` goes under the title, before the folder and time."""
    from alignlab.plots import metric_curves

    run_dir = Path(run_dir)
    records = read_metrics(run_dir / "metrics.jsonl")
    figs = [Path(f) for f in figures]
    auto = metric_curves(records, list(curve_keys), run_dir / "loss_curve.png", title=f"{title}: training curves")
    if auto is not None:
        figs.insert(0, auto)
    cfg = run_dir / "config.yaml"
    main = Section(verdict=auto_verdict(records) if verdict is None else verdict, tables=dict(tables or {}),
                   figures=figs, notes=list(notes), details={"config.yaml": cfg.read_text()} if cfg.exists() else {})
    has_main = bool(main.verdict or main.tables or figs or main.notes or main.details)
    subtitle = " · ".join(p for p in (subtitle, str(run_dir), f"written {time.strftime('%Y-%m-%d %H:%M')}") if p)
    doc = render_page(title, ([main] if has_main else []) + list(sections), headline, subtitle,
                      ([""] if has_main else []) + list(anchors))
    out = run_dir / "report.html"
    atomic_write_text(out, doc)
    return out
