"""What the online loop is made of, apart from the `Trainer` itself: the `Buffer` a method
collects, the `Callback`s it calls, the checkpointed `OnlineRNG`, and device placement
(`to_device`, `device_generator`, `no_accelerator`)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import fields, is_dataclass, replace
from typing import Any, Protocol

import torch


class Buffer(Protocol):
    """What an online method collects per iteration: rows the trainer shuffles into minibatches.

    A buffer may also define `micro_batches(batch_size, generator) -> list` to lay out one epoch
    itself (e.g. mixing two kinds of rows in proportion); otherwise the trainer takes full
    micro-batches of a seeded permutation through `minibatch(rows)`.
    """

    def __len__(self) -> int: ...
    def minibatch(self, rows: torch.Tensor) -> Any: ...


class Callback:
    """Hooks of the online loop; subclass and override what you need (Elastic Reset is one).
    `trainer` is the calling `alignlab.train.loop.Trainer`."""

    def on_step(self, trainer: Any, iteration: int) -> None:
        """After each optimiser step."""

    def on_epoch(self, trainer: Any, iteration: int) -> None:
        """After each pass over the iteration's buffer."""

    def on_iteration(self, trainer: Any, iteration: int) -> None:
        """After the iteration's updates, before its record is built."""


def to_device(batch: Any, device: torch.device | str) -> Any:
    """`batch` with every tensor on `device`: tensors, dicts, lists/tuples, dataclasses."""
    if isinstance(batch, torch.Tensor):
        return batch.to(device)
    if isinstance(batch, Mapping):
        return {k: to_device(v, device) for k, v in batch.items()}
    if isinstance(batch, (list, tuple)):
        return type(batch)(to_device(v, device) for v in batch)
    if is_dataclass(batch) and not isinstance(batch, type):
        return replace(batch, **{f.name: to_device(getattr(batch, f.name), device) for f in fields(batch) if f.init})
    return batch


def device_generator(seed: int, device: torch.device | str = "cpu") -> torch.Generator:
    """A seeded generator on `device` (sampling on CUDA needs a CUDA generator)."""
    return torch.Generator(device=device).manual_seed(seed)


class OnlineRNG:
    """The online loop's random stream (prompt draws, minibatch order, sampling seeds), checkpointed.

    It is identical on every process; each process samples with a generator seeded from it plus
    its rank, so processes draw different responses and one saved state resumes all.
    """

    def __init__(self, seed: int):
        self.shuffle = torch.Generator().manual_seed(seed * 7919 + 1)

    def draw(self, n_pool: int, k: int) -> list[int]:
        """k pool indices for this iteration: distinct when the pool has k, else with repeats."""
        if n_pool >= k:
            return torch.randperm(n_pool, generator=self.shuffle)[:k].tolist()
        return torch.randint(n_pool, (k,), generator=self.shuffle).tolist()

    def sampling_generator(self, rank: int, device: torch.device | str = "cpu") -> torch.Generator:
        """A fresh generator on `device` for this iteration's sampling on process `rank`."""
        base = int(torch.randint(2**62, (1,), generator=self.shuffle))
        return device_generator(base + rank, device)

    def state_dict(self) -> dict[str, Any]:
        return {"shuffle": self.shuffle.get_state()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.shuffle.set_state(state["shuffle"])


def no_accelerator() -> bool:
    """True on a machine with neither CUDA nor MPS: the Accelerator then runs on CPU and, under
    `accelerate launch --multi_gpu`, joins the other processes over gloo (no ACCELERATE_USE_CPU needed)."""
    mps = getattr(torch.backends, "mps", None)
    return not torch.cuda.is_available() and not (mps is not None and mps.is_available())


def mean_metrics(window: Sequence[Mapping[str, float]]) -> dict[str, float]:
    """Per-key mean of step metrics (keys missing from some steps average over those that have them)."""
    out: dict[str, list[float]] = {}
    for m in window:
        for k, v in m.items():
            out.setdefault(k, []).append(v)
    return {k: sum(v) / len(v) for k, v in out.items()}
