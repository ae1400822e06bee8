"""CPU thread control: small models run faster on one thread, and far faster on a busy machine."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch


@contextmanager
def cpu_threads(n: int) -> Iterator[None]:
    """Run torch and OpenMP/BLAS (scikit-learn) with n threads; 0 leaves the defaults alone.

    On a busy 2-core machine one thread can be many times faster than two (spin-waiting).
    """
    if n <= 0:
        yield
        return
    from threadpoolctl import threadpool_limits

    old = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        with threadpool_limits(limits=n):
            yield
    finally:
        torch.set_num_threads(old)
