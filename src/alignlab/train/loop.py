"""The one training loop every method shares.

A method supplies `loss_fn(model, batch) -> (loss, metrics)` and its data; the trainer does
the rest. Offline methods (SFT, RM, DPO…) give a dataset + collate: `Trainer.fit`. Online
methods (PPO, PSLE, AKD) give `collect(iteration) -> Buffer`: `Trainer.fit_online` runs
collect → epochs of shuffled minibatches → `step`, and calls `Callback`s (`on_step`,
`on_epoch`, `on_iteration`; Elastic Reset is one). Both share: data order (seeded, sharded
over processes, one checkpointed `OnlineRNG`), gradient accumulation, clipping, the LR
schedule, every micro-batch moved to the accelerator's device (`to_device`), logging to
metrics.jsonl (and to the experiment trackers of `train.report_to`, `alignlab.train.trackers`)
and a progress bar, NaN checks and divergence stops naming the last good checkpoint
(`DivergenceWatch`), atomic checkpoints of finite weights only, exact resume, and
the final model with its model card (`save_final`, `alignlab.model_card`; both in
`alignlab.train.saving`). Accelerate sits underneath, so `accelerate launch` gives DDP, FSDP2 or
DeepSpeed (`alignlab.train.sharding`: saving gathers the shards, DeepSpeed's engine is told the
accumulation boundary) and `mixed_precision: bf16` applies to every recipe. A model the caller
sharded with FSDP2's `fully_shard` is used as it is (no DDP wrapper).
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
import yaml
from accelerate import Accelerator

from alignlab.config import TrainSettings, to_dict
from alignlab.errors import TrainingError
from alignlab.runs import RunDir
from alignlab.train import sharding, trackers
from alignlab.train.guards import DivergenceWatch
from alignlab.train.online import (
    Buffer,
    Callback,
    LossFn,
    OnlineLoop,
    OnlineRNG,
    device_generator,
    mean_metrics,
    no_accelerator,
    to_device,
)
from alignlab.train.saving import Saving

__all__ = ["Buffer", "Callback", "LossFn", "OnlineRNG", "Stateful", "TrainResult", "Trainer", "device_generator",
           "mean_metrics", "no_accelerator", "seed_everything", "to_device"]


class Stateful(Protocol):
    def state_dict(self) -> dict[str, Any]: ...
    def load_state_dict(self, state: dict[str, Any]) -> None: ...


@dataclass
class TrainResult:
    """What a finished `fit` returns: steps done and the last logged metrics."""

    steps: int
    metrics: dict[str, float] = field(default_factory=dict)
    history: list[dict[str, Any]] = field(default_factory=list)


def seed_everything(seed: int) -> None:
    """Seed python, numpy and torch so runs repeat."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def _lr_lambda(cfg: TrainSettings, total: int) -> Callable[[int], float]:
    def f(step: int) -> float:
        if cfg.warmup_steps > 0 and step < cfg.warmup_steps:
            return (step + 1) / cfg.warmup_steps
        if cfg.lr_schedule == "constant" or total <= 0:
            return 1.0
        frac = min(1.0, (step - cfg.warmup_steps) / max(1, total - cfg.warmup_steps))
        if cfg.lr_schedule == "linear":
            return 1.0 - frac
        if cfg.lr_schedule == "cosine":
            return 0.5 * (1 + math.cos(math.pi * frac))
        raise TrainingError(f"train.lr_schedule: unknown schedule '{cfg.lr_schedule}'")

    return f


def _to_float(v: Any) -> float:
    if isinstance(v, torch.Tensor):
        return float(v.detach().float().mean())
    return float(v)


class Trainer(Saving, OnlineLoop):
    """Optimiser, schedule, logging and checkpoints around one model.

    `recipe` names the method in the final model's card (default: read from the run folder)."""

    def __init__(
        self,
        model: torch.nn.Module,
        cfg: TrainSettings,
        run: RunDir | None = None,
        total_steps: int = -1,
        extra_state: dict[str, Stateful] | None = None,
        accelerator: Accelerator | None = None,
        save_fn: Callable[[torch.nn.Module, Path], None] | None = None,
        recipe: str = "",
    ):
        self.cfg = cfg
        report_to = trackers.wanted(getattr(cfg, "report_to", []))
        trackers.check_installed(report_to)  # before any work, naming the extra to install
        self.accelerator = accelerator or Accelerator(mixed_precision=cfg.mixed_precision, cpu=no_accelerator())
        if self.accelerator.num_processes > 1:
            sharding.close_at_exit()  # a process leaving with its group alive can abort (exit -6)
        self.run = run or RunDir(Path("runs") / "scratch", is_main=self.is_main, lock=False)
        self.run.is_main = self.is_main
        self.total_steps = total_steps
        self.rng = OnlineRNG(cfg.seed)
        self.extra_state = {"rollout_rng": self.rng, **(extra_state or {})}
        self.save_fn = save_fn
        self.recipe = recipe
        self.resumed_at = 0  # the checkpoint step this trainer went on from (0: a fresh start)
        self.tracking = (trackers.Tracking(self.accelerator, report_to, self.run.path, self.tracked_config,
                                           lambda: self.step_count, lambda: self.resumed_at) if report_to else None)
        if self.tracking is not None:
            self.run.sinks.append(self.tracking)
        params = [p for p in model.parameters() if p.requires_grad]
        if not params:
            raise TrainingError("the model has no trainable parameters")
        optimizer = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay,
                                      fused=_fused_adamw_ok(self.accelerator, model, params) or None)
        if sharding.is_deepspeed(self.accelerator):
            sharding.prepare_deepspeed(self.accelerator, cfg)
        if sharding.is_fsdp2(model) and not self.accelerator.is_fsdp2:
            # sharded by the caller (`fully_shard`): FSDP2 reduces its own gradients, no DDP wrapper
            self.model, self.optimizer = model, self.accelerator.prepare(optimizer)
        else:
            self.model, self.optimizer = self.accelerator.prepare(model, optimizer)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, _lr_lambda(cfg, total_steps)
        )
        self.step_count = 0
        self.iteration = 0  # online iterations done (fit_online)
        self.last_checkpoint: Path | None = None
        self.last_good_checkpoint: Path | None = None
        self.unconfirmed: Path | None = None  # saved, good once the next step's loss is calm
        self.divergence = DivergenceWatch(cfg)

    # --- process info ---------------------------------------------------------------
    @property
    def is_main(self) -> bool:
        return self.accelerator.is_main_process

    @property
    def world(self) -> int:
        return self.accelerator.num_processes

    @property
    def rank(self) -> int:
        return self.accelerator.process_index

    @property
    def unwrapped(self) -> torch.nn.Module:
        return self.accelerator.unwrap_model(self.model)

    @property
    def device(self) -> torch.device:
        return self.accelerator.device

    def checkpoint_hint(self) -> str:
        """Names the last good checkpoint (and a newer one no step has run on yet) for errors."""
        hint = f"Last good checkpoint: {self.last_good_checkpoint or 'none yet'}"
        if self.unconfirmed is not None:
            hint += f" (newer, not yet confirmed by a calm step: {self.unconfirmed})"
        return hint

    # --- one optimiser step ---------------------------------------------------------
    def step(self, loss_fn: LossFn, micro_batches: Sequence[Any]) -> dict[str, float]:
        """Accumulate gradients over `micro_batches`, clip, step; return mean metrics."""
        self.model.train()
        sums: dict[str, float] = {}
        n = len(micro_batches)
        for i, batch in enumerate(micro_batches):
            sync = i == n - 1
            # DeepSpeed's engine reduces, clips and steps at the boundary this flag marks
            self.accelerator.sync_gradients = sync
            ctx = sharding.no_grad_sync(self.accelerator, self.model) if not sync and self.world > 1 else _null()
            with ctx:
                loss, metrics = loss_fn(self.model, to_device(batch, self.device))
                if not torch.isfinite(loss.detach()).all():
                    raise TrainingError(
                        f"loss is {float(loss.detach())} at step {self.step_count + 1}; stopped. "
                        + self.checkpoint_hint()
                    )
                self.backward(loss, n)
            sums["loss"] = sums.get("loss", 0.0) + float(loss.detach()) / n
            for k, v in metrics.items():
                sums[k] = sums.get(k, 0.0) + _to_float(v) / n
        grad_norm = self.accelerator.clip_grad_norm_(
            [p for p in self.model.parameters() if p.requires_grad],
            self.cfg.max_grad_norm if self.cfg.max_grad_norm > 0 else float("inf"),
        )
        grad_norm = _norm_value(grad_norm)
        if grad_norm is not None and not math.isfinite(grad_norm):
            raise TrainingError(
                f"gradient norm is {float(grad_norm)} at step {self.step_count + 1}; stopped. "
                + self.checkpoint_hint()
            )
        self.optimizer.step()
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        self.step_count += 1
        if grad_norm is not None:
            sums["grad_norm"] = grad_norm
        sums["lr"] = self.scheduler.get_last_lr()[0]
        sums = self.mean_over_processes(sums)  # identical on every process, so all stop together
        why = self.divergence.update(sums["loss"], self.step_count)
        if why:
            raise TrainingError(f"{why}; stopped. {self.checkpoint_hint()}")
        if self.unconfirmed is not None:  # this loss was computed with the checkpoint's weights
            if not self.divergence.streak:
                self.run.confirm_checkpoint(self.unconfirmed)
                self.last_good_checkpoint = self.unconfirmed
            self.unconfirmed = None
        return sums

    def backward(self, loss: torch.Tensor, n: int) -> None:
        """Backward of one of `n` micro-batches, scaled by 1/n. alignlab divides (the accelerator's
        own accumulation is 1), DeepSpeed too: its engine is told not to divide again, so a short
        last group of an online epoch is weighted right whatever the JSON's accumulation says."""
        if sharding.is_deepspeed(self.accelerator):
            self.accelerator.backward(loss / n, scale_wrt_gas=False)
        else:
            self.accelerator.backward(loss / n)

    def mean_over_processes(self, metrics: dict[str, float]) -> dict[str, float]:
        """Each value averaged over processes (identical on every process afterwards)."""
        if self.world == 1 or not metrics:
            return metrics
        keys = sorted(metrics)
        t = torch.tensor([metrics[k] for k in keys], device=self.accelerator.device)
        t = self.accelerator.reduce(t, reduction="mean")
        return dict(zip(keys, t.tolist()))

    # --- experiment trackers ------------------------------------------------------------
    def tracked_config(self) -> dict[str, Any]:
        """What the trackers store as hyperparameters: RUN/config.yaml, else the train settings."""
        path = self.run.path / "config.yaml"
        data = yaml.safe_load(path.read_text()) if path.is_file() else None
        return data if isinstance(data, dict) else {"train": to_dict(self.cfg)}

    def end_tracking(self) -> None:
        """Finish the `train.report_to` trackers (`save_final` does; records logged later reach
        metrics.jsonl only)."""
        if self.tracking is not None:
            self.tracking.close()
            if self.tracking in self.run.sinks:
                self.run.sinks.remove(self.tracking)

    # --- dataset-driven training -------------------------------------------------------
    def micro_batch_indices(self, n_examples: int, epoch: int) -> list[list[int]]:
        """This process's micro-batches for `epoch`: a seeded permutation, sharded by rank."""
        g = torch.Generator().manual_seed(self.cfg.seed * 1000 + epoch)
        perm = torch.randperm(n_examples, generator=g).tolist()
        b, w = self.cfg.batch_size, self.world
        n_micro = n_examples // (b * w)
        return [perm[(k * w + self.rank) * b : (k * w + self.rank + 1) * b] for k in range(n_micro)]

    def fit(
        self,
        dataset: Sequence[Any],
        collate: Callable[[list[Any]], Any],
        loss_fn: LossFn,
        evaluate: Callable[[], dict[str, float]] | None = None,
        eval_every: int = 0,
        resume: bool = True,
        desc: str = "train",
    ) -> TrainResult:
        """Train over `dataset` for cfg.epochs (or cfg.max_steps), resuming if possible."""
        cfg = self.cfg
        per_epoch = len(self.micro_batch_indices(len(dataset), 0)) // cfg.grad_accum
        if per_epoch == 0:
            raise TrainingError(
                f"{len(dataset)} examples are fewer than one step needs "
                f"(batch_size {cfg.batch_size} x grad_accum {cfg.grad_accum} x {self.world} processes)"
            )
        total = cfg.max_steps if cfg.max_steps > 0 else per_epoch * cfg.epochs
        if self.total_steps <= 0:
            self.total_steps = total
            self.scheduler.lr_lambdas[0] = _lr_lambda(cfg, total)
        if not (resume and self.resume()):
            self.run.start_log()  # nothing resumed: an earlier attempt's lines go (this RunDir's stay)
        history: list[dict[str, Any]] = []
        window: list[dict[str, float]] = []
        from alignlab.progress import progress_bar

        with progress_bar(desc, total=total, completed=self.step_count, enabled=cfg.progress and self.is_main) as bar:
            while self.step_count < total:
                epoch, pos = divmod(self.step_count, per_epoch)
                micro = self.micro_batch_indices(len(dataset), epoch)
                start = pos * cfg.grad_accum
                batches = [
                    collate([dataset[i] for i in micro[start + j]]) for j in range(cfg.grad_accum)
                ]
                metrics = self.step(loss_fn, batches)
                window.append(metrics)
                bar.advance(loss=metrics["loss"])
                if self.step_count % cfg.log_every == 0 or self.step_count == total:
                    rec = {"step": self.step_count, "epoch": epoch}
                    rec.update({k: sum(m[k] for m in window) / len(window) for k in window[0]})
                    window = []
                    if evaluate is not None and eval_every > 0 and self.step_count % eval_every == 0:
                        rec.update(evaluate())
                    self.run.log(rec)
                    history.append(rec)
                if cfg.save_every > 0 and self.step_count % cfg.save_every == 0:
                    self.save_checkpoint()
        final: dict[str, float] = {}
        if evaluate is not None:
            final = evaluate()
            self.run.log({"step": self.step_count, "final": True, **final})
        last = history[-1] if history else {}
        return TrainResult(self.step_count, {**last, **final}, history)


def _fused_adamw_ok(accelerator: Accelerator, model: torch.nn.Module, params: list[torch.nn.Parameter]) -> bool:
    """Whether AdamW may run fused (one kernel over all parameters: ~4× faster steps on CPU than the
    per-tensor loop): plain floating tensors on CPU/CUDA, not sharded by FSDP or DeepSpeed."""
    from accelerate.utils import DistributedType

    if accelerator.distributed_type in (DistributedType.FSDP, DistributedType.DEEPSPEED) or sharding.is_fsdp2(model):
        return False
    return all(type(p) is torch.nn.Parameter and p.is_floating_point() and p.device.type in ("cpu", "cuda")
               for p in params)


def _norm_value(norm: Any) -> float | None:
    """A gradient norm as a float: whole when FSDP2 returns it as a DTensor, None when unknown."""
    if norm is None:
        return None
    if hasattr(norm, "full_tensor"):
        norm = norm.full_tensor()
    return float(norm)


class _null:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        return None
