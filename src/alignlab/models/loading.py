"""Load a causal LM and its tokenizer with transformers (+ optional LoRA).

Model names (folders, hub ids, built-in names) resolve in `alignlab.resolve.model_path`.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from transformers import AutoModelForCausalLM, AutoTokenizer

from alignlab.config import LoraSettings, ModelSettings
from alignlab.errors import ConfigError
from alignlab.resolve.models import model_path

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "tokenizer.model", "vocab.json")
_JSON_FILES = ("config.json", "adapter_config.json", "tokenizer.json", "tokenizer_config.json",
               "special_tokens_map.json", "generation_config.json")


def _first_line(e: BaseException) -> str:
    text = str(e).strip()
    return text.splitlines()[0] if text else type(e).__name__


def _bad_json_file(folder: Path) -> str | None:
    """'file: why' for the first of a model folder's JSON files that does not parse, else None."""
    for name in _JSON_FILES:
        f = folder / name
        if not f.is_file():
            continue
        try:
            json.loads(f.read_bytes())
        except (UnicodeDecodeError, RecursionError) as e:
            return f"{f}: not readable JSON ({type(e).__name__})"
        except json.JSONDecodeError as e:
            return f"{f}: not valid JSON ({e.msg} at line {e.lineno})"
    return None


@contextmanager
def model_files(path: str, what: str) -> Iterator[None]:
    """Turn a failure to read a model folder (corrupt weights, a bad JSON file, missing files) into
    a ConfigError naming the folder, and the file when it can be told."""
    try:
        yield
    except ConfigError:
        raise
    except SafetensorError as e:
        files = sorted(str(f) for f in Path(path).glob("*.safetensors")) if Path(path).is_dir() else []
        raise ConfigError(f"{', '.join(files) or path}: corrupt safetensors weights of the {what} "
                          f"({_first_line(e)})") from e
    except (OSError, ValueError, RuntimeError, KeyError) as e:
        bad = _bad_json_file(Path(path)) if Path(path).is_dir() else None
        raise ConfigError(bad or f"could not load the {what} from '{path}': {_first_line(e)}") from e


def load_tokenizer(name: str):
    """Tokenizer of a model name; a pad token is set when the model has none. A folder without
    tokenizer files, or with broken ones, is a ConfigError naming it."""
    path = model_path(name)
    folder = Path(path)
    if folder.is_dir() and not any((folder / f).is_file() for f in TOKENIZER_FILES):
        raise ConfigError(f"model folder {folder} has no tokenizer files (one of {', '.join(TOKENIZER_FILES)})")
    with model_files(path, "tokenizer"):
        tok = AutoTokenizer.from_pretrained(path)
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

        from alignlab.train.sharding import close_at_exit

        state = PartialState()
        if state.num_processes > 1:
            close_at_exit()  # under `accelerate launch` this brought up a process group
        return state.device
    mps = getattr(torch.backends, "mps", None)
    return torch.device("mps" if mps is not None and mps.is_available() else "cpu")


def pretrained_kwargs(settings: ModelSettings) -> dict[str, Any]:
    """`from_pretrained` keyword arguments of `settings`: dtype, and the attention kernel when one
    is chosen (None leaves transformers' default, sdpa where the architecture supports it)."""
    if settings.dtype not in DTYPES:
        raise ConfigError(f"model.dtype: '{settings.dtype}' is not one of {list(DTYPES)}")
    settings.check("model")
    kwargs: dict[str, Any] = {"dtype": DTYPES[settings.dtype]}
    if settings.attn_implementation is not None:
        kwargs["attn_implementation"] = settings.attn_implementation
    return kwargs


def decoder_of(model: torch.nn.Module) -> torch.nn.Module:
    """The decoder stack (embeddings + layers + final norm) of a causal LM, under a PEFT wrapper too."""
    core = model.get_base_model() if hasattr(model, "get_base_model") else model
    return core.get_decoder()


def prepare_for_training(model: torch.nn.Module, settings: ModelSettings) -> torch.nn.Module:
    """Switches of a trained model: non-reentrant gradient checkpointing (no KV cache while training;
    generation passes `use_cache=True` itself) and an in-place `torch.compile` of the decoder stack
    (the module keeps its type and state-dict names, so checkpoints and `save_pretrained` are unchanged)."""
    if settings.gradient_checkpointing:
        non_reentrant = {"use_reentrant": False}
        if hasattr(model, "activation_checkpointing_enable"):  # transformers >= 5.x (the old name is deprecated)
            model.activation_checkpointing_enable(activation_checkpointing_kwargs=non_reentrant)
        else:
            model.gradient_checkpointing_enable(gradient_checkpointing_kwargs=non_reentrant)
        model.config.use_cache = False
    if settings.compile:
        decoder_of(model).compile()
    return model


def load_model(settings: ModelSettings | str, trainable: bool = True):
    """(model, tokenizer) for a ModelSettings or a bare name; LoRA applied if enabled. A frozen
    model (`trainable=False`) is moved to `default_device()`; a trainable one stays on CPU for the
    Trainer to place, with `gradient_checkpointing` / `compile` applied."""
    if isinstance(settings, str):
        settings = ModelSettings(name_or_path=settings)
    kwargs = pretrained_kwargs(settings)
    path = model_path(settings.name_or_path)
    with model_files(path, "model"):
        model = AutoModelForCausalLM.from_pretrained(path, **kwargs)
    tok = load_tokenizer(settings.name_or_path)
    if model.config.pad_token_id is None:
        model.config.pad_token_id = tok.pad_token_id
    if trainable and settings.lora.enabled:
        model = apply_lora(model, settings.lora)
    if trainable:
        prepare_for_training(model, settings)
    else:
        model.eval().requires_grad_(False).to(default_device())
    return model, tok
