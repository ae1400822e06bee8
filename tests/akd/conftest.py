"""AKD tests run the tiny model with one intra-op thread (as tests/rl does): on a busy 2-core
machine spinning OpenMP threads make its small matmuls many times slower."""

from __future__ import annotations

import pytest
import torch


@pytest.fixture(autouse=True, scope="module")
def _one_torch_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
