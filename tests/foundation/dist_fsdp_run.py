"""Helper of test_distributed: a tiny random Llama trained by the Trainer for 4 steps (checkpoints
at 2 and 4, then the final model), and a second run resumed from the step-2 checkpoint.

Started as N processes (RANK / WORLD_SIZE / MASTER_ADDR / MASTER_PORT set, CPU, gloo) its decoder
layers and root are sharded with torch's FSDP2 `fully_shard` (accelerate selects FSDP only on
GPUs); as one process it trains the whole model. Usage: dist_fsdp_run.py OUT BATCH_SIZE
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


def lm_loss(model, batch):
    return model(input_ids=batch, labels=batch).loss, {}


def train(out: Path, batch: int, accelerator) -> None:
    from alignlab.config import TrainSettings
    from alignlab.runs import RunDir
    from alignlab.train.loop import Trainer

    cfg = TrainSettings(lr=1e-2, batch_size=batch, grad_accum=2, max_steps=4, save_every=2, log_every=1,
                        keep_checkpoints=0, progress=False, seed=0)
    world = accelerator.num_processes
    trainer = Trainer(build_model(world), cfg, RunDir(out / "run", is_main=accelerator.is_main_process),
                      accelerator=accelerator)
    trainer.fit(DATA, torch.stack, lm_loss)
    trainer.save_final(card=False)
    if accelerator.is_main_process:  # a second run folder holding only the step-2 checkpoint
        step2 = trainer.run.checkpoint_dir(2)
        shutil.copytree(step2, out / "resumed" / "checkpoints" / step2.name)
    accelerator.wait_for_everyone()
    resumed = Trainer(build_model(world), cfg, RunDir(out / "resumed", is_main=accelerator.is_main_process),
                      accelerator=accelerator)
    resumed.fit(DATA, torch.stack, lm_loss)
    resumed.save_final(card=False)
    if accelerator.is_main_process:
        (out / "world_size.txt").write_text(str(world))
        (out / "sharded.txt").write_text(str(trainer.sharded))


def main(out: str, batch: str) -> None:
    from accelerate import Accelerator

    train(Path(out), int(batch), Accelerator(cpu=True))


if __name__ == "__main__":
    main(*sys.argv[1:3])
