"""Run directories that cannot lie: a rerun with another config (or other data) is refused by
name unless asked for, one writer at a time, the resume command is recorded, and a restart
with nothing to resume starts its metrics log over."""

from __future__ import annotations

import argparse
import dataclasses
import os
import shlex
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
import yaml
from toy_task import DATA, collate, mse

from alignlab.config import TrainSettings, save_config
from alignlab.errors import ConfigError
from alignlab.recipe import RunResult, register_recipe
from alignlab.runs import RunDir, launched, read_metrics, resume_hint
from alignlab.train.loop import Trainer, seed_everything


@dataclasses.dataclass
class ToyConfig:
    """A recipe config: a data file, a nested train section, where to write."""

    data: str = ""
    loss: str = "dpo"
    output_dir: str = ""
    train: TrainSettings = dataclasses.field(default_factory=TrainSettings)


def toy_cfg(tmp_path: Path, **train) -> ToyConfig:
    data = tmp_path / "data.jsonl"
    if not data.exists():
        data.write_text('{"x": 1}\n')
    return ToyConfig(data=str(data), output_dir=str(tmp_path / "run"), train=TrainSettings(**train))


def test_a_different_config_is_refused_naming_each_key_and_nothing_is_rewritten(tmp_path):
    run = tmp_path / "run"
    RunDir(run).save_config(toy_cfg(tmp_path, lr=1e-4, max_steps=10))
    before = {p: (run / p).read_text() for p in ("config.yaml", "identity.json")}
    changed = toy_cfg(tmp_path, lr=1e-3, max_steps=20)
    changed.loss = "ipo"
    with pytest.raises(ConfigError) as e:
        RunDir(run).save_config(changed)
    msg = str(e.value)
    assert "train.lr: 0.0001 → 0.001" in msg and "train.max_steps: 10 → 20" in msg and 'loss: "dpo" → "ipo"' in msg
    assert "--out" in msg and "--resume-anyway" in msg and "train.seed" not in msg
    assert {p: (run / p).read_text() for p in before} == before  # the record still describes the real run


def test_the_same_config_and_volatile_keys_resume(tmp_path):
    run = tmp_path / "run"
    RunDir(run).save_config(toy_cfg(tmp_path, lr=1e-4))
    same = toy_cfg(tmp_path, lr=1e-4, progress=False, log_every=1, save_every=7, keep_checkpoints=9)
    same.output_dir = "elsewhere"
    RunDir(run).save_config(same)  # display/cadence keys and output_dir are not part of the identity
    assert yaml.safe_load((run / "config.yaml").read_text())["train"]["save_every"] == 7


def test_changed_data_contents_are_refused_but_a_rewrite_with_the_same_bytes_is_not(tmp_path):
    run = tmp_path / "run"
    cfg = toy_cfg(tmp_path)
    RunDir(run).save_config(cfg)
    Path(cfg.data).write_text('{"x": 1}\n')
    os.utime(cfg.data, (1, 1))  # new mtime, same bytes
    RunDir(run).save_config(cfg)
    Path(cfg.data).write_text('{"x": 2}\n')
    with pytest.raises(ConfigError, match=rf"data: file {cfg.data} changed \(sha256 \w+, 9 bytes → sha256"):
        RunDir(run).save_config(cfg)


def test_a_changed_dataset_folder_is_refused_and_model_folders_are_not_stamped(tmp_path):
    run, ds = tmp_path / "run", tmp_path / "ds"
    ds.mkdir()
    (ds / "dataset_info.json").write_text("{}")
    (ds / "data-00000-of-00001.arrow").write_bytes(b"12345")
    cfg = toy_cfg(tmp_path)
    cfg.data = str(ds)
    RunDir(run).save_config(cfg)
    RunDir(run).save_config(cfg)  # unchanged folder: resumes
    (ds / "data-00000-of-00001.arrow").write_bytes(b"123456")
    with pytest.raises(ConfigError, match=rf"data: file {ds} changed"):
        RunDir(run).save_config(cfg)
    from alignlab.run_identity import file_stamp

    model = tmp_path / "model"
    model.mkdir()
    (model / "config.json").write_text("{}")
    (model / "state.json").write_text("{}")
    assert file_stamp(str(model)) is None and file_stamp(str(tmp_path / "nothing")) is None


def test_allow_mismatch_goes_on_and_logs_the_change(tmp_path):
    run = tmp_path / "run"
    RunDir(run).save_config(toy_cfg(tmp_path, lr=1e-4))
    RunDir(run, allow_mismatch=True).save_config(toy_cfg(tmp_path, lr=1e-3))
    assert yaml.safe_load((run / "config.yaml").read_text())["train"]["lr"] == 1e-3
    assert "train.lr: 0.0001 → 0.001" in (run / "config_changes.log").read_text()
    with launched(None, resume_anyway=True):  # what --resume-anyway sets
        RunDir(run).save_config(toy_cfg(tmp_path, lr=1e-2))
    with pytest.raises(ConfigError, match="train.lr: 0.01 → 0.1"):  # the new config is now the run's identity
        RunDir(run).save_config(toy_cfg(tmp_path, lr=1e-1))


def test_a_run_recorded_before_identities_is_checked_against_its_config_yaml(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    save_config(toy_cfg(tmp_path, lr=1e-4), run / "config.yaml")
    RunDir(run).save_config(toy_cfg(tmp_path, lr=1e-4))
    (run / "identity.json").unlink()
    with pytest.raises(ConfigError, match="train.epochs: 1 → 3"):
        RunDir(run).save_config(toy_cfg(tmp_path, lr=1e-4, epochs=3))


def test_a_key_the_old_run_did_not_have_counts_only_off_its_default(tmp_path):
    run = tmp_path / "run"
    RunDir(run).save_config(toy_cfg(tmp_path))
    ident = run / "identity.json"
    ident.write_text(ident.read_text().replace('"train.weight_decay"', '"train.gone_key"'))
    with pytest.raises(ConfigError) as e:  # gone_key vanished; weight_decay is new but at its default
        RunDir(run).save_config(toy_cfg(tmp_path))
    assert "train.gone_key: 0.0 → (absent)" in str(e.value) and "weight_decay" not in str(e.value)


# --- the command line ------------------------------------------------------------------
def toy_run(cfg: ToyConfig) -> RunResult:
    rd = RunDir(cfg.output_dir)
    rd.save_config(cfg)
    rd.log({"step": 1, "lr": cfg.train.lr})
    return RunResult(rd.path, {"lr": cfg.train.lr})


def cli(*argv: str) -> int:
    parser = argparse.ArgumentParser(prog="alignlab")
    register_recipe(parser.add_subparsers(), "toy", "a toy recipe", ToyConfig, toy_run)
    args = parser.parse_args(argv)
    return args.func(args)


def test_cli_records_the_resume_command_refuses_a_changed_rerun_and_resume_anyway_goes_on(tmp_path, capsys):
    out = tmp_path / "run"
    cfg_file = tmp_path / "toy.yaml"
    cfg_file.write_text(f"data: {toy_cfg(tmp_path).data}\n")
    assert cli("toy", "-c", str(cfg_file), "train.lr=0.5", f"output_dir={tmp_path / 'x'}", "--out", str(out)) == 0
    command = (out / "command.txt").read_text().strip()
    assert command == f"cd {shlex.quote(os.getcwd())} && alignlab toy -c {cfg_file} train.lr=0.5 --out {out}"
    assert resume_hint() == f"To resume: {command}"
    assert resume_hint(out) == f"To resume: {command}"
    assert cli(*shlex.split(command.split(" && ", 1)[1])[1:]) == 0  # the recorded command resumes
    with pytest.raises(ConfigError, match="train.lr: 0.5 → 0.7"):
        cli("toy", "-c", str(cfg_file), "train.lr=0.7", "--out", str(out))
    assert cli("toy", "-c", str(cfg_file), "train.lr=0.7", "--resume-anyway", "--out", str(out)) == 0
    assert (out / "command.txt").read_text().strip().endswith("train.lr=0.7 --out " + str(out))
    assert "--resume-anyway" not in (out / "command.txt").read_text()  # the plain command resumes now


def test_resume_hint_without_a_recorded_command_names_the_folder(tmp_path):
    assert resume_hint(tmp_path) == f"To resume, rerun the same command writing to the same folder ({tmp_path})."


# --- one writer ------------------------------------------------------------------------
TRY_LOCK = textwrap.dedent("""
    import sys
    from alignlab.errors import ConfigError
    from alignlab.runs import RunDir
    try:
        RunDir(sys.argv[1], is_main=sys.argv[2] == "main")
    except ConfigError as e:
        print(e)
        sys.exit(3)
""")


def try_lock(path: Path, role: str = "main") -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", TRY_LOCK, str(path), role], capture_output=True, text=True,
                          timeout=120)


def test_a_second_writer_fails_at_once_naming_the_holder(tmp_path):
    held = RunDir(tmp_path / "run")
    again = RunDir(tmp_path / "run")  # the same process may reopen its own run
    other = try_lock(tmp_path / "run")
    assert other.returncode == 3, other.stderr
    assert f"is in use by another run (pid {os.getpid()} on" in other.stdout and "--out" in other.stdout
    assert try_lock(tmp_path / "run", role="worker").returncode == 0  # non-main processes never lock
    held.close()
    assert try_lock(tmp_path / "run").returncode == 3  # `again` still holds it
    again.close()
    assert try_lock(tmp_path / "run").returncode == 0, "closing every RunDir releases the lock"


def test_a_launched_worker_process_neither_locks_nor_writes(tmp_path, monkeypatch):
    monkeypatch.setenv("RANK", "1")  # as torchrun / accelerate launch set it on the second process
    worker = RunDir(tmp_path / "run")
    worker.save_config(toy_cfg(tmp_path))
    worker.log({"step": 1})
    assert not worker.is_main and not (tmp_path / "run").exists()
    monkeypatch.setenv("RANK", "0")
    assert RunDir(tmp_path / "run").is_main and (tmp_path / "run" / ".lock").exists()


def test_a_collected_run_dir_releases_its_lock(tmp_path):
    RunDir(tmp_path / "run")  # dropped at once
    assert try_lock(tmp_path / "run").returncode == 0


def test_an_unwritable_run_dir_is_a_config_error(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(ConfigError, match="cannot create the run directory"):
        RunDir(blocker / "run")


# --- stale metrics ---------------------------------------------------------------------


def trainer(run: RunDir) -> Trainer:
    seed_everything(0)
    cfg = TrainSettings(lr=0.05, batch_size=4, max_steps=6, save_every=100, log_every=1, progress=False)
    return Trainer(torch.nn.Linear(4, 1), cfg, run)


def crash_at(step: int):
    def loss_fn(model, batch):
        loss_fn.n += 1
        if loss_fn.n == step:
            raise KeyboardInterrupt
        return mse(model, batch)

    loss_fn.n = 0
    return loss_fn


@pytest.mark.parametrize("via_recipe", [True, False])
def test_a_restart_without_a_checkpoint_drops_the_earlier_attempts_lines(tmp_path, via_recipe):
    cfg = toy_cfg(tmp_path)
    first = RunDir(tmp_path / "run")
    if via_recipe:
        first.save_config(cfg)
    first.log({"step": 0, "eval": -1.0})
    with pytest.raises(KeyboardInterrupt):
        trainer(first).fit(DATA, collate, crash_at(5))  # 4 steps logged, no checkpoint
    assert [r["step"] for r in first.metrics()] == [0, 1, 2, 3, 4]

    again = RunDir(tmp_path / "run")
    if via_recipe:  # as prefs does: config, then its own step-0 line, then fit
        again.save_config(cfg)
        assert again.metrics() == []  # at once, also for recipes that never call fit (steer, embed...)
    again.log({"step": 0, "eval": -2.0})
    trainer(again).fit(DATA, collate, mse)
    recs = read_metrics(tmp_path / "run" / "metrics.jsonl")
    assert [r["step"] for r in recs] == [0, 1, 2, 3, 4, 5, 6] and recs[0]["eval"] == -2.0


# --- end to end, through the real command line -------------------------------------------
def test_sft_rerun_with_another_lr_is_refused_by_name_and_the_same_command_resumes(tiny_dir, tmp_path, capsys):
    from alignlab.cli import main

    data = tmp_path / "sft.jsonl"
    data.write_text("".join(f'{{"prompt": "say {i}", "response": "ok {i}"}}\n' for i in range(8)))
    out = tmp_path / "run"
    args = ["sft", f"model.name_or_path={tiny_dir}", f"data={data}", "train.batch_size=4", "train.max_steps=2",
            "train.save_every=1", "train.log_every=1", "train.progress=false", "--out", str(out)]
    assert main(args) == 0
    config = (out / "config.yaml").read_text()
    capsys.readouterr()
    assert main([*args, "train.lr=0.01"]) == 2
    err = capsys.readouterr().err
    assert "train.lr: 0.0005 → 0.01" in err and "--resume-anyway" in err
    assert (out / "config.yaml").read_text() == config  # the record still describes the run that happened
    assert main(args) == 0  # the same command finds its checkpoints and resumes (nothing left to do)
    assert [r["step"] for r in read_metrics(out / "metrics.jsonl") if "loss" in r] == [1, 2]
