"""`alignlab runs [DIR]`: an index of every run under a folder, as one HTML page.

Each run folder (one holding config.yaml, metrics.jsonl or report.html) becomes a row: recipe,
model, status, steps, a few key metrics and a link to its report. A compare view overlays the
chosen runs' curves (any metric logged per step) with a small inline script; the data is
embedded, so the page works from a file:// URL. `serve=true` serves the folder on localhost and
rebuilds the index on every visit.

Status: running (RUN/.lock names a live process on this host — the lock file stays behind after
a run, so only a live pid counts — or metrics.jsonl changed in the last two minutes and there is
no report yet), finished (final/ exists, or report.html with no checkpoint newer than it),
resumable (complete checkpoints, no final model; RUN/command.txt says how), failed (none of these).
"""

from __future__ import annotations

import argparse
import html
import json
import os
import re
import socket
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from alignlab.config import bounded

Status = Literal["running", "finished", "resumable", "failed"]
SKIP_DIRS = {"checkpoints", "final", "attempts", "cache", "__pycache__", "node_modules"}
RUN_FILES = ("config.yaml", "metrics.jsonl", "report.html")
NOT_METRICS = {"step", "epoch", "iteration", "round", "time", "lr", "final", "event", "grad_norm"}
RECENT_S = 120.0  # metrics written this recently, no lock and no report: still running
# distinctive top-level config keys of each recipe (the first match wins)
SIGNATURES: list[tuple[str, frozenset[str]]] = [
    ("akd", frozenset({"student", "teacher"})), ("ppo", frozenset({"ppo", "prompts"})),
    ("psle", frozenset({"principle"})), ("prefs", frozenset({"preference", "pairs"})),
    ("rm", frozenset({"score_penalty"})), ("steer", frozenset({"coefficients"})),
    ("fv", frozenset({"template", "n_shots"})), ("sea", frozenset({"k_pos"})), ("embed", frozenset({"encoder"})),
    ("erm", frozenset({"embeddings", "aggregations"})), ("sft", frozenset({"model", "train", "data", "max_length"})),
]


@dataclass
class RunsConfig:
    """Index the runs under a folder: writes DIR/index.html (recipe, model, status, key metrics,
    links to each report, an overlay of chosen runs' curves); serve=true serves it on localhost."""

    dir: str = "runs"
    serve: bool = False
    port: int = bounded(8000, ge=0, le=65535)
    host: str = "127.0.0.1"
    max_depth: int = bounded(6, ge=1)  # how deep to look for run folders under dir
    max_points: int = bounded(400, ge=2)  # points per curve embedded in the page


@dataclass
class RunInfo:
    """One run folder as the index shows it."""

    path: Path
    name: str  # path relative to the indexed folder
    recipe: str
    model: str
    status: Status
    status_note: str = ""
    steps: int | None = None
    updated: float = 0.0
    metrics: dict[str, Any] = field(default_factory=dict)
    curves: dict[str, list[list[float]]] = field(default_factory=dict)
    report: Path | None = None


# --- reading one run folder ---------------------------------------------------------------
def find_runs(root: Path, max_depth: int = 6) -> list[Path]:
    """Run folders under `root` (root itself included), sorted by path; model, checkpoint and
    cache folders are not searched."""
    found = []

    def walk(d: Path, depth: int) -> None:
        if any((d / f).is_file() for f in RUN_FILES):
            found.append(d)
        if depth >= max_depth:
            return
        try:
            subs = sorted(p for p in d.iterdir() if p.is_dir() and not p.name.startswith(".") and p.name not in SKIP_DIRS)
        except OSError:
            return
        for p in subs:
            walk(p, depth + 1)

    walk(root, 0)
    return found


def _read_config(run: Path) -> dict[str, Any]:
    import yaml

    try:
        cfg = yaml.safe_load((run / "config.yaml").read_text()) if (run / "config.yaml").is_file() else None
    except (OSError, yaml.YAMLError):
        return {}
    return cfg if isinstance(cfg, dict) else {}


def recipe_of(run: Path, cfg: dict[str, Any]) -> str:
    """The recipe that made a run: the command in RUN/command.txt, the default folder name
    `<recipe>-<time>`, the config's distinctive keys, else the report's title."""
    cmd = run / "command.txt"
    m = re.search(r"(?:^|[\s/])alignlab\s+([a-z_]+)", cmd.read_text(errors="replace")) if cmd.is_file() else None
    m = m or re.match(r"^([a-z_]+)-\d{8}-\d{6}$", run.name)
    if m:
        return _detail(m.group(1), cfg)
    keys = set(cfg)
    for name, needed in SIGNATURES:
        if needed <= keys:
            return _detail(name, cfg)
    report = run / "report.html"
    if report.is_file():
        t = re.search(r"<title>(.*?)</title>", report.read_text(errors="replace")[:4000], re.S)
        if t:
            return html.unescape(t.group(1)).strip()
    return "?"


def _detail(recipe: str, cfg: dict[str, Any]) -> str:
    """'prefs (cal_dpo)', 'ppo (Elastic Reset n=36 β=0.05)', 'sea (fit)'."""
    if recipe == "prefs" and isinstance(cfg.get("preference"), dict):
        return f"prefs ({cfg['preference'].get('loss', '?')})"
    if recipe == "ppo":
        from alignlab.compare import label_of_config

        return f"ppo ({label_of_config(cfg, 'PPO')})"
    if recipe in ("sea", "erm") and cfg.get("mode"):
        return f"{recipe} ({cfg['mode']})"
    return recipe


def model_of(cfg: dict[str, Any]) -> str:
    """The model a run trained or used: model.name_or_path, student.name_or_path, or model."""
    for key in ("model", "student"):
        v = cfg.get(key)
        if isinstance(v, dict) and v.get("name_or_path"):
            return str(v["name_or_path"])
        if isinstance(v, str) and v:
            return v
    return ""


def lock_holder(lock: Path) -> tuple[int, str] | None:
    """(pid, host) written in RUN/.lock ('PID HOST TIME'; host '' when absent), or None."""
    try:
        parts = lock.read_text()[:300].split()
    except OSError:
        return None
    if not parts or not parts[0].isdigit():
        return None
    return int(parts[0]), parts[1] if len(parts) > 1 else ""


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def status_of(run: Path, now: float | None = None) -> tuple[Status, str]:
    """(status, a short note) of a run folder; see the module docstring for the rules."""
    from alignlab.runs import RunDir

    now = time.time() if now is None else now
    report, metrics = run / "report.html", run / "metrics.jsonl"
    holder = lock_holder(run / ".lock")
    if holder is not None and holder[1] in ("", socket.gethostname()) and _alive(holder[0]):
        return "running", f"pid {holder[0]}"
    checkpoints = RunDir(run, is_main=False).checkpoints()
    if (run / "final").is_dir():
        return "finished", "final model"
    if report.is_file() and not any(c.stat().st_mtime > report.stat().st_mtime for c in checkpoints):
        return "finished", "report written"
    if metrics.is_file() and now - metrics.stat().st_mtime < RECENT_S:
        where = f" (on {holder[1]})" if holder is not None and holder[1] else ""
        return "running", f"metrics updated {now - metrics.stat().st_mtime:.0f}s ago{where}"
    if checkpoints:
        cmd = run / "command.txt"
        how = f"; to resume: {cmd.read_text().strip()}" if cmd.is_file() else ""
        return "resumable", f"{len(checkpoints)} checkpoint(s), last {checkpoints[-1].name}{how}"
    return "failed", "no report, checkpoint or final model"


def key_metrics(records: list[dict[str, Any]], n: int = 4) -> dict[str, Any]:
    """A few headline numbers: the latest value of each scalar, evaluations first, then loss."""
    last: dict[str, Any] = {}
    for r in records:
        for k, v in r.items():
            if isinstance(v, (int, float)) and not isinstance(v, bool) and k not in NOT_METRICS \
                    and not k.startswith("time_"):
                last[k] = v

    from alignlab.report import metric_rank

    order = list(last)
    return {k: last[k] for k in sorted(last, key=lambda k: (metric_rank(k), order.index(k)))[:n]}


def curves_of(records: list[dict[str, Any]], max_points: int = 400) -> dict[str, list[list[float]]]:
    """{metric: [[x, y], ...]} for every metric logged at two or more steps (x = step, or iteration
    when there is no step), thinned to at most `max_points` points."""
    out: dict[str, list[list[float]]] = {}
    for r in records:
        x = r.get("step", r.get("iteration"))
        if not isinstance(x, (int, float)):
            continue
        for k, v in r.items():
            if isinstance(v, (int, float)) and not isinstance(v, bool) and k not in NOT_METRICS \
                    and not k.startswith("time_"):
                out.setdefault(k, []).append([x, v])
    thinned = {}
    for k, pts in out.items():
        if len(pts) >= 2:
            stride = -(-len(pts) // max_points)
            thinned[k] = pts[::stride] if pts[-1] in pts[::stride] else pts[::stride] + [pts[-1]]
    return thinned


def read_run(run: Path, root: Path, max_points: int = 400) -> RunInfo:
    """Everything the index shows about one run folder."""
    from alignlab.runs import read_metrics

    cfg = _read_config(run)
    records = read_metrics(run / "metrics.jsonl")
    status, note = status_of(run)
    steps = [r["step"] for r in records if isinstance(r.get("step"), int)]
    times = [p.stat().st_mtime for p in (run / f for f in RUN_FILES) if p.exists()]
    report = run / "report.html"
    name = str(run.relative_to(root)) if run != root else root.name
    return RunInfo(run, name, recipe_of(run, cfg), model_of(cfg), status, note, max(steps) if steps else None,
                   max(times) if times else 0.0, key_metrics(records), curves_of(records, max_points),
                   report if report.is_file() else None)


# --- the page ----------------------------------------------------------------------------
PAGE_CSS = """
:root{--fg:#1f2328;--muted:#656d76;--line:#d0d7de;--soft:#f6f8fa;--accent:#0969da}
*{box-sizing:border-box}
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",sans-serif;color:var(--fg);max-width:1400px;margin:0 auto;padding:20px 24px 60px}
h1{font-size:24px;margin:0}h2{font-size:17px;margin:22px 0 8px}.meta{color:var(--muted);font-size:13px}
a{color:var(--accent);text-decoration:none}a:hover{text-decoration:underline}
.bar{display:flex;gap:12px;align-items:center;flex-wrap:wrap;margin:12px 0}
input[type=search]{padding:5px 8px;border:1px solid var(--line);border-radius:6px;min-width:260px}
select,button{padding:4px 8px;border:1px solid var(--line);border-radius:6px;background:#fff}
.scroll{overflow:auto;max-height:62vh;border:1px solid var(--line);border-radius:8px}
table{border-collapse:collapse;width:100%;font-variant-numeric:tabular-nums}
td,th{padding:5px 10px;border-bottom:1px solid #eaeef2;text-align:left;vertical-align:top}
th{background:var(--soft);position:sticky;top:0;font-weight:600;z-index:1}
td.num{text-align:right;white-space:nowrap}tr:hover td{background:#f3f8ff}
.name{font-family:ui-monospace,SFMono-Regular,Menlo,monospace;font-size:13px}
.badge{display:inline-block;padding:1px 8px;border-radius:10px;font-size:12px;font-weight:600}
.finished{background:#dafbe1;color:#1a7f37}.running{background:#ddf4ff;color:#0969da}
.resumable{background:#fff8c5;color:#9a6700}.failed{background:#ffebe9;color:#cf222e}
.metrics span{display:inline-block;margin-right:10px;white-space:nowrap}.metrics b{font-weight:600}
#chart{border:1px solid var(--line);border-radius:8px;background:#fff;width:100%;height:auto}
#legend span{display:inline-block;margin-right:14px;font-size:13px}#legend i{display:inline-block;width:14px;height:3px;margin-right:5px;vertical-align:middle}
"""

PAGE_JS = """
const DATA = JSON.parse(document.getElementById('runs-data').textContent);
const COLORS = ['#0969da','#cf222e','#1a7f37','#8250df','#bf8700','#0a7c86','#e16f24','#6e7781','#d63384','#2da44e'];
const boxes = () => Array.from(document.querySelectorAll('input.pick'));
function chosen() { return boxes().filter(b => b.checked).map(b => DATA[+b.dataset.i]); }
function metricOptions() {
  const sel = document.getElementById('metric'), keep = sel.value, keys = {};
  chosen().forEach(r => Object.keys(r.curves).forEach(k => keys[k] = (keys[k] || 0) + 1));
  const names = Object.keys(keys).sort((a, b) => keys[b] - keys[a] || a.localeCompare(b));
  sel.innerHTML = '';
  names.forEach(k => { const o = document.createElement('option'); o.value = k; o.textContent = k + ' (' + keys[k] + ')'; sel.appendChild(o); });
  sel.value = names.includes(keep) ? keep : (names.includes('loss') ? 'loss' : (names[0] || ''));
}
function ticks(lo, hi, n) {
  if (!(hi > lo)) { return [lo]; }
  const step = Math.pow(10, Math.floor(Math.log10((hi - lo) / n))), cands = [1, 2, 5, 10].map(m => m * step);
  const s = cands.find(c => (hi - lo) / c <= n) || cands[cands.length - 1], out = [];
  for (let v = Math.ceil(lo / s) * s; v <= hi + s * 1e-9; v += s) { out.push(+v.toPrecision(12)); }
  return out;
}
function fmt(v) { return Math.abs(v) >= 1e4 || (v !== 0 && Math.abs(v) < 1e-3) ? v.toExponential(1) : +v.toPrecision(4) + ''; }
function draw() {
  const svg = document.getElementById('chart'), key = document.getElementById('metric').value, NS = 'http://www.w3.org/2000/svg';
  const W = 900, H = 360, L = 64, R = 16, T = 14, B = 40;
  svg.innerHTML = '';
  const series = chosen().filter(r => r.curves[key]).map(r => ({name: r.name, pts: r.curves[key], color: COLORS[r.i % COLORS.length]}));
  const el = (tag, attrs, text) => { const e = document.createElementNS(NS, tag); Object.entries(attrs).forEach(([a, v]) => e.setAttribute(a, v)); if (text !== undefined) { e.textContent = text; } svg.appendChild(e); return e; };
  const legend = document.getElementById('legend');
  legend.innerHTML = '';
  if (!series.length) { el('text', {x: W / 2, y: H / 2, 'text-anchor': 'middle', fill: '#656d76'}, 'tick runs in the table to overlay their curves'); return; }
  const logBox = document.getElementById('logy');
  logBox.disabled = !series.every(s => s.pts.every(p => p[1] > 0));
  const ty = logBox.checked && !logBox.disabled ? Math.log10 : (y => y);
  series.forEach(s => { s.pts = s.pts.map(p => [p[0], ty(p[1])]); });
  const xs = series.flatMap(s => s.pts.map(p => p[0])), ys = series.flatMap(s => s.pts.map(p => p[1]));
  let [x0, x1, y0, y1] = [Math.min(...xs), Math.max(...xs), Math.min(...ys), Math.max(...ys)];
  if (x1 === x0) { x1 = x0 + 1; }
  if (y1 === y0) { y0 -= 0.5; y1 += 0.5; }
  const pad = (y1 - y0) * 0.05; y0 -= pad; y1 += pad;
  const sx = x => L + (x - x0) / (x1 - x0) * (W - L - R), sy = y => H - B - (y - y0) / (y1 - y0) * (H - T - B);
  ticks(y0, y1, 6).forEach(v => { el('line', {x1: L, x2: W - R, y1: sy(v), y2: sy(v), stroke: '#eaeef2'}); el('text', {x: L - 6, y: sy(v) + 4, 'text-anchor': 'end', 'font-size': 11, fill: '#656d76'}, fmt(v)); });
  ticks(x0, x1, 8).forEach(v => { el('line', {x1: sx(v), x2: sx(v), y1: T, y2: H - B, stroke: '#f3f4f6'}); el('text', {x: sx(v), y: H - B + 16, 'text-anchor': 'middle', 'font-size': 11, fill: '#656d76'}, fmt(v)); });
  el('rect', {x: L, y: T, width: W - L - R, height: H - T - B, fill: 'none', stroke: '#d0d7de'});
  el('text', {x: (L + W - R) / 2, y: H - 6, 'text-anchor': 'middle', 'font-size': 12, fill: '#1f2328'}, 'step');
  el('text', {x: 14, y: (T + H - B) / 2, 'text-anchor': 'middle', 'font-size': 12, fill: '#1f2328', transform: 'rotate(-90 14 ' + (T + H - B) / 2 + ')'},
    ty === Math.log10 ? 'log10 ' + key : key);
  series.forEach(s => {
    el('polyline', {points: s.pts.map(p => sx(p[0]).toFixed(1) + ',' + sy(p[1]).toFixed(1)).join(' '), fill: 'none', stroke: s.color, 'stroke-width': 2, class: 'curve'});
    if (s.pts.length <= 30) { s.pts.forEach(p => el('circle', {cx: sx(p[0]), cy: sy(p[1]), r: 2.5, fill: s.color})); }
    const item = document.createElement('span'), sw = document.createElement('i');
    sw.style.background = s.color; item.appendChild(sw); item.appendChild(document.createTextNode(s.name)); legend.appendChild(item);
  });
}
function filterRows() {
  const q = document.getElementById('filter').value.toLowerCase();
  document.querySelectorAll('#runs tbody tr').forEach(tr => { tr.style.display = tr.textContent.toLowerCase().includes(q) ? '' : 'none'; });
}
boxes().forEach(b => b.addEventListener('change', () => { metricOptions(); draw(); }));
document.getElementById('metric').addEventListener('change', draw);
document.getElementById('logy').addEventListener('change', draw);
document.getElementById('filter').addEventListener('input', filterRows);
document.getElementById('none').addEventListener('click', () => { boxes().forEach(b => b.checked = false); metricOptions(); draw(); });
metricOptions(); draw();
"""


def _fmt(v: Any) -> str:
    return f"{v:.4g}" if isinstance(v, float) else str(v)


def default_picks(runs: list[RunInfo], n: int = 6) -> set[int]:
    """Runs ticked when the page opens: up to `n` with a loss curve and the same recipe as the
    newest such run (curves on one scale)."""
    with_loss = sorted((i for i, r in enumerate(runs) if "loss" in r.curves), key=lambda i: -runs[i].updated)
    if not with_loss:
        return set()
    kind = runs[with_loss[0]].recipe.split(" ")[0]
    return {i for i in with_loss[:n] if runs[i].recipe.split(" ")[0] == kind}


def short_model(model: str, root: Path) -> str:
    """A model as the table shows it: relative to the indexed folder when inside it, else the last
    part of a long path (the full name is in the cell's tooltip)."""
    p = Path(model)
    if not p.is_absolute():
        return model
    try:
        return str(p.resolve().relative_to(root.resolve()))
    except ValueError:
        return "…/" + p.name if len(p.parts) > 3 else model


def _row(i: int, r: RunInfo, base: Path, root: Path, checked: bool) -> str:
    e = html.escape
    link = e(os.path.relpath(r.report, base)) if r.report else ""
    name = f"<a href='{link}'>{e(r.name)}</a>" if link else e(r.name)
    metrics = "".join(f"<span>{e(k)} <b>{e(_fmt(v))}</b></span>" for k, v in r.metrics.items())
    when = time.strftime("%Y-%m-%d %H:%M", time.localtime(r.updated)) if r.updated else ""
    box = (f"<input type='checkbox' class='pick' data-i='{i}'{' checked' if checked else ''} "
           f"title='overlay this run in the compare view'>") if r.curves else ""
    return (f"<tr><td>{box}</td><td class='name'>{name}</td><td>{e(r.recipe)}</td><td title='{e(r.model)}'>{e(short_model(r.model, root))}</td>"
            f"<td><span class='badge {r.status}' title='{e(r.status_note)}'>{r.status}</span></td>"
            f"<td class='num'>{'' if r.steps is None else r.steps}</td><td class='metrics'>{metrics}</td>"
            f"<td class='num meta'>{when}</td></tr>")


def render_index(runs: list[RunInfo], root: Path, base: Path | None = None) -> str:
    """The index page; links are relative to `base` (the folder index.html is written to)."""
    base = base or root
    counts = {s: sum(r.status == s for r in runs) for s in ("finished", "running", "resumable", "failed")}
    summary = " · ".join(f"{n} {s}" for s, n in counts.items() if n)
    picks = default_picks(runs)
    rows = "".join(_row(i, r, base, root, i in picks) for i, r in enumerate(runs))
    data = json.dumps([{"i": i, "name": r.name, "curves": r.curves} for i, r in enumerate(runs)])
    data = data.replace("</", "<\\/")
    e = html.escape
    return f"""<!doctype html><html lang='en'><head><meta charset='utf-8'>
<meta name='viewport' content='width=device-width,initial-scale=1'><title>alignlab runs: {e(str(root))}</title>
<style>{PAGE_CSS}</style></head><body>
<h1>Runs in <code>{e(str(root))}</code></h1>
<div class='meta'>{len(runs)} runs · {e(summary)} · indexed {time.strftime('%Y-%m-%d %H:%M')}</div>
<div class='bar'><input type='search' id='filter' placeholder='filter: recipe, model, status, name…'></div>
<div class='scroll'><table id='runs'><thead><tr><th></th><th>run (report)</th><th>recipe</th><th>model</th>
<th>status</th><th>steps</th><th>key metrics (latest)</th><th>updated</th></tr></thead><tbody>{rows}</tbody></table></div>
<h2>Compare curves</h2>
<div class='bar'><label>metric <select id='metric'></select></label>
<label><input type='checkbox' id='logy'> log scale</label><button id='none'>clear selection</button>
<span class='meta'>tick runs in the table to overlay them</span></div>
<svg id='chart' viewBox='0 0 900 360' role='img' aria-label='curves of the chosen runs'></svg>
<div id='legend'></div>
<script type='application/json' id='runs-data'>{data}</script>
<script>{PAGE_JS}</script>
</body></html>"""


def write_index(root: str | Path, out: str | Path | None = None, max_depth: int = 6,
                max_points: int = 400) -> tuple[Path, list[RunInfo]]:
    """Index the runs under `root`; writes OUT/index.html (default ROOT/index.html)."""
    from alignlab.errors import ConfigError
    from alignlab.runs import atomic_write_text

    root = Path(root)
    if not root.is_dir():
        raise ConfigError(f"dir: {root} is not a folder")
    base = Path(out) if out else root
    base.mkdir(parents=True, exist_ok=True)
    runs = [read_run(p, root, max_points) for p in find_runs(root, max_depth)]
    path = base / "index.html"
    atomic_write_text(path, render_index(runs, root, base))
    return path, runs


def make_server(cfg: RunsConfig, base: Path):
    """An HTTP server for `base` on cfg.host:cfg.port (port 0: any free one) that rebuilds the
    index whenever it is asked for; call `serve_forever()` on it."""
    import functools
    from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer

    class Handler(SimpleHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 (http.server's name)
            if self.path.split("?")[0] in ("/", "/index.html"):
                write_index(cfg.dir, base, cfg.max_depth, cfg.max_points)
            super().do_GET()

        def log_message(self, format: str, *args: Any) -> None:  # quiet: one line per request is noise
            pass

    return ThreadingHTTPServer((cfg.host, cfg.port), functools.partial(Handler, directory=str(base)))


def serve(cfg: RunsConfig, base: Path) -> None:
    """Serve `base` on localhost until Ctrl-C."""
    server = make_server(cfg, base)
    print(f"serving http://{cfg.host}:{server.server_address[1]}/ (Ctrl-C stops)", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()


def main(cfg: RunsConfig, out: str | None = None) -> int:
    """Write the index, print a table of the runs, optionally serve."""
    from alignlab.progress import print_table

    path, runs = write_index(cfg.dir, out, cfg.max_depth, cfg.max_points)
    if runs:
        print_table(f"runs in {cfg.dir}", [{"run": r.name, "recipe": r.recipe, "status": r.status,
                                           "steps": r.steps, **dict(list(r.metrics.items())[:2])} for r in runs])
    print(f"index: {path}")
    if cfg.serve:
        serve(cfg, path.parent)
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    """`alignlab runs [DIR] [key=value ...]`: a bare word is the folder (same as dir=DIR)."""
    from alignlab.recipe import add_config_parser

    p = add_config_parser(sub, "runs", "Index the runs under a folder as HTML (status, metrics, reports, curves)",
                          RunsConfig)
    p.add_argument("--config", "-c", help="YAML config file")
    p.add_argument("--out", help="folder to write index.html to (default: DIR)")
    p.add_argument("overrides", nargs="*", metavar="DIR | key=value",
                   help="the runs folder (default runs), then config overrides, e.g. serve=true port=8001")

    def handler(args: argparse.Namespace) -> int:
        from alignlab.config import load_config
        from alignlab.errors import ConfigError

        words = [w for w in args.overrides or [] if "=" not in w]
        if len(words) > 1:
            raise ConfigError(f"give one runs folder, got {words}")
        overrides = [w for w in args.overrides or [] if "=" in w] + [f"dir={w}" for w in words]
        return main(load_config(RunsConfig, args.config, overrides), args.out)

    p.set_defaults(func=handler, config_cls=RunsConfig)
