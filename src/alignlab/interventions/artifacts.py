"""Saving fitted interventions: tensors in `<stem>.safetensors`, settings in `<stem>.json`."""

from __future__ import annotations

import json
from pathlib import Path

import torch

from alignlab.errors import ConfigError


def save_artifact(path: str | Path, stem: str, tensors: dict[str, torch.Tensor], info: dict) -> Path:
    """Write `<path>/<stem>.safetensors` and `<path>/<stem>.json`; returns the folder."""
    from safetensors.torch import save_file

    out = Path(path)
    out.mkdir(parents=True, exist_ok=True)
    save_file({k: v.detach().contiguous() for k, v in tensors.items()}, str(out / f"{stem}.safetensors"))
    (out / f"{stem}.json").write_text(json.dumps(info, indent=2))
    return out


def load_artifact(path: str | Path, stem: str, what: str) -> tuple[dict[str, torch.Tensor], dict]:
    """(tensors, info) written by `save_artifact`; a folder without them is a ConfigError naming `what`."""
    from safetensors.torch import load_file

    p = Path(path)
    if not (p / f"{stem}.safetensors").is_file() or not (p / f"{stem}.json").is_file():
        raise ConfigError(f"{p}: not a saved {what} (needs {stem}.safetensors and {stem}.json)")
    return load_file(str(p / f"{stem}.safetensors")), json.loads((p / f"{stem}.json").read_text())
