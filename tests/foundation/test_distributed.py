"""Sharded saving: 2 CPU processes over gloo with the model sharded by torch's FSDP2 `fully_shard`
(accelerate selects FSDP only on GPUs) train like 1 process with the double batch, and the final
model, the checkpoints (weights and Adam moments) hold whole tensors gathered from the shards:
the final folder loads with `from_pretrained`, a resumed run ends where the uninterrupted one did,
and a plain single-process Trainer resumes the sharded checkpoint."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

HERE = Path(__file__).parent
SCRIPT = HERE / "dist_fsdp_run.py"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _launch(out: Path, batch: int, world: int) -> list[subprocess.Popen]:
    """`world` processes of the helper, joined over gloo the way `torchrun` would set them up."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ACCELERATE_", "RANK", "WORLD_SIZE", "LOCAL_"))}
    env.update(OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", TOKENIZERS_PARALLELISM="false")
    if world > 1:
        env.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(_free_port()), WORLD_SIZE=str(world))
    procs = []
    for rank in range(world):
        penv = {**env, **({"RANK": str(rank), "LOCAL_RANK": str(rank)} if world > 1 else {})}
        procs.append(subprocess.Popen([sys.executable, str(SCRIPT), str(out), str(batch)], env=penv,
                                      stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True))
    return procs


def _finish(procs: list[subprocess.Popen]) -> None:
    for p in procs:
        out, _ = p.communicate(timeout=300)
        assert p.returncode == 0, out[-3000:]


def _losses(run: Path) -> list[float]:
    return [json.loads(line)["loss"] for line in (run / "metrics.jsonl").read_text().splitlines()]


def _close(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor], tol: float) -> float:
    assert a.keys() == b.keys()
    worst = max(float((a[k] - b[k]).abs().max()) for k in a)
    assert worst <= tol, worst
    return worst


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> tuple[Path, Path]:
    """(two processes x batch 4, sharded; one process x batch 8): both trained to step 4."""
    root = tmp_path_factory.mktemp("dist")
    two = _launch(root / "two", 4, 2)
    one = _launch(root / "one", 8, 1)
    _finish(two + one)
    return root / "two", root / "one"


@pytest.mark.slow  # ~15 s on 2 loaded cores: three fresh processes import torch + transformers
def test_two_sharded_processes_save_whole_models_that_match_one_process(runs):
    from transformers import AutoModelForCausalLM

    two, one = runs
    assert (two / "world_size.txt").read_text() == "2" and (two / "sharded.txt").read_text() == "True"
    assert _losses(two / "run") == pytest.approx(_losses(one / "run"), abs=1e-5)
    final_two = load_file(str(two / "run" / "final" / "model.safetensors"))
    final_one = load_file(str(one / "run" / "final" / "model.safetensors"))
    assert final_two["model.embed_tokens.weight"].shape == (48, 32)  # whole, not a rank's half
    _close(final_two, final_one, 1e-4)  # Adam at lr 1e-2 turns float rounding into ~2e-5
    model = AutoModelForCausalLM.from_pretrained(two / "run" / "final")
    assert torch.equal(model.lm_head.weight.detach(), final_two["lm_head.weight"])
    assert not torch.equal(final_two["lm_head.weight"], final_two["model.embed_tokens.weight"])


@pytest.mark.slow
def test_sharded_checkpoints_hold_whole_weights_and_optimizer_state_and_resume_exactly(runs):
    two, _ = runs
    ckpt = two / "run" / "checkpoints" / "step-0000004"
    weights = load_file(str(ckpt / "trainable.safetensors"))
    _close(weights, load_file(str(two / "run" / "final" / "model.safetensors")), 0.0)
    state = torch.load(ckpt / "trainer_state.pt", weights_only=False)
    assert state["optimizer_format"] == "full"
    adam = state["optimizer"]["state"]["model.layers.0.mlp.up_proj.weight"]
    assert adam["exp_avg"].shape == adam["exp_avg_sq"].shape == (64, 32) and float(adam["step"]) == 4
    # the second run resumed from step 2 on two processes: the same losses and the same final weights
    assert _losses(two / "resumed") == pytest.approx(_losses(two / "run")[2:], abs=1e-6)
    _close(load_file(str(two / "resumed" / "final" / "model.safetensors")),
           load_file(str(two / "run" / "final" / "model.safetensors")), 1e-6)


@pytest.mark.slow
def test_one_plain_process_resumes_a_sharded_checkpoint(runs, tmp_path):
    sys.path.insert(0, str(HERE))
    try:
        from dist_fsdp_run import DATA, build_model, lm_loss
    finally:
        sys.path.remove(str(HERE))
    from alignlab.config import TrainSettings
    from alignlab.runs import RunDir
    from alignlab.train.loop import Trainer

    two, _ = runs
    shutil.copytree(two / "run" / "checkpoints" / "step-0000002", tmp_path / "checkpoints" / "step-0000002")
    cfg = TrainSettings(lr=1e-2, batch_size=8, grad_accum=2, max_steps=4, save_every=0, log_every=1,
                        progress=False, seed=0)
    trainer = Trainer(build_model(1), cfg, RunDir(tmp_path))
    trainer.fit(DATA, torch.stack, lm_loss)
    assert trainer.resumed_at == 2 and not trainer.sharded
    trained = {n: p.detach() for n, p in trainer.unwrapped.state_dict().items()}
    _close(trained, load_file(str(two / "run" / "final" / "model.safetensors")), 1e-4)
