"""An HTML report per run: loss curves from metrics.jsonl, figures, tables, notes.

The report is one self-contained file (PNGs inlined) that opens anywhere.
"""

from __future__ import annotations

import base64
import html
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from alignlab.plots import metric_curves
from alignlab.runs import atomic_write_text, read_metrics

CSS = """body{font-family:system-ui,sans-serif;max-width:980px;margin:2em auto;color:#222}
table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:4px 8px;text-align:right}
th{background:#f3f3f3}img{max-width:100%;border:1px solid #eee;margin:.5em 0}code{background:#f6f6f6}"""


def html_table(rows: Sequence[Mapping[str, Any]]) -> str:
    """An HTML table of dict rows (numbers to 4 significant digits)."""
    if not rows:
        return "<p><i>no rows</i></p>"
    cols = list(rows[0].keys())
    for r in rows[1:]:
        cols += [c for c in r if c not in cols]

    def cell(v: Any) -> str:
        return html.escape(f"{v:.4g}" if isinstance(v, float) else str(v))

    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in cols)
    body = "".join("<tr>" + "".join(f"<td>{cell(r.get(c, ''))}</td>" for c in cols) + "</tr>" for r in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def _img(path: Path) -> str:
    data = base64.b64encode(Path(path).read_bytes()).decode()
    return f'<figure><img src="data:image/png;base64,{data}"><figcaption>{html.escape(Path(path).stem)}</figcaption></figure>'


def write_report(
    run_dir: str | Path,
    title: str,
    notes: Sequence[str] = (),
    figures: Sequence[str | Path] = (),
    tables: Mapping[str, Sequence[Mapping[str, Any]]] | None = None,
    curve_keys: Sequence[str] = ("loss",),
) -> Path:
    """Write RUN/report.html; loss curves are drawn from RUN/metrics.jsonl automatically."""
    run_dir = Path(run_dir)
    records = read_metrics(run_dir / "metrics.jsonl")
    figs = [Path(f) for f in figures]
    auto = metric_curves(records, list(curve_keys), run_dir / "loss_curve.png", title=f"{title}: training curves")
    if auto is not None:
        figs.insert(0, auto)
    parts = [f"<h1>{html.escape(title)}</h1>", f"<p>Run directory: <code>{html.escape(str(run_dir))}</code></p>"]
    parts += [f"<p>{html.escape(n)}</p>" for n in notes]
    for name, rows in (tables or {}).items():
        parts += [f"<h2>{html.escape(name)}</h2>", html_table(rows)]
    parts += [_img(f) for f in figs if f.exists()]
    doc = f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title><style>{CSS}</style></head><body>{''.join(parts)}</body></html>"
    out = run_dir / "report.html"
    atomic_write_text(out, doc)
    return out
