"""`alignlab runs`: every run folder with its recipe, model, status, key metrics and report link,
a compare view of curves; served on localhost; checked in headless Chromium when installed."""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

import pytest

from alignlab.errors import ConfigError
from alignlab.runs_index import RunsConfig, find_runs, make_server, read_run, status_of, write_index


def _run(root: Path, name: str, config: dict | None = None, steps: int = 3, report: bool = False,
         final: bool = False, checkpoint: bool = False, lock_pid: int | None = None) -> Path:
    d = root / name
    d.mkdir(parents=True)
    if config is not None:
        (d / "config.yaml").write_text(json.dumps(config))
    recs = [{"step": s, "loss": 1.0 / s, "eval_accuracy": 0.5 + s / 100, "time": 1.0} for s in range(1, steps + 1)]
    (d / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in recs))
    if checkpoint:
        ck = d / "checkpoints" / "step-0000002"
        ck.mkdir(parents=True)
        (ck / "COMPLETE").write_text("2")
    if report:
        (d / "report.html").write_text(f"<html><head><title>{name}</title></head></html>")
    if final:
        (d / "final").mkdir()
        (d / "final" / "config.json").write_text("{}")
    if lock_pid is not None:  # as alignlab.runs writes it: PID HOST TIME (left behind after the run)
        (d / ".lock").write_text(f"{lock_pid} {socket.gethostname()} 2025-01-01T12:00:00\n")
    old = time.time() - 3600  # written an hour ago: not 'running' by recency
    for p in d.rglob("*"):
        os.utime(p, (old, old))
    return d


def _dead_pid() -> int:
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    return p.pid


@pytest.fixture
def runs(tmp_path) -> Path:
    root = tmp_path / "runs"
    sft = {"model": {"name_or_path": "testbed:tiny"}, "train": {}, "data": "d.jsonl", "max_length": 64}
    _run(root, "sft-20250101-120000", sft, report=True, final=True, lock_pid=_dead_pid())
    _run(root, "prefs-run", {"model": {"name_or_path": "m"}, "preference": {"loss": "cal_dpo"}, "pairs": "all"},
         report=True)
    _run(root, "resumable", sft, checkpoint=True)
    _run(root, "crashed", sft)
    _run(root, "live", sft, lock_pid=os.getpid())
    stale = _run(root, "stale", sft, lock_pid=_dead_pid(), checkpoint=True)
    (stale / "command.txt").write_text("cd /work && alignlab sft -c sft.yaml --out runs/stale\n")
    _run(root, "group/akd-nested", {"student": {"name_or_path": "tiny"}, "teacher": {}}, report=True)
    (root / "group" / "akd-nested" / "final").mkdir()  # never searched for runs
    (root / "group" / "akd-nested" / "final" / "metrics.jsonl").write_text("")
    (root / "not-a-run").mkdir()
    return root


def test_finds_run_folders_but_not_inside_models(runs):
    names = [str(p.relative_to(runs)) for p in find_runs(runs)]
    assert names == ["crashed", "group/akd-nested", "live", "prefs-run", "resumable", "sft-20250101-120000", "stale"]


def test_status_recipe_model_and_metrics(runs):
    info = {p.name: read_run(p, runs) for p in find_runs(runs)}
    assert {k: v.status for k, v in info.items()} == {
        "crashed": "failed", "akd-nested": "finished", "live": "running", "prefs-run": "finished",
        "resumable": "resumable", "sft-20250101-120000": "finished", "stale": "resumable"}
    assert info["stale"].recipe == "sft" and info["stale"].status_note.endswith(
        "to resume: cd /work && alignlab sft -c sft.yaml --out runs/stale")
    assert info["sft-20250101-120000"].recipe == "sft" and info["prefs-run"].recipe == "prefs (cal_dpo)"
    assert info["akd-nested"].recipe == "akd" and info["akd-nested"].model == "tiny"
    assert info["crashed"].model == "testbed:tiny" and info["crashed"].steps == 3
    assert list(info["crashed"].metrics) == ["eval_accuracy", "loss"] and info["crashed"].metrics["loss"] == 1 / 3
    assert info["crashed"].curves["loss"] == [[1, 1.0], [2, 0.5], [3, 1 / 3]] and "time" not in info["crashed"].curves


def test_recent_metrics_without_lock_or_report_count_as_running(runs):
    d = runs / "crashed"
    assert status_of(d, now=(d / "metrics.jsonl").stat().st_mtime + 10)[0] == "running"
    assert status_of(d)[0] == "failed"


def test_index_links_resolve_and_embed_the_curves(runs, tmp_path):
    path, infos = write_index(runs)
    doc = path.read_text()
    for info in infos:
        assert info.name in doc
    links = re.findall(r"href='([^'#]+)'", doc)
    assert len(links) == 3 and all((path.parent / h).is_file() for h in links)
    data = json.loads(re.search(r"<script type='application/json' id='runs-data'>(.*?)</script>", doc, re.S)[1])
    assert [d["name"] for d in data] == [i.name for i in infos] and data[0]["curves"]["loss"][0] == [1, 1.0]
    # written elsewhere: links still point at the reports
    other, _ = write_index(runs, tmp_path / "elsewhere")
    assert all((other.parent / h).is_file() for h in re.findall(r"href='([^'#]+)'", other.read_text()))


def test_cli_shape_bare_folder_or_dir_key(runs, capsys):
    from alignlab.runs_index import register

    parser = argparse.ArgumentParser()
    register(parser.add_subparsers())
    args = parser.parse_args(["runs", str(runs)])
    assert args.func(args) == 0 and (runs / "index.html").is_file()
    out = capsys.readouterr().out
    assert f"index: {runs / 'index.html'}" in out and "resumable" in out
    args = parser.parse_args(["runs", f"dir={runs / 'group'}"])
    assert args.func(args) == 0 and (runs / "group" / "index.html").is_file()
    args = parser.parse_args(["runs", "a", "b"])
    with pytest.raises(ConfigError, match="one runs folder"):
        args.func(args)
    args = parser.parse_args(["runs", str(runs / "missing")])
    with pytest.raises(ConfigError, match="not a folder"):
        args.func(args)


def test_served_index_is_rebuilt_on_each_visit(runs):
    server = make_server(RunsConfig(dir=str(runs), port=0), runs)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/"
        assert "sft-20250101-120000" in urllib.request.urlopen(url, timeout=10).read().decode()
        _run(runs, "new-run", {"model": "x"})
        assert "new-run" in urllib.request.urlopen(url, timeout=10).read().decode()
        report = urllib.request.urlopen(url + "prefs-run/report.html", timeout=10).read().decode()
        assert "<title>prefs-run</title>" in report
    finally:
        server.shutdown()
        server.server_close()


CHROMIUM = next((shutil.which(b) for b in ("chromium", "chromium-browser", "google-chrome") if shutil.which(b)), None)


def _dump_dom(page: Path) -> tuple[str, list[str]]:
    """The DOM after scripts ran, and the page's console messages (Chromium's log)."""
    with tempfile.TemporaryDirectory() as profile:
        out = subprocess.run([CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
                              f"--user-data-dir={profile}", "--enable-logging=stderr", "--v=0",
                              "--virtual-time-budget=3000", "--dump-dom", page.resolve().as_uri()],
                             capture_output=True, text=True, timeout=120)
    return out.stdout, [ln for ln in out.stderr.splitlines() if ":CONSOLE" in ln]


@pytest.mark.skipif(CHROMIUM is None, reason="no chromium on PATH (Debian: apt-get install -y chromium)")
def test_index_in_headless_chromium_loads_draws_and_logs_nothing(runs):
    path, infos = write_index(runs)
    dom, console = _dump_dom(path)
    assert console == []  # no script errors, no warnings
    for info in infos:
        assert info.name in dom
    assert len(re.findall(r"<polyline[^>]*class=\"curve\"", dom)) >= 1  # the compare view drew curves
    assert "<option value=\"loss\">" in dom
    links = re.findall(r"<a href=\"([^\"#]+)\"", dom)
    assert links and all((path.parent / h).is_file() for h in links)


@pytest.mark.skipif(CHROMIUM is None, reason="no chromium on PATH (Debian: apt-get install -y chromium)")
def test_report_in_headless_chromium_loads_and_logs_nothing(runs):
    run = runs / "crashed"
    out = write_report_for(run)
    dom, console = _dump_dom(out)
    assert console == [] and "class=\"verdict\"" in dom and "data:image/png;base64," in dom


def write_report_for(run: Path) -> Path:
    from alignlab.report import write_report

    return write_report(run, "SFT", notes=["n"], tables={"Summary": [{"loss": 0.3, "acc": 0.5, "a": 1, "b": 2}]})


@pytest.mark.skipif(CHROMIUM is None, reason="no chromium on PATH (Debian: apt-get install -y chromium)")
def test_screenshot_script_shoots_a_cropped_png(runs, tmp_path):
    import importlib.util

    from PIL import Image

    script = Path(__file__).resolve().parents[2] / "scripts" / "screenshot_reports.py"
    spec = importlib.util.spec_from_file_location("screenshot_reports", script)
    shots = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(shots)
    index, _ = write_index(runs)
    png = tmp_path / "index.png"
    assert shots.screenshot(index, png, width=1000, height=6000) == []
    with Image.open(png) as img:
        assert img.width == 1000 and 300 < img.height < 6000  # the blank space below the page is cut
