"""The GPU tier (`pytest -m gpu`): every test here is skipped with the reason "no CUDA device" where
torch sees none. `ALIGNLAB_GPU_TIER_ON_CPU=1` runs the tier on the CPU instead (bf16 autocast on the
CPU, the CPU-vs-GPU comparison degenerates to CPU vs CPU): a check of the tests themselves, not a
GPU result.

Fixtures: tiny random Llama and Qwen2 models (GQA, the built-in tokenizer, nothing downloaded),
the built-in dialogue trees exported as SFT and ranking files, and a best-of-N pool for embed/erm.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch

HERE = Path(__file__).resolve().parent
ON_CPU = os.environ.get("ALIGNLAB_GPU_TIER_ON_CPU") == "1"
SKIP_REASON = "no CUDA device"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if torch.cuda.is_available() or ON_CPU:
        return
    skip = pytest.mark.skip(reason=SKIP_REASON)
    for item in items:
        if HERE in Path(str(item.path)).resolve().parents:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def device() -> torch.device:
    """Where the tier runs: the first CUDA device (the CPU under ALIGNLAB_GPU_TIER_ON_CPU=1)."""
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


@pytest.fixture(autouse=True)
def _fresh_accelerator_state():
    """Each test builds its own Accelerator (bf16 here, fp32 or CPU in the agreement test); accelerate
    keeps one process-wide state that refuses a second precision or device, so reset it around tests."""
    from accelerate.state import AcceleratorState

    AcceleratorState._reset_state(reset_partial_state=True)
    yield
    AcceleratorState._reset_state(reset_partial_state=True)


def _tiny_config(arch: str, tok):
    from transformers import LlamaConfig, Qwen2Config

    cls = {"llama": LlamaConfig, "qwen2": Qwen2Config}[arch]
    return cls(vocab_size=len(tok), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
               num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512,
               tie_word_embeddings=True, pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id,
               bos_token_id=None)


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory, world) -> dict[str, Path]:
    """{'llama': folder, 'qwen2': folder}: random-weight (seed 0) 2-layer models with 4 query / 2 KV heads
    and the built-in tokenizer, saved the way `from_pretrained` reads them."""
    from transformers import AutoModelForCausalLM

    from alignlab.testbed.build import ensure_tokenizer

    tok = ensure_tokenizer(world)
    out = {}
    for arch in ("llama", "qwen2"):
        torch.manual_seed(0)
        model = AutoModelForCausalLM.from_config(_tiny_config(arch, tok))
        folder = tmp_path_factory.mktemp(f"tiny_{arch}")
        model.save_pretrained(folder)
        tok.save_pretrained(folder)
        out[arch] = folder
    return out


def _write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


@pytest.fixture(scope="session")
def dialogue_files(tmp_path_factory, world) -> dict[str, Path]:
    """{'sft': chat threads, 'rm': ranking rows} exported from 200 built-in dialogue trees."""
    from alignlab.data.oasst import export_rm, export_sft, read_trees

    folder = tmp_path_factory.mktemp("gpu_data")
    trees_path = _write_jsonl(folder / "trees.jsonl", world.dialogue_trees(n=200))
    trees, _ = read_trees(trees_path)
    return {"sft": _write_jsonl(folder / "sft.jsonl", export_sft(trees)),
            "rm": _write_jsonl(folder / "rm.jsonl", export_rm(trees))}


@pytest.fixture(scope="session")
def pool_file(tmp_path_factory) -> Path:
    """60 best-of-N rows (10 prompts x 6) with a gold reward and a group, for embed / erm."""
    rows = [{"prompt": f"review : the food was {['ok', 'fine'][g % 2]}",
             "response": " ." + " the room was" * (1 + (g + i) % 3) + (" great" if (g + i) % 2 else " awful"),
             "gold": float((g + i) % 2), "group": g}
            for g in range(10) for i in range(6)]
    return _write_jsonl(tmp_path_factory.mktemp("pool") / "rows.jsonl", rows)
