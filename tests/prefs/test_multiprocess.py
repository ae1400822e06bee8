"""`accelerate launch` with 2 CPU processes (gloo): batch b trains like 1 process × batch 2b; the
reference pass runs equal batch counts on every process and gathers what one process computes."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).parent


def _free_port() -> str:
    """A port nobody listens on now: a fixed one collides with another suite running beside this one."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return str(s.getsockname()[1])


def _losses(run_dir: Path) -> list[float]:
    recs = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return [r["loss"] for r in recs if "loss" in r]


@pytest.mark.slow  # ~50 s of CPU: two fresh processes import torch + transformers
@pytest.mark.skipif(shutil.which("accelerate", path=str(Path(sys.executable).parent)) is None,
                    reason="accelerate CLI not installed beside this python")
def test_two_processes_match_one_with_double_batch(tiny_dir, ranking_file, tmp_path):
    data = tmp_path / "small.jsonl"
    data.write_text("".join(ranking_file.read_text().splitlines(keepends=True)[:32]))
    env = {k: v for k, v in os.environ.items() if k != "ACCELERATE_USE_CPU"}
    env.update(OMP_NUM_THREADS="1", TOKENIZERS_PARALLELISM="false", PYTHONFAULTHANDLER="1")
    launcher = str(Path(sys.executable).parent / "accelerate")
    # On a machine without GPUs, --multi_gpu only selects the torch.distributed launcher; the
    # Trainer's Accelerator sees no GPU and joins the processes over gloo on CPU.
    cmd = [launcher, "launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1",
           "--mixed_precision", "no", "--dynamo_backend", "no", "--main_process_port", _free_port(),
           str(HERE / "mp_prefs_run.py"), str(tiny_dir), str(data), str(tmp_path / "two"), "4"]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    sys.path.insert(0, str(HERE))
    try:
        from mp_prefs_run import main

        main(str(tiny_dir), str(data), str(tmp_path / "one"), "8")
    finally:
        sys.path.remove(str(HERE))
        out, _ = proc.communicate(timeout=300)
    assert proc.returncode == 0, out[-3000:]
    assert (tmp_path / "two" / "world_size.txt").read_text() == "2"
    one, two = _losses(tmp_path / "one"), _losses(tmp_path / "two")
    assert len(one) == len(two) == 4
    assert one == pytest.approx(two, abs=1e-4)
    assert one[-1] != pytest.approx(one[0], abs=1e-3)  # it did train


@pytest.mark.slow  # ~30 s of CPU: two fresh processes import torch + transformers
@pytest.mark.skipif(shutil.which("accelerate", path=str(Path(sys.executable).parent)) is None,
                    reason="accelerate CLI not installed beside this python")
def test_reference_pass_has_equal_batches_per_process(tiny_dir, tmp_path):
    """5 pairs over 2 processes in batches of 2: shares 3 and 2 pairs would be 2 and 1 batches
    (a deadlock under a sharded model); padded shares run 2 batches each, same log-probs as 1 process."""
    env = {k: v for k, v in os.environ.items() if k != "ACCELERATE_USE_CPU"}
    env.update(OMP_NUM_THREADS="1", TOKENIZERS_PARALLELISM="false", PYTHONFAULTHANDLER="1")
    launcher = str(Path(sys.executable).parent / "accelerate")
    cmd = [launcher, "launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1",
           "--mixed_precision", "no", "--dynamo_backend", "no", "--main_process_port", _free_port(),
           str(HERE / "mp_precompute_run.py"), str(tiny_dir), str(tmp_path / "two.json")]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    sys.path.insert(0, str(HERE))
    try:
        from mp_precompute_run import main

        main(str(tiny_dir), str(tmp_path / "one.json"))
    finally:
        sys.path.remove(str(HERE))
        out, _ = proc.communicate(timeout=300)
    assert proc.returncode == 0, out[-3000:]
    one, two = (json.loads((tmp_path / f).read_text()) for f in ("one.json", "two.json"))
    assert one["batches"] == [3] and two["batches"] == [2, 2]
    assert sum(two["logps"], []) == pytest.approx(sum(one["logps"], []), abs=1e-5)
