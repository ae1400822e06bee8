"""CPU thread control: small models run faster on one thread, and far faster on a busy machine."""

from __future__ import annotations

import os
import time
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


def _busy_jiffies() -> tuple[int, int]:
    """(busy, total) CPU jiffies of the whole machine from /proc/stat."""
    with open("/proc/stat") as f:
        fields = [int(x) for x in f.readline().split()[1:]]
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
    return sum(fields) - idle, sum(fields)


def busy_cores(interval: float = 0.5) -> float:
    """Cores kept busy by *other* processes, measured over `interval` seconds while this one sleeps.

    Unlike the 1-min load average it does not count this process's own recent work (a build
    that just trained its tokenizer would otherwise see itself as a competing job); falls back
    to the load average where /proc/stat does not exist.
    """
    try:
        b0, t0 = _busy_jiffies()
        own0 = sum(os.times()[:2])
        time.sleep(interval)
        b1, t1 = _busy_jiffies()
        own = sum(os.times()[:2]) - own0
    except (OSError, ValueError, IndexError):
        return os.getloadavg()[0]
    cores = os.cpu_count() or 1
    others = (b1 - b0) - own * os.sysconf("SC_CLK_TCK")  # jiffies of every core, less this process's
    return max(0.0, others / max(1, t1 - t0) * cores)


def threads_for_machine(cores: int | None = None, busy: float | None = None) -> int:
    """Every core on a quiet machine, one per process once others run: max(1, cores − round(busy)).

    busy = cores kept busy by other processes (`busy_cores`). Two OpenMP threads on a shared
    2-core machine spin-wait and run 5-15× slower than one.
    """
    cores = cores or os.cpu_count() or 1
    busy = busy_cores() if busy is None else busy
    return max(1, min(cores, cores - round(busy)))
