"""Load a causal LM and its tokenizer with transformers (+ optional LoRA).

Model names (folders, hub ids, built-in names) resolve in `alignlab.resolve.model_path`.
"""

from __future__ import annotations

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from alignlab.config import LoraSettings, ModelSettings
from alignlab.errors import ConfigError
from alignlab.resolve.models import model_path

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def load_tokenizer(name: str):
    """Tokenizer of a model name; a pad token is set when the model has none."""
    tok = AutoTokenizer.from_pretrained(model_path(name))
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


def default_device() -> torch.device:
    """Where a frozen model runs: this process's accelerator (CUDA / MPS) when there is one, else CPU.
    (Trained models are placed by the Trainer's Accelerator, which picks the same device.)"""
    if torch.cuda.is_available():
        from accelerate import PartialState

        return PartialState().device
    mps = getattr(torch.backends, "mps", None)
    return torch.device("mps" if mps is not None and mps.is_available() else "cpu")


def load_model(settings: ModelSettings | str, trainable: bool = True):
    """(model, tokenizer) for a ModelSettings or a bare name; LoRA applied if enabled. A frozen
    model (`trainable=False`) is moved to `default_device()`; a trainable one stays on CPU for the
    Trainer to place."""
    if isinstance(settings, str):
        settings = ModelSettings(name_or_path=settings)
    if settings.dtype not in DTYPES:
        raise ConfigError(f"model.dtype: '{settings.dtype}' is not one of {list(DTYPES)}")
    path = model_path(settings.name_or_path)
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
        model.eval().requires_grad_(False).to(default_device())
    return model, tok
