"""DeepSpeed without deepspeed installed: the config alignlab writes into the engine (batch,
accumulation, clipping from train.*), the example JSONs taking it, and the accumulation protocol the
engine is driven by: accelerate's `sync_gradients` flag is False on every micro-batch but the last
of an optimiser step (DeepSpeed's wrapper passes it as the engine's accumulation boundary and steps
only there), also for the short last group of an online epoch, with one optimiser step per step."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from toy_task import DATA, collate, mse

from alignlab.config import TrainSettings
from alignlab.errors import ConfigError
from alignlab.runs import RunDir
from alignlab.train.loop import Trainer, seed_everything
from alignlab.train.sharding import deepspeed_values, fill_deepspeed_config

EXAMPLES = Path(__file__).parents[2] / "examples" / "accelerate"


def test_deepspeed_values_come_from_the_train_settings():
    cfg = TrainSettings(batch_size=8, grad_accum=4, max_grad_norm=0.5)
    assert deepspeed_values(cfg, world=2) == {"train_micro_batch_size_per_gpu": 8, "gradient_accumulation_steps": 4,
                                              "train_batch_size": 64, "gradient_clipping": 0.5}
    assert deepspeed_values(TrainSettings(max_grad_norm=0), world=1)["gradient_clipping"] == 0.0


@pytest.mark.parametrize("name", ["deepspeed_zero2.json", "deepspeed_zero3.json"])
def test_the_example_configs_take_alignlabs_values(name):
    ds = json.loads((EXAMPLES / name).read_text())
    fill_deepspeed_config(ds, deepspeed_values(TrainSettings(batch_size=2, grad_accum=3), world=4))
    assert (ds["train_micro_batch_size_per_gpu"], ds["gradient_accumulation_steps"], ds["train_batch_size"],
            ds["gradient_clipping"]) == (2, 3, 24, 1.0)
    assert ds["zero_optimization"]["stage"] == int(name[-6])  # the rest is left alone


def test_a_disagreeing_number_is_a_config_error_naming_both_keys():
    values = deepspeed_values(TrainSettings(batch_size=8, grad_accum=4), world=1)
    with pytest.raises(ConfigError, match=r"'gradient_accumulation_steps' is 1 but train.grad_accum gives 4.*auto"):
        fill_deepspeed_config({"gradient_accumulation_steps": 1}, values)
    ds = fill_deepspeed_config({"gradient_accumulation_steps": 4, "gradient_clipping": 1}, values)  # agreeing: kept
    assert ds["gradient_accumulation_steps"] == 4 and ds["train_micro_batch_size_per_gpu"] == 8


class StepCounter:
    """Counts optimiser steps and records accelerate's sync flag on each micro-batch's loss."""

    def __init__(self, trainer: Trainer):
        self.trainer, self.flags, self.steps = trainer, [], 0
        trainer.optimizer.optimizer.register_step_post_hook(lambda *_: self.count())

    def count(self) -> None:
        self.steps += 1

    def loss(self, model, batch):
        self.flags.append(self.trainer.accelerator.sync_gradients)
        return mse(model, batch)


def test_accumulation_marks_only_the_last_micro_batch_and_steps_once(tmp_path):
    seed_everything(0)
    t = Trainer(torch.nn.Linear(4, 1), TrainSettings(lr=0.05, batch_size=4, grad_accum=4, max_steps=2,
                                                      save_every=0, progress=False), RunDir(tmp_path))
    c = StepCounter(t)
    t.fit(DATA, collate, c.loss, resume=False)
    assert c.flags == [False, False, False, True] * 2 and c.steps == t.step_count == 2
    assert t.accelerator.sync_gradients  # left as accelerate expects it outside accumulation
    assert t.accelerator.gradient_accumulation_steps == 1  # alignlab divides; accelerate must not again


def test_a_short_last_group_of_an_online_epoch_is_its_own_boundary(tmp_path):
    from alignlab.train.online import Buffer

    class Rows(Buffer):
        def __len__(self) -> int:
            return 12

        def minibatch(self, rows):
            return collate([DATA[int(i)] for i in rows])

    seed_everything(0)
    t = Trainer(torch.nn.Linear(4, 1), TrainSettings(lr=0.05, batch_size=4, grad_accum=2, save_every=0,
                                                      progress=False), RunDir(tmp_path))
    c = StepCounter(t)
    t.fit_online(lambda it: Rows(), c.loss, iterations=1)  # 3 micro-batches: a group of 2, then 1
    assert c.flags == [False, True, True] and c.steps == t.step_count == 2


@pytest.mark.slow  # ~20 s: three fresh processes; skipped where deepspeed is not installed
@pytest.mark.parametrize("stage", ["2", "3"])
def test_zero_on_two_cpu_processes_trains_like_one_saves_whole_weights_and_resumes(stage, tmp_path):
    """DeepSpeed's CPU accelerator over gloo, the example JSON, grad_accum 2: the same losses and
    final weights as one plain process with the double batch; checkpoints resume exactly."""
    import importlib.util

    if importlib.util.find_spec("deepspeed") is None:
        pytest.skip("deepspeed is not installed (it ran here from a separate --target folder, see README)")
    from safetensors.torch import load_file

    spec = importlib.util.spec_from_file_location("dist_fsdp_run", Path(__file__).parent / "dist_fsdp_run.py")
    run = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(run)
    ds_env = {"DS_ACCELERATOR": "cpu", "ACCELERATE_USE_DEEPSPEED": "true"}
    procs = run.launch(tmp_path / "two", 4, 2, stage, env=ds_env) + run.launch(tmp_path / "one", 8, 1)
    run.finish(procs)
    two, one = tmp_path / "two", tmp_path / "one"
    assert (two / "world_size.txt").read_text() == "2" and (two / "sharded.txt").read_text() == "True"
    assert run.losses(two / "run") == pytest.approx(run.losses(one / "run"), abs=1e-5)
    final = load_file(str(two / "run" / "final" / "model.safetensors"))
    run.assert_close(final, load_file(str(one / "run" / "final" / "model.safetensors")), 1e-4)
    run.assert_close(load_file(str(two / "run" / "checkpoints" / "step-0000004" / "trainable.safetensors")), final, 0)
    assert (two / "run" / "checkpoints" / "step-0000004" / "deepspeed" / "engine").is_dir()
    assert run.losses(two / "resumed") == pytest.approx(run.losses(two / "run")[2:], abs=1e-6)
    run.assert_close(load_file(str(two / "resumed" / "final" / "model.safetensors")), final, 1e-6)
