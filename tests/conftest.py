"""Shared fixtures: the tiny testbed model (built once, seconds), the world, shared data."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
# Test folders whose tiny models and heads run on one CPU thread: on a busy 2-core machine two
# spinning OpenMP threads made their small matmuls 5-40x slower (measured).
ONE_THREAD_FOLDERS = {"rl", "psle", "akd", "embedding_rm"}


@pytest.fixture(autouse=True)
def _one_cpu_thread_for_small_models(request):
    if request.path.parent.name not in ONE_THREAD_FOLDERS:
        yield
        return
    from alignlab.threads import cpu_threads

    with cpu_threads(1):
        yield


@pytest.fixture(scope="session")
def world():
    from alignlab.testbed.world import World

    return World()


@pytest.fixture(scope="session")
def tiny_dir() -> Path:
    """Folder of the tiny testbed model (built on first use, ~10 s, then cached)."""
    from alignlab.testbed.build import ensure_testbed

    return ensure_testbed("tiny", progress=False)


@pytest.fixture
def tiny(tiny_dir):
    """A fresh (model, tokenizer) pair of the tiny testbed model."""
    from alignlab.models import load_model

    return load_model(str(tiny_dir))


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """../shared/data beside the repo; tests that need it skip when it is absent."""
    if not SHARED_DATA.exists():
        pytest.skip(f"shared data not found at {SHARED_DATA}")
    return SHARED_DATA
