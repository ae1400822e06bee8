"""Where alignlab keeps files it builds or downloads (one cache folder for every module)."""

from __future__ import annotations

import os
from pathlib import Path


def cache_root() -> Path:
    """The cache folder: $ALIGNLAB_CACHE when set, else ~/.cache/alignlab."""
    return Path(os.environ.get("ALIGNLAB_CACHE", Path.home() / ".cache" / "alignlab"))
