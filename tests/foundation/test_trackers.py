"""`train.report_to`: every record of metrics.jsonl reaches the experiment trackers (TensorBoard
read back with its own event reader), offline by default, a missing package named by its extra."""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import pytest
import torch
import yaml
from toy_task import DATA, collate, mse, mse_interrupted_at

from alignlab.config import TrainSettings
from alignlab.errors import ConfigError
from alignlab.runs import RunDir
from alignlab.train import trackers
from alignlab.train.loop import Trainer, seed_everything


def make(run: Path, report_to: list[str], **kw) -> Trainer:
    seed_everything(0)
    cfg = TrainSettings(lr=0.05, batch_size=4, max_steps=12, log_every=1, save_every=3, progress=False, **kw)
    cfg.report_to = report_to  # TrainSettings.report_to (config.py); read with getattr by the trainer
    return Trainer(torch.nn.Linear(4, 1), cfg, RunDir(run))


def tensorboard_scalars(run: Path, tag: str) -> list[tuple[int, float]]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(run / "tensorboard"))
    acc.Reload()
    return [(e.step, e.value) for e in acc.Scalars(tag)]


def logged(run: Path, key: str) -> list[tuple[int, float]]:
    return [(r["step"], r[key]) for r in RunDir(run, is_main=False).metrics() if key in r]


def test_tensorboard_event_files_hold_every_logged_value(tmp_path):
    pytest.importorskip("tensorboard", reason="tensorboard is not installed (pip install 'alignlab[tensorboard]')")
    t = make(tmp_path, ["tensorboard"])
    t.run.save_config(t.cfg)
    t.run.log({"step": 0, "eval_loss": 2.5, "note": "a string, not logged"})  # a recipe's own record
    t.fit(DATA, collate, mse)
    t.end_tracking()
    loss = tensorboard_scalars(tmp_path, "loss")
    assert [s for s, _ in loss] == list(range(1, 13))
    assert loss == [(s, pytest.approx(v, rel=1e-6)) for s, v in logged(tmp_path, "loss")]
    assert tensorboard_scalars(tmp_path, "eval_loss") == [(0, 2.5)]
    assert [s for s, _ in tensorboard_scalars(tmp_path, "lr")] == list(range(1, 13))
    (hparams,) = (tmp_path / "tensorboard").glob("*/hparams.yml")
    assert yaml.safe_load(hparams.read_text())["lr"] == 0.05  # the run's config, stored once
    t.run.log({"step": 13, "loss": 9.0})  # after end_tracking: metrics.jsonl only
    assert [s for s, _ in tensorboard_scalars(tmp_path, "loss")][-1] == 12


def test_a_resumed_run_shows_each_step_once_in_tensorboard(tmp_path):
    pytest.importorskip("tensorboard", reason="tensorboard is not installed (pip install 'alignlab[tensorboard]')")
    crashing = mse_interrupted_at(8)
    part = make(tmp_path, ["tensorboard"])
    with pytest.raises(KeyboardInterrupt):
        part.fit(DATA, collate, crashing)
    part.end_tracking()
    part.run.close()
    assert [s for s, _ in tensorboard_scalars(tmp_path, "loss")] == list(range(1, 8))
    resumed = make(tmp_path, ["tensorboard"])
    resumed.fit(DATA, collate, mse)  # goes on from the step-6 checkpoint
    resumed.end_tracking()
    loss = tensorboard_scalars(tmp_path, "loss")
    assert [s for s, _ in loss] == list(range(1, 13))  # step 7 of the first attempt is gone
    assert loss == [(s, pytest.approx(v, rel=1e-6)) for s, v in logged(tmp_path, "loss")]


def test_no_trackers_by_default_and_none_means_none(tmp_path):
    t = make(tmp_path, ["none"])
    assert t.tracking is None and t.run.sinks == []
    assert trackers.wanted(None) == [] and trackers.wanted("tensorboard") == ["tensorboard"]
    assert trackers.wanted(["wandb", "none", "wandb", "mlflow"]) == ["wandb", "mlflow"]
    with pytest.raises(ConfigError, match=r"train.report_to: 'comet' is not one of"):
        trackers.wanted(["comet"])


@pytest.mark.parametrize("name", trackers.TRACKERS)
def test_a_missing_tracker_package_names_the_extra_before_training(tmp_path, monkeypatch, name):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda mod, *a: None if mod in ("tensorboard", "tensorboardX", "wandb", "mlflow") else real(mod, *a))
    with pytest.raises(ConfigError, match=rf"train.report_to: {name} is not installed; .*pip install 'alignlab\[{name}\]'"):
        make(tmp_path, [name])


def test_wandb_is_offline_unless_wandb_mode_is_set(tmp_path, monkeypatch):
    monkeypatch.delenv("WANDB_MODE", raising=False)
    assert trackers.wandb_settings(tmp_path) == {"dir": str(tmp_path), "name": tmp_path.name, "mode": "offline"}
    monkeypatch.setenv("WANDB_MODE", "online")
    assert "mode" not in trackers.wandb_settings(tmp_path)


def test_mlflow_stores_under_the_run_unless_the_user_set_a_tracking_uri(tmp_path, monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    first = trackers.mlflow_uri(tmp_path / "a")
    assert first == f"sqlite:///{tmp_path / 'a' / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", first)  # what mlflow.set_tracking_uri exports
    assert trackers.mlflow_uri(tmp_path / "b") == f"sqlite:///{tmp_path / 'b' / 'mlflow.db'}"  # the next run: its own
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://mlflow.example:5000")
    assert trackers.mlflow_uri(tmp_path / "c") is None  # the user's server


class FakeTracker:
    """Stands in for an accelerate tracker: records calls, fails on demand."""

    name = "fake"

    def __init__(self, fail_at: int = -1):
        self.calls: list[tuple] = []
        self.fail_at = fail_at

    def start(self):
        self.calls.append(("start",))

    def store_init_configuration(self, values):
        self.calls.append(("config", values))

    def log(self, values, step=None, **kw):
        if step == self.fail_at:
            raise RuntimeError("disk full")
        self.calls.append(("log", step, values))

    def finish(self):
        self.calls.append(("finish",))


def test_trackers_get_scalars_with_steps_and_a_failing_one_stops_with_a_warning(tmp_path, monkeypatch):
    fake = FakeTracker(fail_at=5)
    monkeypatch.setattr(trackers, "build", lambda names, path, step: [fake])
    monkeypatch.setattr(trackers, "check_installed", lambda names: None)
    t = make(tmp_path, ["wandb"])
    with pytest.warns(UserWarning, match=r"logging to wandb failed \(RuntimeError: disk full\); tracking stopped"):
        t.fit(DATA, collate, mse)
    assert fake.calls[0] == ("start",)
    assert fake.calls[1][0] == "config" and fake.calls[1][1]["train.lr"] == 0.05  # no config.yaml: the train settings
    logs = [c for c in fake.calls if c[0] == "log"]
    assert [c[1] for c in logs] == [1, 2, 3, 4]
    assert set(logs[0][2]) == {"epoch", "loss", "y", "grad_norm", "lr"}  # no step / time
    assert fake.calls[-1] == ("finish",) and fake not in t.accelerator.trackers
    assert len(logged(tmp_path, "loss")) == 12  # metrics.jsonl went on


def test_flat_config_keeps_scalars_and_writes_the_rest_as_json():
    flat = trackers.flat_config({"train": {"lr": 1e-4, "report_to": ["tensorboard"]}, "data": "x.jsonl",
                                 "model": {"lora": {"enabled": False, "target": None}}})
    assert flat == {"train.lr": 1e-4, "train.report_to": '["tensorboard"]', "data": "x.jsonl",
                    "model.lora.enabled": False, "model.lora.target": "null"}


def test_wandb_writes_an_offline_run_under_the_run_folder(tmp_path, monkeypatch):
    pytest.importorskip("wandb", reason="wandb is not installed (pip install 'alignlab[wandb]')")
    monkeypatch.delenv("WANDB_MODE", raising=False)
    monkeypatch.setenv("WANDB_SILENT", "true")
    t = make(tmp_path, ["wandb"])
    t.fit(DATA, collate, mse)
    t.end_tracking()
    (offline,) = (tmp_path / "wandb").glob("offline-run-*")
    assert list(offline.glob("run-*.wandb")) and "WANDB_MODE" not in os.environ


def test_mlflow_logs_each_run_to_its_own_local_store(tmp_path, monkeypatch):
    pytest.importorskip("mlflow", reason="mlflow is not installed (pip install 'alignlab[mlflow]')")
    from mlflow.tracking import MlflowClient

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    for name in ("a", "b"):  # the second run of a process gets its own store too
        t = make(tmp_path / name, ["mlflow"])
        t.run.save_config(t.cfg)
        t.fit(DATA, collate, mse)
        t.end_tracking()
        client = MlflowClient(tracking_uri=f"sqlite:///{tmp_path / name / 'mlflow.db'}")
        (run,) = client.search_runs([client.get_experiment_by_name("alignlab").experiment_id])
        assert run.info.status == "FINISHED" and run.info.run_name == name and run.data.params["lr"] == "0.05"
        history = [(m.step, m.value) for m in client.get_metric_history(run.info.run_id, "loss")]
        assert history == [(s, pytest.approx(v, rel=1e-6)) for s, v in logged(tmp_path / name, "loss")]
