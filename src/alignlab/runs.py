"""A run directory: one run's identity, its single writer, config, metrics, good checkpoints.

Layout::

    RUN/.lock              held (fcntl.flock) by the run's main process while it runs; holds its pid
    RUN/identity.json      what the run is: its resolved config + the data files it read
    RUN/config.yaml        the resolved config (written atomically, only after the identity check)
    RUN/command.txt        the exact shell command that resumes this run (CLI runs only)
    RUN/config_changes.log what `--resume-anyway` changed, and when
    RUN/metrics.jsonl      one JSON object per logged step/evaluation
    RUN/checkpoints/step-000100/   complete checkpoints only (written atomically); one holding a
                           SUSPECT file (the reason) is not "good": taken during a loss spike,
                           or not yet followed by a calm step (see Trainer.save_checkpoint)
    RUN/final/             the final model (transformers/PEFT format)
    RUN/report.html        plots and tables of the run

**Identity.** `save_config` compares the run's identity (the flattened resolved config plus
size and sha256 of every existing file a config value names; files over 64 MiB by size and
mtime; folders such as a model are identified by their path only) with the one recorded in
RUN. Keys that do not change what the run computes are left
out (`VOLATILE_KEYS`, `VOLATILE_LEAVES`: output_dir and the cadence/display/guard keys
progress, log_every, save_every, keep_checkpoints, divergence_factor, divergence_patience,
report_to).
The same identity resumes; a different one is refused with a ConfigError listing each key
(old → new) unless the run is allowed to go on with the new config: `--resume-anyway` on the
command line (the CLI sets `launched(..., resume_anyway=True)`), `RunDir(..., allow_mismatch=True)`
in Python. The change is then appended to RUN/config_changes.log.

**One writer.** The main process holds RUN/.lock from `RunDir(...)` until the RunDir is closed
or collected; a second process writing to RUN fails at once naming the holder's pid. Within
one process the lock is shared (re-entrant), so a process may reopen its own run.

**Resuming.** We chose to *print the exact command* rather than have a bare rerun search for
the latest unfinished run: a command without `--out` always starts a new timestamped run (no
guessing which one to continue). A CLI run writes RUN/command.txt (`cd CWD && alignlab CMD
-c CONFIG key=value ... --out RUN`); `resume_hint()` returns it for the last run this process
started, which is what the CLI prints after Ctrl-C.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import shlex
import shutil
import time
import weakref
from collections.abc import Callable, Iterator, Sequence
from contextvars import ContextVar
from pathlib import Path
from typing import Any

from alignlab.config import save_config
from alignlab.errors import ConfigError
from alignlab.run_identity import (
    IDENTITY,
    _acquire,
    _flatten,
    _release,
    config_defaults,
    identity_changes,
    launcher_rank,
    mismatch_message,
    run_identity,
)

CKPT_PREFIX = "step-"
SUSPECT = "SUSPECT"  # marker file: a checkpoint not (yet) known good; holds the reason
UNCONFIRMED = "unconfirmed: no step has run on these weights yet"
COMMAND = "command.txt"

_RESUME_ANYWAY: ContextVar[bool] = ContextVar("alignlab_resume_anyway", default=False)
_COMMAND: ContextVar[tuple[str, ...] | None] = ContextVar("alignlab_command", default=None)
_last_run: Path | None = None  # the run whose config this process saved last (for resume_hint)


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


# --- how the CLI starts a run ------------------------------------------------------------
@contextlib.contextmanager
def launched(command: Sequence[str] | None = None, resume_anyway: bool = False) -> Iterator[None]:
    """Within this block, runs were started by shell `command` (argv without `--out`; `--out RUN`
    is appended in RUN/command.txt) and may go on with a changed config when `resume_anyway`."""
    tokens = [_COMMAND.set(tuple(command) if command is not None else None), _RESUME_ANYWAY.set(resume_anyway)]
    try:
        yield
    finally:
        _RESUME_ANYWAY.reset(tokens[1])
        _COMMAND.reset(tokens[0])


def resume_hint(run_dir: str | Path | None = None) -> str:
    """How to resume `run_dir` (default: the last run this process started), for messages."""
    path = Path(run_dir) if run_dir is not None else _last_run
    if path is None:
        return "Nothing was written yet; rerun the same command to start over."
    cmd = path / COMMAND
    if cmd.is_file():
        return f"To resume: {cmd.read_text().strip()}"
    return f"To resume, rerun the same command writing to the same folder ({path})."


class RunDir:
    """Owns one run's folder: identity, lock, config, metrics log, checkpoints.

    `is_main` (default: this process is rank 0 by $RANK) is the one process that writes and holds
    RUN/.lock; `allow_mismatch` (default: the CLI's `--resume-anyway`) lets `save_config` go on
    with a config that differs from the recorded one; `lock=False` skips the lock (scratch dirs).
    """

    def __init__(self, path: str | Path, is_main: bool | None = None, *, allow_mismatch: bool | None = None,
                 lock: bool = True):
        self.path = Path(path)
        self.allow_mismatch = allow_mismatch
        self._lock_wanted = lock
        self._lock_key: str | None = None
        self._finalizer: weakref.finalize | None = None
        self._log_started = False  # this object has started the log over (or resumed it)
        self._own_from: int | None = None  # byte offset where this object's own log lines begin
        self.sinks: list[Callable[[dict[str, Any]], None]] = []  # also get each logged record (trackers)
        self._is_main = False
        self.is_main = launcher_rank() == 0 if is_main is None else is_main

    @property
    def is_main(self) -> bool:
        return self._is_main

    @is_main.setter
    def is_main(self, value: bool) -> None:
        """Only the main process writes: it creates the folder and holds the lock."""
        self._is_main = value
        if not value:
            self.close()
            return
        try:
            (self.path / "checkpoints").mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise ConfigError(f"{self.path}: cannot create the run directory ({e.strerror})") from e
        if self._lock_wanted and self._lock_key is None:
            try:
                self._lock_key = _acquire(self.path)
            except PermissionError as e:
                raise ConfigError(f"{self.path}: the run directory is not writable ({e.strerror})") from e
            self._finalizer = weakref.finalize(self, _release, self._lock_key)

    def close(self) -> None:
        """Release this RunDir's hold on RUN/.lock (also done when it is garbage collected)."""
        if self._finalizer is not None:
            self._finalizer()
        self._finalizer, self._lock_key = None, None

    def __enter__(self) -> RunDir:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def metrics_path(self) -> Path:
        return self.path / "metrics.jsonl"

    # --- identity and config -------------------------------------------------------
    def recorded_identity(self) -> dict[str, Any] | None:
        """The identity this folder's run was started with (legacy folders: config.yaml only)."""
        ident, cfg_file = self.path / IDENTITY, self.path / "config.yaml"
        if ident.is_file():
            try:
                return json.loads(ident.read_text())
            except (OSError, ValueError) as e:
                raise ConfigError(f"{ident}: unreadable run identity ({e}); use a new --out") from e
        if cfg_file.is_file():
            import yaml

            try:
                data = yaml.safe_load(cfg_file.read_text())
            except (OSError, yaml.YAMLError) as e:
                raise ConfigError(f"{cfg_file}: unreadable recorded config ({e}); use a new --out") from e
            return {"config": _flatten(data)} if isinstance(data, dict) else None
        return None

    def save_config(self, cfg: Any) -> None:
        """Check `cfg` against the run recorded here (refusing a different one, see the module
        docstring), then record identity, config.yaml and the resume command; a run with no
        checkpoint starts its metrics log over."""
        global _last_run
        if not self.is_main:
            return
        ident = run_identity(cfg)
        old = self.recorded_identity()
        changes = identity_changes(old, ident, config_defaults(cfg)) if old is not None else []
        allowed = self.allow_mismatch if self.allow_mismatch is not None else _RESUME_ANYWAY.get()
        if changes and not allowed:
            raise ConfigError(mismatch_message(self.path, changes))
        atomic_write_text(self.path / IDENTITY, json.dumps(ident, indent=1) + "\n")
        tmp = self.path / f".config.yaml.tmp-{os.getpid()}"
        save_config(cfg, tmp)
        os.replace(tmp, self.path / "config.yaml")
        if changes:
            with open(self.path / "config_changes.log", "a") as f:
                f.write(f"{time.strftime('%Y-%m-%d %H:%M:%S')} resumed with a changed config:\n  "
                        + "\n  ".join(changes) + "\n")
        command = _COMMAND.get()
        if command is not None:
            argv = shlex.join([*command, "--out", str(self.path)])
            atomic_write_text(self.path / COMMAND, f"cd {shlex.quote(os.getcwd())} && {argv}\n")
        _last_run = self.path
        if self.latest_checkpoint() is None:
            self.start_log()

    # --- metrics ---------------------------------------------------------------------
    def start_log(self) -> None:
        """A run with nothing to resume starts its log over: drop what an earlier attempt logged,
        keeping the lines this RunDir wrote itself (e.g. a recipe's step-0 evaluation). Once."""
        if self._log_started or not self.is_main:
            return
        self._log_started = True
        if self._own_from is None:
            self.metrics_path.unlink(missing_ok=True)
        elif self._own_from > 0:
            own = self.metrics_path.read_bytes()[self._own_from:]
            atomic_write_text(self.metrics_path, own.decode())
            self._own_from = 0

    def log(self, record: dict[str, Any]) -> None:
        """Append one metrics record (floats, ints, strings) to metrics.jsonl, then hand it to
        each of `sinks` (the experiment trackers of `train.report_to`)."""
        if not self.is_main:
            return
        rec = {k: _jsonable(v) for k, v in record.items()}
        rec.setdefault("time", round(time.time(), 3))
        with open(self.metrics_path, "a") as f:
            if self._own_from is None:
                self._own_from = f.tell()
                if self._own_from and _last_byte(self.metrics_path) != b"\n":  # a torn line from a kill
                    f.write("\n")
                    self._own_from += 1
            f.write(json.dumps(rec) + "\n")
            f.flush()
        for sink in self.sinks:
            sink(rec)

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
        self._log_started = True
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
        """The newest complete checkpoint (what exact resume continues from)."""
        cks = self.checkpoints()
        return cks[-1] if cks else None

    def last_good_checkpoint(self) -> Path | None:
        """The newest complete checkpoint not marked SUSPECT (finite weights, calm loss)."""
        good = [p for p in self.checkpoints() if not (p / SUSPECT).exists()]
        return good[-1] if good else None

    def checkpoint_note(self, ckpt: Path) -> str:
        """Why `ckpt` is not good ('' when it is)."""
        marker = ckpt / SUSPECT
        return marker.read_text() if marker.exists() else ""

    def confirm_checkpoint(self, ckpt: Path) -> None:
        """Mark `ckpt` good (a calm step ran on its weights); main process only."""
        if self.is_main:
            (ckpt / SUSPECT).unlink(missing_ok=True)

    def checkpoint_tmp(self, step: int) -> Path:
        """Where checkpoint `step` is written before `commit_checkpoint` publishes it."""
        return self.path / "checkpoints" / f".tmp-{CKPT_PREFIX}{step:07d}"

    def begin_checkpoint(self, step: int) -> Path:
        """A fresh temp folder to write checkpoint `step` into; see `commit_checkpoint`."""
        tmp = self.checkpoint_tmp(step)
        if tmp.exists():
            shutil.rmtree(tmp)
        tmp.mkdir(parents=True)
        return tmp

    def commit_checkpoint(self, tmp: Path, step: int, keep: int = 2, suspect: str = "") -> Path:
        """Atomically publish a checkpoint folder (marked SUSPECT with the reason when `suspect`)
        and prune old ones: the newest `keep` stay, and so does the last good one."""
        if suspect:
            (tmp / SUSPECT).write_text(suspect)
        (tmp / "COMPLETE").write_text(str(step))
        final = self.checkpoint_dir(step)
        if final.exists():
            shutil.rmtree(final)
        os.replace(tmp, final)
        if keep > 0:
            good = self.last_good_checkpoint()
            for old in self.checkpoints()[:-keep]:
                if old != good:
                    shutil.rmtree(old, ignore_errors=True)
        return final


def _last_byte(path: Path) -> bytes:
    with open(path, "rb") as f:
        f.seek(-1, os.SEEK_END)
        return f.read(1)


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
