"""Helper of test_multiprocess: one short DPO run, started directly or by `accelerate launch`."""

from __future__ import annotations

import sys
from pathlib import Path

from accelerate import PartialState

from alignlab.config import load_config
from alignlab.recipes.prefs import PrefsConfig, run


def main(model: str, data: str, out: str, batch: str) -> None:
    cfg = load_config(PrefsConfig, None, [
        f"model.name_or_path={model}", f"data={data}", f"output_dir={out}", f"train.batch_size={batch}",
        "train.max_steps=4", "train.lr=1e-3", "train.log_every=1", "train.save_every=0", "train.progress=false",
        "eval_fraction=0", "preference.beta=0.5", "max_length=64", "max_prompt_length=32",
    ])
    run(cfg)
    state = PartialState()
    if state.is_main_process:
        (Path(out) / "world_size.txt").write_text(str(state.num_processes))


if __name__ == "__main__":
    from alignlab.train.sharding import leave

    main(*sys.argv[1:5])
    leave(0)  # as the alignlab command ends a process of a multi-process run
