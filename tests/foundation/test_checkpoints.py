"""Good checkpoints only: non-finite weights or optimizer state are never committed, a checkpoint
is good once a calm step ran on its weights, a diverging loss stops the run naming the last
good checkpoint, and rotation never deletes that one."""

from __future__ import annotations

import re

import pytest
import torch
from safetensors.torch import load_file
from toy_task import DATA, collate, mse

from alignlab.config import TrainSettings
from alignlab.errors import TrainingError
from alignlab.runs import RunDir
from alignlab.train.loop import DivergenceWatch, Trainer, seed_everything


def make(tmp, **kw) -> Trainer:
    seed_everything(0)
    cfg = TrainSettings(**{"lr": 0.05, "batch_size": 4, "max_steps": 30, "save_every": 3, "log_every": 1,
                           "progress": False, **kw})
    return Trainer(torch.nn.Linear(4, 1), cfg, RunDir(tmp))


def names(run: RunDir) -> list[str]:
    return [p.name for p in run.checkpoints()]


def test_lr_inf_commits_no_checkpoint(tmp_path):
    t = make(tmp_path, lr=float("inf"), save_every=1)
    with pytest.raises(TrainingError, match=r"not saving a checkpoint at step 1: weight.*NaN/inf.*none yet"):
        t.fit(DATA, collate, mse)
    assert names(t.run) == [] and not list((tmp_path / "checkpoints").iterdir())


def test_a_nan_parameter_is_refused_and_the_previous_checkpoints_stay_intact(tmp_path):
    t = make(tmp_path, max_steps=6)
    t.fit(DATA, collate, mse)
    latest = t.run.latest_checkpoint()
    saved = load_file(str(latest / "trainable.safetensors"))
    with torch.no_grad():
        t.model.weight[0, 1] = float("nan")
    t.step_count += 3
    # step 6's weights never ran a step, so the last *good* one is step 3 (step 4 ran calmly on it)
    with pytest.raises(TrainingError, match=r"step 9: weight hold NaN/inf.*Last good checkpoint: .*step-0000003"):
        t.save_checkpoint()
    assert names(t.run) == ["step-0000003", "step-0000006"]
    assert not (tmp_path / "checkpoints" / ".tmp-step-0000009").exists()
    assert all(torch.equal(saved[k], v) for k, v in load_file(str(latest / "trainable.safetensors")).items())


def test_non_finite_optimizer_state_is_refused(tmp_path):
    t = make(tmp_path, max_steps=3)
    t.fit(DATA, collate, mse)
    next(iter(t.optimizer.state.values()))["exp_avg_sq"].fill_(float("inf"))
    with pytest.raises(TrainingError, match=r"optimizer state 'exp_avg_sq' of weight hold NaN/inf"):
        t.save_checkpoint()


def lr_jumps_after(t: Trainer, step: int, lr: float):
    """mse, but from `step` on the schedule's base lr is `lr` (a finite blow-up, as lr=1e3 gives)."""

    def loss_fn(model, batch):
        if t.step_count == step:
            t.scheduler.base_lrs = [lr]
        return mse(model, batch)

    return loss_fn


def test_a_finite_divergence_stops_naming_the_last_good_checkpoint_which_rotation_keeps(tmp_path):
    t = make(tmp_path, keep_checkpoints=1, save_every=2)
    t.cfg.divergence_factor, t.cfg.divergence_patience = 5.0, 5  # TrainSettings fields (read with defaults)
    # the lr jumps for step 14's update: step 14's loss is calm, 15-19 are ~1e6 (finite) → stop at 19
    with pytest.raises(TrainingError, match=r"loss diverged: above 5x its running median .* for 5 steps in a row "
                                            r"\(steps 15-19.*Last good checkpoint: .*step-0000012"):
        t.fit(DATA, collate, lr_jumps_after(t, 12, 1e3))
    # step 14 holds the blown-up weights (its own loss was still calm): never confirmed, so not good;
    # 16 and 18 were saved mid-spike. Rotation (keep 1) kept the newest and the last good one.
    assert names(t.run) == ["step-0000012", "step-0000018"]
    assert t.run.last_good_checkpoint().name == "step-0000012" and "divergence" in t.run.checkpoint_note(
        t.run.checkpoint_dir(18))
    assert t.step_count == 19 and not (tmp_path / "final").exists()
    good = load_file(str(t.run.checkpoint_dir(12) / "trainable.safetensors"))
    assert all(v.abs().max() < 10 for v in good.values())

    resumed = make(tmp_path, keep_checkpoints=1)  # a rerun resumes the latest, and still knows the good one
    assert resumed.resume() and resumed.step_count == 18 and "step-0000012" in resumed.checkpoint_hint()
    assert resumed.divergence.streak == 4 and resumed.unconfirmed is None


def test_a_checkpoint_becomes_good_when_a_calm_step_runs_on_it_also_after_resume(tmp_path):
    t = make(tmp_path, max_steps=3)
    t.fit(DATA, collate, mse)
    assert t.run.last_good_checkpoint() is None and t.run.checkpoint_note(t.run.latest_checkpoint())
    resumed = make(tmp_path, max_steps=4)
    resumed.fit(DATA, collate, mse)
    assert resumed.run.last_good_checkpoint().name == "step-0000003" and resumed.unconfirmed is None


def test_without_a_divergence_factor_the_same_blow_up_runs_to_the_end(tmp_path):
    t = make(tmp_path, keep_checkpoints=1, save_every=2)
    t.fit(DATA, collate, lr_jumps_after(t, 12, 1e3))
    assert t.step_count == 30 and names(t.run) == ["step-0000028", "step-0000030"]  # the guard is what stops it


def test_rotation_keeps_the_newest_and_the_last_good(tmp_path):
    run = RunDir(tmp_path)

    def commit(step: int, suspect: str = "") -> None:
        tmp = run.begin_checkpoint(step)
        run.commit_checkpoint(tmp, step, keep=2, suspect=suspect)

    commit(1)
    commit(2, suspect="spike")
    commit(3, suspect="spike")
    commit(4, suspect="spike")
    assert [p.name for p in run.checkpoints()] == ["step-0000001", "step-0000003", "step-0000004"]
    assert run.latest_checkpoint().name == "step-0000004" and run.last_good_checkpoint().name == "step-0000001"
    commit(5)
    assert [p.name for p in run.checkpoints()] == ["step-0000004", "step-0000005"]


def test_the_divergence_bar_works_for_losses_of_either_sign():
    cfg = TrainSettings()
    cfg.divergence_factor, cfg.divergence_patience = 4.0, 2
    w = DivergenceWatch(cfg)
    for i in range(12):
        assert w.update(-1.0 + 0.01 * (i % 3), i + 1) == ""
    assert w.bar() == pytest.approx(-0.99 + 3 * 0.99)  # median + (k-1) x median |loss|
    assert w.update(1.9, 13) == "" and w.suspect == ""  # under the bar: calm
    assert w.update(5.0, 14) == "" and w.suspect  # one spike: not yet
    assert "for 2 steps in a row (steps 14-15" in w.update(5.0, 15)
    cfg.divergence_factor = 0.0
    assert DivergenceWatch(cfg).bar() is None


class Wide(torch.nn.Module):
    """The toy regressor plus 40 000 trained zeros, so a checkpoint is ~0.5 MB (160 KB of weights,
    320 KB of Adam moments) and a small file-size limit or file system refuses it."""

    def __init__(self):
        super().__init__()
        self.linear = torch.nn.Linear(4, 1)
        self.wide = torch.nn.Parameter(torch.zeros(40_000))

    def forward(self, x):
        return self.linear(x) + 0 * self.wide.sum()


# Run in a child process: RLIMIT_FSIZE turns writes past the limit into EFBIG for the rest of it.
FULL_DISK_CHILD = r"""
import json, resource, signal, sys, torch
from toy_task import DATA, collate, mse
from test_checkpoints import Wide
from alignlab.config import TrainSettings
from alignlab.errors import TrainingError
from alignlab.runs import RunDir
from alignlab.train.loop import Trainer, seed_everything

from safetensors.torch import save_file


def save(model, out):
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(out / "model.safetensors"))


seed_everything(0)
cfg = TrainSettings(lr=0.05, batch_size=4, max_steps=6, save_every=3, log_every=1, progress=False)
t = Trainer(Wide(), cfg, RunDir(sys.argv[1]), save_fn=save)
t.fit(DATA, collate, mse)
t.save_final(card=False)
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
out = {}
for what, limit in (("weights", 100_000), ("state", 250_000)):  # safetensors fails first, then torch.save
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit, resource.RLIM_INFINITY))
    t.step_count += 1
    try:
        t.save_checkpoint()
    except TrainingError as e:
        out[what] = str(e)
resource.setrlimit(resource.RLIMIT_FSIZE, (100_000, resource.RLIM_INFINITY))
try:
    t.save_final(card=False)
except TrainingError as e:
    out["final"] = str(e)
print(json.dumps(out))
"""


def test_a_write_past_a_file_size_limit_is_a_clear_error_keeping_the_last_checkpoint(tmp_path):
    import json
    import os
    import subprocess
    import sys
    from pathlib import Path

    final = tmp_path / "final" / "model.safetensors"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": os.pathsep.join(
        [str(Path(__file__).parent), str(Path(__file__).parents[1]), os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.run([sys.executable, "-c", FULL_DISK_CHILD, str(tmp_path)], env=env, capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    errors = json.loads(proc.stdout.splitlines()[-1])
    run = RunDir(tmp_path, lock=False)
    assert names(run) == ["step-0000003", "step-0000006"]  # both failed checkpoints left nothing behind
    assert not [p for p in (tmp_path / "checkpoints").iterdir() if p.name.startswith(".tmp")]
    assert re.search(r"could not write checkpoint .*step-0000007: .*File too large.*Last good checkpoint: "
                     r".*step-0000003", errors["weights"])
    # torch.save hides the reason in a RuntimeError; the message still names the folder and the cause
    assert re.search(r"could not write checkpoint .*step-0000008: .*\.tmp-step-0000008.*RuntimeError", errors["state"])
    assert re.search(r"could not save the final model to .*final: .*File too large.*Nothing there was changed",
                     errors["final"])
    assert final.stat().st_size > 100_000 and not (tmp_path / ".tmp-final").exists()  # the old final stays


def test_a_full_file_system_is_a_clear_error_naming_the_path(tmp_path):
    import os
    import subprocess

    mnt = tmp_path / "small"
    mnt.mkdir()
    if os.geteuid() != 0 or subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1200k", "tmpfs", str(mnt)],
                                           capture_output=True).returncode != 0:
        pytest.skip("mounting a small tmpfs needs root")
    run = RunDir(mnt / "run")
    try:
        t = Trainer(Wide(), TrainSettings(lr=0.05, batch_size=4, max_steps=9, save_every=3, log_every=1,
                                          progress=False), run)
        with pytest.raises(TrainingError, match=r"could not write checkpoint .*step-0000009: .*"
                                                r"(No space left on device|disk is likely full).*Last good"):
            t.fit(DATA, collate, mse)
        assert names(t.run) == ["step-0000003", "step-0000006"]
        assert load_file(str(t.run.latest_checkpoint() / "trainable.safetensors"))["wide"].shape == (40_000,)
    finally:
        run.close()  # lets go of RUN/.lock
        if subprocess.run(["umount", str(mnt)]).returncode != 0:
            subprocess.run(["umount", "-l", str(mnt)], check=True)
