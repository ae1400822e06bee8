"""A run directory: resolved config, metrics.jsonl, atomic checkpoints, report.

Layout::

    RUN/config.yaml        the resolved config
    RUN/metrics.jsonl      one JSON object per logged step/evaluation
    RUN/checkpoints/step-000100/   complete checkpoints only (written atomically)
    RUN/final/             the final model (transformers/PEFT format)
    RUN/report.html        plots and tables of the run
"""

from __future__ import annotations

import json
import math
import os
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from alignlab.config import save_config

CKPT_PREFIX = "step-"


def atomic_write_text(path: str | Path, text: str) -> None:
    """Write text via a temp file + rename, so a crash never leaves half a file."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_text(text)
    os.replace(tmp, path)


def _jsonable(v: Any) -> Any:
    if hasattr(v, "item"):
        v = v.item()
    if isinstance(v, float) and not math.isfinite(v):
        return str(v)
    return v


class RunDir:
    """Owns one run's folder: config, metrics log, checkpoints."""

    def __init__(self, path: str | Path, is_main: bool = True):
        self.path = Path(path)
        self.is_main = is_main
        if is_main:
            (self.path / "checkpoints").mkdir(parents=True, exist_ok=True)

    @property
    def metrics_path(self) -> Path:
        return self.path / "metrics.jsonl"

    def save_config(self, cfg: Any) -> None:
        if self.is_main:
            save_config(cfg, self.path / "config.yaml")

    def log(self, record: dict[str, Any]) -> None:
        """Append one metrics record (floats, ints, strings) to metrics.jsonl."""
        if not self.is_main:
            return
        rec = {k: _jsonable(v) for k, v in record.items()}
        rec.setdefault("time", round(time.time(), 3))
        with open(self.metrics_path, "a") as f:
            f.write(json.dumps(rec) + "\n")
            f.flush()

    def metrics(self) -> list[dict[str, Any]]:
        """All metrics records logged so far."""
        return read_metrics(self.metrics_path)

    def write_jsonl(self, relpath: str, rows: list[dict[str, Any]]) -> None:
        """Write `rows` as RUN/relpath (JSON lines, atomic, folders created); main process only."""
        if not self.is_main:
            return
        out = self.path / relpath
        out.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(out, "".join(json.dumps(r) + "\n" for r in rows))

    def truncate_metrics(self, after_step: int, key: str = "step") -> None:
        """Drop records whose `key` (default: step) is past `after_step` (used on resume so the log
        has no duplicates); records without the key are kept."""
        if not self.is_main or not self.metrics_path.exists():
            return
        self.write_jsonl(self.metrics_path.name, [r for r in self.metrics() if r.get(key, 0) <= after_step])

    # --- checkpoints -------------------------------------------------------------
    def checkpoint_dir(self, step: int) -> Path:
        return self.path / "checkpoints" / f"{CKPT_PREFIX}{step:07d}"

    def checkpoints(self) -> list[Path]:
        """Complete checkpoints, oldest first (temp folders are ignored)."""
        root = self.path / "checkpoints"
        if not root.exists():
            return []
        found = [
            p
            for p in root.iterdir()
            if p.is_dir() and p.name.startswith(CKPT_PREFIX) and (p / "COMPLETE").exists()
        ]
        return sorted(found, key=lambda p: int(p.name[len(CKPT_PREFIX) :]))

    def latest_checkpoint(self) -> Path | None:
        cks = self.checkpoints()
        return cks[-1] if cks else None

    def begin_checkpoint(self, step: int) -> Path:
        """A fresh temp folder to write checkpoint `step` into; see `commit_checkpoint`."""
        tmp = self.path / "checkpoints" / f".tmp-{CKPT_PREFIX}{step:07d}"
        if tmp.exists():
            shutil.rmtree(tmp)
        tmp.mkdir(parents=True)
        return tmp

    def commit_checkpoint(self, tmp: Path, step: int, keep: int = 2) -> Path:
        """Atomically publish a checkpoint folder and prune old ones."""
        (tmp / "COMPLETE").write_text(str(step))
        final = self.checkpoint_dir(step)
        if final.exists():
            shutil.rmtree(final)
        os.replace(tmp, final)
        if keep > 0:
            for old in self.checkpoints()[:-keep]:
                shutil.rmtree(old, ignore_errors=True)
        return final


def read_metrics(path: str | Path) -> list[dict[str, Any]]:
    """Read a metrics.jsonl file, skipping a torn last line."""
    path = Path(path)
    if not path.exists():
        return []
    out = []
    for line in path.read_text().splitlines():
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return out


def iter_records(records: list[dict[str, Any]], key: str) -> Iterator[tuple[int, float]]:
    """(step, value) pairs of records that carry `key` (for plots)."""
    for r in records:
        if key in r and isinstance(r[key], (int, float)):
            yield r.get("step", 0), float(r[key])
