"""Experiment trackers (`train.report_to`): TensorBoard, Weights & Biases and MLflow through
accelerate's tracker classes, fed every scalar of every record the run logs to metrics.jsonl.

Offline unless the user says otherwise: TensorBoard writes RUN/tensorboard; wandb runs in
offline mode (files under RUN/wandb) unless WANDB_MODE is set; MLflow writes a local SQLite
store RUN/mlflow.db (artifacts: RUN/mlartifacts) unless MLFLOW_TRACKING_URI is set (MLflow 3
refuses a plain `file:` store unless told to). Each is an optional extra
(`pip install 'alignlab[tensorboard]'`); a missing one is a ConfigError before training starts.

The trackers start on the first logged record (by then the recipe has written RUN/config.yaml,
which they store as the run's hyperparameters) and finish with `Tracking.close` (the trainer
calls it in `save_final`). They are started and finished one by one rather than with
`Accelerator.init_trackers` / `end_training`: the latter also destroys the process group, which
`save_final` and a later stage in the same process still need, and the former would restart
trackers an accelerator passed in from outside already runs.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import warnings
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

from alignlab.errors import ConfigError

TRACKERS = ("tensorboard", "wandb", "mlflow")
PROJECT = "alignlab"  # wandb project / MLflow experiment unless WANDB_PROJECT / MLFLOW_EXPERIMENT_NAME say
NOT_LOGGED = frozenset({"step", "time"})  # the x axis and the wall clock are not metrics
_MODULES = {"tensorboard": ("tensorboard", "tensorboardX"), "wandb": ("wandb",), "mlflow": ("mlflow",)}
_our_mlflow_uri: str | None = None  # the tracking URI this process set (not the user's)


def wanted(report_to: str | Sequence[str] | None) -> list[str]:
    """The trackers `train.report_to` asks for, in order, without repeats or "none"."""
    names = [report_to] if isinstance(report_to, str) else list(report_to or [])
    out: list[str] = []
    for name in names:
        if name == "none" or name in out:
            continue
        if name not in TRACKERS:
            raise ConfigError(f"train.report_to: {name!r} is not one of {[*TRACKERS, 'none']}")
        out.append(name)
    return out


def check_installed(names: Iterable[str]) -> None:
    """ConfigError naming the extra to install for the first tracker whose package is missing."""
    for name in names:
        if not any(importlib.util.find_spec(m) for m in _MODULES[name]):
            raise ConfigError(f"train.report_to: {name} is not installed; "
                              f"install it with: pip install 'alignlab[{name}]'")


def flat_config(data: Any, prefix: str = "") -> dict[str, Any]:
    """A nested config as {"train.lr": 1e-4, ...} with values every tracker stores (scalars;
    lists and None as their JSON text)."""
    if isinstance(data, dict):
        out: dict[str, Any] = {}
        for k, v in data.items():
            out.update(flat_config(v, f"{prefix}.{k}" if prefix else str(k)))
        return out
    ok = isinstance(data, (bool, int, float, str))
    return {prefix: data if ok else json.dumps(data, default=str)}


def scalars(record: dict[str, Any]) -> dict[str, float]:
    """The numbers of a metrics record (not its step, time, flags or strings)."""
    return {k: v for k, v in record.items()
            if isinstance(v, (int, float)) and not isinstance(v, bool) and k not in NOT_LOGGED}


def mlflow_uri(run_path: Path) -> str | None:
    """The local store under the run, unless the user set MLFLOW_TRACKING_URI (None then)."""
    global _our_mlflow_uri
    user = os.environ.get("MLFLOW_TRACKING_URI")
    if user and user != _our_mlflow_uri:  # mlflow.set_tracking_uri may export what we set
        return None
    _our_mlflow_uri = f"sqlite:///{run_path.resolve() / 'mlflow.db'}"
    return _our_mlflow_uri


def wandb_settings(run_path: Path) -> dict[str, Any]:
    """wandb.init arguments: files under the run, offline unless WANDB_MODE is set."""
    kw: dict[str, Any] = {"dir": str(run_path), "name": run_path.name}
    if not os.environ.get("WANDB_MODE"):
        kw["mode"] = "offline"
    return kw


def build(names: Sequence[str], run_path: Path, resume_step: int = 0) -> list[Any]:
    """accelerate tracker objects for `names`, writing under `run_path`. A run resumed at step
    `resume_step` hides the TensorBoard points an earlier attempt logged after it; a run that
    starts over (step 0) drops the earlier attempt's TensorBoard folder, as it does metrics.jsonl."""
    from accelerate.tracking import MLflowTracker, TensorBoardTracker, WandBTracker

    class LocalMLflowTracker(MLflowTracker):
        """MLflowTracker whose store is `uri` (accelerate's uses the global one)."""

        def __init__(self, uri: str | None, **kw: Any):
            super().__init__(**kw)
            self.uri = uri

        def start(self) -> None:
            if self.uri:
                import mlflow

                mlflow.set_tracking_uri(self.uri)
            super().start()

    out: list[Any] = []
    for name in names:
        if name == "tensorboard":
            if resume_step == 0:  # started over, like metrics.jsonl: an earlier attempt's curves go
                shutil.rmtree(run_path / "tensorboard", ignore_errors=True)
            purge = {"purge_step": resume_step + 1} if resume_step > 0 else {}
            out.append(TensorBoardTracker("tensorboard", run_path, **purge))  # RUN/tensorboard
        elif name == "wandb":
            out.append(WandBTracker(os.environ.get("WANDB_PROJECT", PROJECT), **wandb_settings(run_path)))
        elif name == "mlflow":
            uri = mlflow_uri(run_path)
            artifacts = (run_path.resolve() / "mlartifacts").as_uri() if uri else None
            out.append(LocalMLflowTracker(uri, experiment_name=PROJECT, logging_dir=artifacts, run_name=run_path.name))
    return out


class Tracking:
    """The trackers one trainer feeds: a `RunDir` sink (called with each logged record).

    `config()` gives the hyperparameters to store, `resumed_at()` the step training went on from
    (0: a fresh start), both read when the first record arrives; `step()` the step of a record
    without one. A failing tracker is reported once (a warning) and tracking stops, so a broken
    tracker never ends a training run; metrics.jsonl goes on.
    """

    def __init__(self, accelerator: Any, names: Sequence[str], run_path: Path,
                 config: Callable[[], dict[str, Any]], step: Callable[[], int], resumed_at: Callable[[], int]):
        self.accelerator = accelerator
        self.names = list(names)
        self.run_path = run_path
        self.config = config
        self.step = step
        self.resumed_at = resumed_at
        self.trackers: list[Any] = []
        self.state = "new"  # new → open → closed

    def start(self) -> None:
        """Start every tracker and store the run's config with each."""
        config = flat_config(self.config())
        for tracker in build(self.names, self.run_path, self.resumed_at()):
            tracker.start()
            self.trackers.append(tracker)  # started: close() finishes it
            tracker.store_init_configuration(config)
        self.accelerator.trackers.extend(self.trackers)
        self.state = "open"

    def __call__(self, record: dict[str, Any]) -> None:
        values = scalars(record)
        if self.state == "closed" or not values:
            return
        step = record.get("step")
        try:
            if self.state == "new":
                self.start()
            self.accelerator.log(values, step=step if isinstance(step, int) else self.step())
        except Exception as e:  # a tracker's own failure must not end the run
            warnings.warn(f"train.report_to: logging to {', '.join(self.names)} failed ({type(e).__name__}: {e}); "
                          "tracking stopped, RUN/metrics.jsonl goes on", stacklevel=2)
            self.close()

    def close(self) -> None:
        """Finish the trackers (flush and close files, end the wandb / MLflow run); once."""
        if self.state == "closed":
            return
        self.state = "closed"
        for tracker in self.trackers:
            if tracker in self.accelerator.trackers:
                self.accelerator.trackers.remove(tracker)
            try:
                tracker.finish()
            except Exception as e:  # likewise
                warnings.warn(f"train.report_to: closing {tracker.name} failed ({e})", stacklevel=2)
