"""The model side of the name resolver: a model name → what `from_pretrained` accepts.

Kept apart from the data side (`alignlab.resolve.data`) so that `alignlab.models`, which needs
it, never depends on the modules the data side reaches (rewards, evaluation, task data).
"""

from __future__ import annotations

from pathlib import Path

from alignlab.errors import ConfigError


def require(spec: str, key: str, what: str) -> str:
    """`spec` unless it is empty; empty is a ConfigError naming the key and what to give."""
    if not spec:
        raise ConfigError(f"{key}: give {what}")
    return spec



def model_path(name: str, key: str = "model.name_or_path") -> str:
    """Turn a model name into something `from_pretrained` accepts."""
    require(name, key, "a model (a folder, a hub id, 'testbed:<size>' or 'real:smollm2')")
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
