"""Helper of test_distributed / test_distributed_deepspeed: a tiny random Llama trained by the
Trainer for 4 steps (checkpoints at 2 and 4, then the final model), and a second run resumed from
the step-2 checkpoint.

Started as N processes (RANK / WORLD_SIZE / MASTER_ADDR / MASTER_PORT set, CPU, gloo) its decoder
layers and root are sharded with torch's FSDP2 `fully_shard` (accelerate selects FSDP only on
GPUs), or, with a DeepSpeed stage, the model runs in a DeepSpeed ZeRO engine on DeepSpeed's CPU
accelerator (needs deepspeed, DS_ACCELERATOR=cpu, ACCELERATE_USE_DEEPSPEED=true); as one process it
trains the whole model. Usage: dist_fsdp_run.py OUT BATCH_SIZE [DEEPSPEED_STAGE]
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import torch

VOCAB, LENGTH, N_SEQ = 48, 10, 32
DATA = [torch.randint(1, VOCAB, (LENGTH,), generator=torch.Generator().manual_seed(i)) for i in range(N_SEQ)]


def build_model(world: int) -> torch.nn.Module:
    """The same seed-0 2-layer Llama on every process, sharded over `world` processes when > 1."""
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    model = LlamaForCausalLM(LlamaConfig(vocab_size=VOCAB, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64,
                                         tie_word_embeddings=False, pad_token_id=0, bos_token_id=None,
                                         eos_token_id=None))
    if world > 1:
        from torch.distributed.device_mesh import init_device_mesh
        from torch.distributed.fsdp import fully_shard

        mesh = init_device_mesh("cpu", (world,))
        for layer in model.model.layers:
            fully_shard(layer, mesh=mesh)
        fully_shard(model, mesh=mesh)
    return model


def launch(out: Path, batch: int, world: int, *extra: str, env: dict[str, str] | None = None) -> list:
    """Start `world` processes of this script joined over gloo, the way `torchrun` sets them up
    (one plain process when world is 1); `env` is added to the environment."""
    import os
    import socket
    import subprocess

    base = {k: v for k, v in os.environ.items() if not k.startswith(("ACCELERATE_", "RANK", "WORLD_SIZE", "LOCAL_"))}
    base.update(OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", TOKENIZERS_PARALLELISM="false", PYTHONFAULTHANDLER="1",
                **(env or {}))  # faulthandler: an abort shows every thread's Python stack
    if world > 1:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        base.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), WORLD_SIZE=str(world), LOCAL_WORLD_SIZE=str(world))
    procs = []
    for r in range(world):  # output to files: a full pipe nobody reads would stall a rank mid-collective
        log = open(f"{out}.rank{r}.log", "w")  # closed by `finish`
        procs.append(subprocess.Popen([sys.executable, __file__, str(out), str(batch), *extra],
                                      env={**base, **({"RANK": str(r), "LOCAL_RANK": str(r)} if world > 1 else {})},
                                      stdout=log, stderr=subprocess.STDOUT, text=True))
        procs[-1].log = log
    return procs


def finish(procs: list) -> None:
    """Wait for the processes; AssertionError with the output's tail when one failed."""
    for p in procs:
        p.wait(timeout=300)
        p.log.close()
        assert p.returncode == 0, Path(p.log.name).read_text()[-3000:]


def losses(run: Path) -> list[float]:
    """The logged losses of a run folder, step by step."""
    import json

    return [json.loads(line)["loss"] for line in (run / "metrics.jsonl").read_text().splitlines()]


def assert_close(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor], tol: float) -> None:
    """Same names, and no tensor differs by more than `tol`."""
    assert a.keys() == b.keys()
    worst = max(float((a[k] - b[k]).abs().max()) for k in a)
    assert worst <= tol, worst


def lm_loss(model, batch):
    return model(input_ids=batch, labels=batch).loss, {}


def train(out: Path, batch: int, accelerator, fresh_accelerator, shard: bool = True) -> None:
    from alignlab.config import TrainSettings
    from alignlab.runs import RunDir
    from alignlab.train.loop import Trainer

    cfg = TrainSettings(lr=1e-2, batch_size=batch, grad_accum=2, max_steps=4, save_every=2, log_every=1,
                        keep_checkpoints=0, progress=False, seed=0)
    world = accelerator.num_processes if shard else 1
    trainer = Trainer(build_model(world), cfg, RunDir(out / "run", is_main=accelerator.is_main_process),
                      accelerator=accelerator)
    trainer.fit(DATA, torch.stack, lm_loss)
    trainer.save_final(card=False)
    if accelerator.is_main_process:  # a second run folder holding only the step-2 checkpoint
        step2 = trainer.run.checkpoint_dir(2)
        shutil.copytree(step2, out / "resumed" / "checkpoints" / step2.name)
    accelerator.wait_for_everyone()
    resumed = Trainer(build_model(world), cfg, RunDir(out / "resumed", is_main=accelerator.is_main_process),
                      accelerator=fresh_accelerator())  # a DeepSpeed Accelerator drives one engine only
    resumed.fit(DATA, torch.stack, lm_loss)
    resumed.save_final(card=False)
    if accelerator.is_main_process:
        (out / "world_size.txt").write_text(str(accelerator.num_processes))
        (out / "sharded.txt").write_text(str(trainer.sharded))


def main(out: str, batch: str, deepspeed_stage: str = "") -> None:
    from accelerate import Accelerator

    if not deepspeed_stage:
        train(Path(out), int(batch), Accelerator(cpu=True), lambda: Accelerator(cpu=True))
        return
    import json

    from accelerate.utils import DeepSpeedPlugin, InitProcessGroupKwargs

    examples = Path(__file__).resolve().parents[2] / "examples" / "accelerate"
    ds = json.loads((examples / f"deepspeed_zero{deepspeed_stage}.json").read_text())
    # accelerate has no CPU DeepSpeed setting: cpu=False plus an explicit gloo backend gets one
    first = Accelerator(cpu=False, deepspeed_plugin=DeepSpeedPlugin(hf_ds_config=ds),
                        kwargs_handlers=[InitProcessGroupKwargs(backend="gloo")])
    train(Path(out), int(batch), first, lambda: Accelerator(cpu=False), shard=False)


if __name__ == "__main__":
    from alignlab.train.sharding import leave

    main(*sys.argv[1:4])
    leave(0)  # as the alignlab command ends a process of a multi-process run
