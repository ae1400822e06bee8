"""Helper of test_multiprocess: reference log-probs of 5 pairs over the processes that launched it,
with the number of scoring batches each process ran (must be equal: sharded forwards are collectives)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import torch
from accelerate import PartialState

from alignlab import scoring
from alignlab.config import ModelSettings, TrainSettings
from alignlab.data.preference_batches import EncodedPair
from alignlab.models import load_model
from alignlab.recipes.prefs import precompute_reference
from alignlab.train.loop import Trainer


def items() -> list[EncodedPair]:
    return [EncodedPair([5 + i, 6], [20 + i, 21], [30 + i]) for i in range(5)]


def main(model_dir: str, out: str) -> None:
    model, tok = load_model(ModelSettings(name_or_path=model_dir))
    trainer = Trainer(model, TrainSettings(progress=False, save_every=0))
    calls = [0]
    real = scoring.pair_logps

    def counted(*args, **kwargs):
        calls[0] += 1
        return real(*args, **kwargs)

    scoring.pair_logps = counted
    pairs = items()
    precompute_reference(trainer.unwrapped, pairs, tok.pad_token_id, 2, False, trainer)
    state = PartialState()
    gathered: list = [None] * state.num_processes
    if state.num_processes > 1:
        torch.distributed.all_gather_object(gathered, calls[0])
    else:
        gathered = [calls[0]]
    if state.is_main_process:
        Path(out).write_text(json.dumps({"batches": gathered,
                                         "logps": [[e.ref_chosen, e.ref_rejected] for e in pairs]}))


if __name__ == "__main__":
    from alignlab.train.sharding import leave

    main(*sys.argv[1:3])
    leave(0)  # as the alignlab command ends a process of a multi-process run
