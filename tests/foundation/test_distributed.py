"""Sharded saving: 2 CPU processes over gloo with the model sharded by torch's FSDP2 `fully_shard`
(accelerate selects FSDP only on GPUs) train like 1 process with the double batch, and the final
model, the checkpoints (weights and Adam moments) hold whole tensors gathered from the shards:
the final folder loads with `from_pretrained`, a resumed run ends where the uninterrupted one did,
and a plain single-process Trainer resumes the sharded checkpoint."""

from __future__ import annotations

import importlib.util
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

HERE = Path(__file__).parent


def _helper():
    """tests/foundation/dist_fsdp_run.py, the script the processes run, as a module."""
    spec = importlib.util.spec_from_file_location("dist_fsdp_run", HERE / "dist_fsdp_run.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


RUN = _helper()


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> tuple[Path, Path]:
    """(two processes x batch 4, sharded; one process x batch 8): both trained to step 4."""
    root = tmp_path_factory.mktemp("dist")
    two = RUN.launch(root / "two", 4, 2)
    one = RUN.launch(root / "one", 8, 1)
    RUN.finish(two + one)
    return root / "two", root / "one"


@pytest.mark.slow  # ~15 s on 2 loaded cores: three fresh processes import torch + transformers
def test_two_sharded_processes_save_whole_models_that_match_one_process(runs):
    from transformers import AutoModelForCausalLM

    two, one = runs
    assert (two / "world_size.txt").read_text() == "2" and (two / "sharded.txt").read_text() == "True"
    assert RUN.losses(two / "run") == pytest.approx(RUN.losses(one / "run"), abs=1e-5)
    final_two = load_file(str(two / "run" / "final" / "model.safetensors"))
    final_one = load_file(str(one / "run" / "final" / "model.safetensors"))
    assert final_two["model.embed_tokens.weight"].shape == (48, 32)  # whole, not a rank's half
    RUN.assert_close(final_two, final_one, 1e-4)  # Adam at lr 1e-2 turns float rounding into ~2e-5
    model = AutoModelForCausalLM.from_pretrained(two / "run" / "final")
    assert torch.equal(model.lm_head.weight.detach(), final_two["lm_head.weight"])
    assert not torch.equal(final_two["lm_head.weight"], final_two["model.embed_tokens.weight"])


@pytest.mark.slow
def test_sharded_checkpoints_hold_whole_weights_and_optimizer_state_and_resume_exactly(runs):
    two, _ = runs
    ckpt = two / "run" / "checkpoints" / "step-0000004"
    weights = load_file(str(ckpt / "trainable.safetensors"))
    RUN.assert_close(weights, load_file(str(two / "run" / "final" / "model.safetensors")), 0.0)
    state = torch.load(ckpt / "trainer_state.pt", weights_only=False)
    assert state["optimizer_format"] == "full"
    adam = state["optimizer"]["state"]["model.layers.0.mlp.up_proj.weight"]
    assert adam["exp_avg"].shape == adam["exp_avg_sq"].shape == (64, 32) and float(adam["step"]) == 4
    # the second run resumed from step 2 on two processes: the same losses and the same final weights
    assert RUN.losses(two / "resumed") == pytest.approx(RUN.losses(two / "run")[2:], abs=1e-6)
    RUN.assert_close(load_file(str(two / "resumed" / "final" / "model.safetensors")),
           load_file(str(two / "run" / "final" / "model.safetensors")), 1e-6)


@pytest.mark.slow
def test_one_plain_process_resumes_a_sharded_checkpoint(runs, tmp_path):
    from alignlab.config import TrainSettings
    from alignlab.runs import RunDir
    from alignlab.train.loop import Trainer

    two, _ = runs
    shutil.copytree(two / "run" / "checkpoints" / "step-0000002", tmp_path / "checkpoints" / "step-0000002")
    cfg = TrainSettings(lr=1e-2, batch_size=8, grad_accum=2, max_steps=4, save_every=0, log_every=1,
                        progress=False, seed=0)
    trainer = Trainer(RUN.build_model(1), cfg, RunDir(tmp_path))
    trainer.fit(RUN.DATA, torch.stack, RUN.lm_loss)
    assert trainer.resumed_at == 2 and not trainer.sharded
    trained = {n: p.detach() for n, p in trainer.unwrapped.state_dict().items()}
    RUN.assert_close(trained, load_file(str(two / "run" / "final" / "model.safetensors")), 1e-4)


def test_leave_runs_the_exit_hooks_flushes_and_exits_with_the_code(tmp_path):
    """`sharding.leave` (how a process of a multi-process run ends): what a normal exit would
    write is written — exit hooks, buffered stdout, logging handlers — and the code is kept."""
    import subprocess
    import sys

    script = tmp_path / "leaver.py"
    script.write_text(
        "import atexit, logging, pathlib, sys\n"
        "from alignlab.train.sharding import leave\n"
        f"out = pathlib.Path({str(tmp_path)!r})\n"
        "atexit.register(lambda: (out / 'hook.txt').write_text('ran'))\n"
        "logging.basicConfig(filename=out / 'log.txt', level=logging.INFO)\n"
        "logging.info('logged line')\n"
        "print('buffered line', end='')\n"  # stdout is a file: block-buffered, not yet written
        "leave(3)\n"
        "print('never')\n")
    with open(tmp_path / "stdout.txt", "w") as stdout:
        proc = subprocess.run([sys.executable, str(script)], stdout=stdout, stderr=subprocess.PIPE, text=True)
    assert proc.returncode == 3, proc.stderr
    assert (tmp_path / "hook.txt").read_text() == "ran"
    assert (tmp_path / "stdout.txt").read_text() == "buffered line"
    assert "logged line" in (tmp_path / "log.txt").read_text()
