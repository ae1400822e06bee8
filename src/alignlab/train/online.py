"""The online loop (`OnlineLoop.fit_online`, a part of `alignlab.train.loop.Trainer`) and what it
is made of: the `Buffer` a method collects, the `Callback`s it calls, the checkpointed
`OnlineRNG`, and device placement (`to_device`, `device_generator`, `no_accelerator`)."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import fields, is_dataclass, replace
from typing import Any, Protocol

import torch

from alignlab.errors import TrainingError

LossFn = Callable[[torch.nn.Module, Any], "tuple[torch.Tensor, dict[str, Any]]"]


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


class OnlineLoop:
    """The collect-then-update loop of PPO, PSLE and AKD; mixed into `Trainer`, whose `step`,
    `resume`, `save_checkpoint`, `run`, `rng`, `cfg` and counters it uses."""

    def epoch_micro_batches(self, buffer: Buffer) -> list[Any]:
        """One epoch of `buffer`: its own layout, or full micro-batches of a seeded permutation."""
        bs = self.cfg.batch_size
        if hasattr(buffer, "micro_batches"):
            return buffer.micro_batches(bs, self.rng.shuffle)
        perm = torch.randperm(len(buffer), generator=self.rng.shuffle)
        return [buffer.minibatch(perm[i:i + bs]) for i in range(0, len(buffer) - bs + 1, bs)]

    def fit_online(
        self,
        collect: Callable[[int], Buffer],
        loss_fn: LossFn,
        iterations: int,
        epochs: int = 1,
        finish: Callable[[int, Buffer, list[dict[str, float]]], dict[str, Any]] | None = None,
        start: Callable[[], dict[str, Any]] | None = None,
        evaluate: Callable[[int], dict[str, Any]] | None = None,
        eval_every: int = 0,
        callbacks: Sequence[Callback] = (),
        desc: str = "train",
        show: Mapping[str, str] | None = None,
    ) -> list[dict[str, Any]]:
        """Run `iterations` of collect → `epochs` passes over the buffer → one record, resuming.

        Per epoch the buffer's micro-batches (`epoch_micro_batches`) go `grad_accum` at a time
        into `step`. `finish(it, buffer, step_metrics)` ends an iteration (update method state,
        return the record's entries; default: the mean of the step metrics). `start()` is logged
        as iteration 0 of a fresh run; `evaluate(it)` joins the record every `eval_every`
        iterations and at the last. One record per iteration; `train.save_every` counts
        iterations; `show` maps progress-bar labels to record keys. Returns this call's records.
        """
        if self.resume():  # an iteration may take no step: cut the log by iteration too
            self.run.truncate_metrics(self.iteration, key="iteration")
        else:
            self.run.start_log()  # a run that died before its first checkpoint starts over
        records: list[dict[str, Any]] = []
        if self.iteration == 0 and start is not None:
            rec = {"step": self.step_count, "iteration": 0, **start()}
            self.run.log(rec)
            records.append(rec)
        from alignlab.progress import progress_bar

        ga = self.cfg.grad_accum
        with progress_bar(desc, total=iterations, completed=self.iteration,
                          enabled=self.cfg.progress and self.is_main) as bar:
            for it in range(self.iteration + 1, iterations + 1):
                t0 = time.perf_counter()
                try:
                    buffer = collect(it)
                except TrainingError as e:
                    raise TrainingError(f"{e}. {self.checkpoint_hint()}") from e
                t1 = time.perf_counter()
                window: list[dict[str, float]] = []
                for _epoch in range(epochs):
                    micro = self.epoch_micro_batches(buffer)
                    for s in range(0, len(micro), ga):
                        window.append(self.step(loss_fn, micro[s:s + ga]))
                        for cb in callbacks:
                            cb.on_step(self, it)
                    for cb in callbacks:
                        cb.on_epoch(self, it)
                for cb in callbacks:
                    cb.on_iteration(self, it)
                self.iteration = it
                rec = {"step": self.step_count, "iteration": it}
                rec.update(finish(it, buffer, window) if finish is not None else mean_metrics(window))
                rec.update(time_collect=round(t1 - t0, 4), time_update=round(time.perf_counter() - t1, 4))
                if evaluate is not None and (it == iterations or (eval_every > 0 and it % eval_every == 0)):
                    rec.update(evaluate(it))
                self.run.log(rec)
                records.append(rec)
                bar.advance(**{label: rec[k] for label, k in (show or {}).items() if k in rec})
                if self.cfg.save_every > 0 and it % self.cfg.save_every == 0:
                    self.save_checkpoint()
        return records
