"""What the trainer needs to know about sharded training: FSDP2 (parameters are DTensors, whether
accelerate's FSDP plugin sharded them or the caller did with `fully_shard`) and DeepSpeed (ZeRO
partitions live in the engine, and the engine owns gradient accumulation).

Under sharding no process holds the whole model, so saving gathers first: every process joins
the gather (a collective), the main process writes. Under DeepSpeed, alignlab's batch size,
accumulation and clipping are written into the engine's config (`fill_deepspeed_config`).
"""

from __future__ import annotations

import atexit
import contextlib
import functools
from collections.abc import Iterator
from typing import Any, NoReturn

import torch
from accelerate import Accelerator
from accelerate.utils import DistributedType

from alignlab.config import TrainSettings
from alignlab.errors import ConfigError


def is_fsdp2(model: torch.nn.Module) -> bool:
    """True when the model's parameters are DTensor shards (FSDP2 `fully_shard`)."""
    from torch.distributed.tensor import DTensor

    return any(isinstance(p, DTensor) for p in model.parameters())


def is_deepspeed(accelerator: Accelerator) -> bool:
    """True when accelerate runs the model in a DeepSpeed engine."""
    return accelerator.distributed_type == DistributedType.DEEPSPEED


def local(t: torch.Tensor) -> torch.Tensor:
    """This process's part of `t` (the tensor itself unless it is a DTensor shard)."""
    return t.to_local() if hasattr(t, "to_local") else t


@contextlib.contextmanager
def no_grad_sync(accelerator: Accelerator, model: torch.nn.Module) -> Iterator[None]:
    """Gradients of the backward passes inside stay local (accumulation before the last micro-batch):
    FSDP2 skips its reduce-scatter, DDP its all-reduce; DeepSpeed decides by the boundary flag."""
    if is_deepspeed(accelerator):
        yield
    elif hasattr(model, "set_requires_gradient_sync"):  # FSDP2, however it was sharded
        model.set_requires_gradient_sync(False)
        try:
            yield
        finally:
            model.set_requires_gradient_sync(True)
    else:
        with accelerator.no_sync(model):
            yield


def full_model_state(accelerator: Accelerator, model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """The whole model's state dict on the CPU, gathered from the shards. A collective under FSDP2
    and ZeRO-3: every process must call it; processes other than the main one may get nothing.
    Names are the unwrapped model's."""
    if is_fsdp2(model) and not accelerator.is_fsdp2:  # sharded by the caller, not by accelerate
        from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

        return get_model_state_dict(model, options=StateDictOptions(full_state_dict=True, cpu_offload=True))
    return accelerator.get_state_dict(model, unwrap=True) or {}  # ZeRO-3 gives None off the main process


def full_optimizer_state(model: torch.nn.Module, optimizer: torch.optim.Optimizer) -> dict[str, Any]:
    """The FSDP2 optimizer state gathered on the CPU of the main process into one dict keyed by
    parameter names (a collective; other processes get an empty dict), so a checkpoint resumes on
    any number of processes."""
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_optimizer_state_dict

    options = StateDictOptions(full_state_dict=True, cpu_offload=True)
    return get_optimizer_state_dict(model, optimizer, options=options)


def load_full_state(model: torch.nn.Module, optimizer: torch.optim.Optimizer | None,
                    weights: dict[str, torch.Tensor] | None, optim_state: dict[str, Any] | None,
                    broadcast: bool = False) -> list[str]:
    """Put full (gathered) weights and optimizer state back into a model: into an FSDP2 model's
    shards with `broadcast` (a collective: the main process passes the full dicts, the others
    empty ones, so only one process reads the files), or into a plain model; returns the weight
    names the model does not have."""
    from torch.distributed.checkpoint.state_dict import (
        StateDictOptions,
        set_model_state_dict,
        set_optimizer_state_dict,
    )

    unexpected: list[str] = []
    if weights is not None:
        options = StateDictOptions(full_state_dict=True, strict=False, broadcast_from_rank0=broadcast)
        unexpected = list(set_model_state_dict(model, weights, options=options).unexpected_keys)
    if optimizer is not None and optim_state is not None:
        options = StateDictOptions(full_state_dict=True, broadcast_from_rank0=broadcast)
        set_optimizer_state_dict(model, optimizer, optim_state, options=options)
    return unexpected


def deepspeed_values(cfg: TrainSettings, world: int) -> dict[str, Any]:
    """The DeepSpeed config entries alignlab decides: micro-batch = train.batch_size, accumulation
    = train.grad_accum, train_batch_size = batch_size x grad_accum x processes, clipping =
    train.max_grad_norm (0: off)."""
    return {
        "train_micro_batch_size_per_gpu": cfg.batch_size,
        "gradient_accumulation_steps": cfg.grad_accum,
        "train_batch_size": cfg.batch_size * cfg.grad_accum * world,
        "gradient_clipping": float(cfg.max_grad_norm) if cfg.max_grad_norm > 0 else 0.0,
    }


_TRAIN_KEY = {"train_micro_batch_size_per_gpu": "train.batch_size", "gradient_accumulation_steps": "train.grad_accum",
              "train_batch_size": "train.batch_size x train.grad_accum x processes",
              "gradient_clipping": "train.max_grad_norm"}


def fill_deepspeed_config(ds_config: dict[str, Any], values: dict[str, Any]) -> dict[str, Any]:
    """Write `values` into a DeepSpeed config in place where it says "auto" or is silent; a number
    there that disagrees is a ConfigError naming both keys (alignlab, not the JSON file, owns them)."""
    for key, want in values.items():
        have = ds_config.get(key, "auto")
        if have == "auto" or have is None:
            ds_config[key] = want
        elif float(have) != float(want):
            raise ConfigError(f"DeepSpeed config '{key}' is {have} but {_TRAIN_KEY[key]} gives {want}: "
                              f"set it to \"auto\" in the DeepSpeed JSON (alignlab fills it in)")
    return ds_config


def prepare_deepspeed(accelerator: Accelerator, cfg: TrainSettings) -> None:
    """Hand alignlab's batch size, accumulation and clipping to accelerate's DeepSpeed plugin
    (before `prepare` builds the engine)."""
    if getattr(accelerator, "deepspeed_engine_wrapped", None) is not None:
        raise ConfigError("this Accelerator already drives a DeepSpeed engine (its backward would step that one); "
                          "give each Trainer its own Accelerator")
    plugin = accelerator.state.deepspeed_plugin
    fill_deepspeed_config(plugin.deepspeed_config, deepspeed_values(cfg, accelerator.num_processes))
    accelerator.gradient_accumulation_steps = cfg.grad_accum


def group_is_up() -> bool:
    """True when this process belongs to a torch.distributed group of more than one process."""
    import torch.distributed as dist

    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def close_process_group() -> None:
    """Leave torch.distributed: destroy the group, no barrier (at exit this process's
    collectives are done). No-op without a group. Destroying is not always enough: see `leave`."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


@functools.cache
def close_at_exit() -> None:
    """Close the process group when the interpreter exits (registered once per process), called
    where alignlab brings a group up: the Trainer's Accelerator and `default_device`'s
    PartialState under `accelerate launch`, whether run from the CLI or from Python."""
    atexit.register(close_process_group)


def leave(code: int = 0) -> NoReturn:
    """End a multi-process run's process: run the exit hooks (they close the group), flush, and
    exit without interpreter teardown.

    Why: a group that FSDP2 or DDP used outlives `destroy_process_group` (measured: its gloo threads
    still run after destroy + gc with the model gone; something inside torch keeps the group), so
    they are still running while the interpreter is torn down, and that aborts at random ("terminate called without an active exception",
    exit -6) after all work is written. The `alignlab` command ends this way whenever a group is
    up; a script of your own under `accelerate launch` can end with `leave()` too."""
    import logging
    import os
    import sys

    atexit._run_exitfuncs()  # what a normal exit would run: trackers, close_process_group, ...
    logging.shutdown()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    os._exit(code)
