"""Checkpoints and the final model (`Saving`, a part of `alignlab.train.loop.Trainer`).

A checkpoint is RUN/checkpoints/step-N: `trainable.safetensors` (trainable weights, whole) and
`trainer_state.pt` (optimizer, schedule, RNG, method state). Under sharding (FSDP2, DeepSpeed
ZeRO-3) every process joins the gather and the main process writes, so the files hold whole
tensors (`alignlab.train.sharding`); FSDP2's optimizer state is stored gathered and keyed by
parameter name, DeepSpeed's in the engine's own folder (`deepspeed/`). A write that fails (full
disk, quota, read-only) is a TrainingError naming the path; the half-written folder goes and
the last good checkpoint (or final model) stays.
"""

from __future__ import annotations

import inspect
import os
import random
import re
import shutil
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from alignlab.errors import TrainingError, describe_os_error
from alignlab.runs import UNCONFIRMED
from alignlab.train import sharding
from alignlab.train.guards import non_finite

DEEPSPEED_DIR, DEEPSPEED_TAG = "deepspeed", "engine"


def write_failure(path: Path, e: BaseException) -> str:
    """Why writing `path` failed, in one line: the OS reason (torch and safetensors hide it in a
    RuntimeError's text: "os error 28"), and a full-disk hint when the file system has no room."""
    if isinstance(e, OSError):
        return describe_os_error(e, str(path))
    m = re.search(r"os error (\d+)", str(e))
    if m:
        return describe_os_error(OSError(int(m.group(1)), os.strerror(int(m.group(1))), str(path)))
    reason = f"{path}: {type(e).__name__}: {str(e).strip()[:200]}"
    try:
        free = shutil.disk_usage(next(p for p in [path, *path.parents] if p.exists())).free
    except (OSError, StopIteration):
        return reason
    return reason + (f" (only {free} bytes free there: the disk is likely full)" if free < 2**20 else "")


def publish(tmp: Path, out: Path) -> None:
    """Move the finished folder `tmp` to `out`: a rename when `out` is new, else file by file
    (each replaced atomically), so other files a user keeps in `out` are never deleted."""
    if not out.exists():
        os.replace(tmp, out)
        return
    for item in tmp.iterdir():
        target = out / item.name
        if target.is_dir() and not item.is_dir():
            shutil.rmtree(target)
        elif item.is_dir() and target.exists():
            shutil.rmtree(target) if target.is_dir() else target.unlink()
        os.replace(item, target)
    tmp.rmdir()


_TORCH_WRITE = re.compile(r"inline_container|PytorchStreamWriter|file write failed|os error \d+")


def _write_errors() -> tuple[type[BaseException], ...]:
    """What a failed write raises: OSError, safetensors' error, and the RuntimeError of torch's zip
    writer (told apart from other RuntimeErrors by `is_write_failure`)."""
    from safetensors import SafetensorError

    return OSError, RuntimeError, SafetensorError


def is_write_failure(e: BaseException) -> bool:
    """True for an error of the file system, not a bug: any OSError or safetensors error, and
    torch's RuntimeError from its zip writer (a full disk reads "unexpected pos ..." there)."""
    return not isinstance(e, RuntimeError) or bool(_TORCH_WRITE.search(str(e)))


class Saving:
    """Checkpoint, resume and final-model saving; mixed into `Trainer`, whose accelerator, model,
    optimizer, scheduler, run, counters and `checkpoint_hint` it uses."""

    save_fn: Callable[..., None] | None

    @property
    def sharded(self) -> bool:
        """True when no process holds the whole model (FSDP2 shards or a DeepSpeed engine)."""
        return sharding.is_fsdp2(self.model) or sharding.is_deepspeed(self.accelerator)

    def trainable_state(self) -> dict[str, torch.Tensor]:
        """Trainable parameters only, whole and on the CPU (frozen base weights are reloaded from the
        source). A collective under sharding: every process calls it; the main one gets the tensors."""
        names = [n for n, p in self.unwrapped.named_parameters() if p.requires_grad]
        if not self.sharded:
            params = dict(self.unwrapped.named_parameters())
            return {n: params[n].detach().cpu().clone().contiguous() for n in names}
        full = sharding.full_model_state(self.accelerator, self.model)
        return {n: full[n].detach().cpu().contiguous() for n in names if n in full}

    def agree(self, failed: bool) -> bool:
        """True when `failed` holds on any process (every process gets the same answer)."""
        if self.world == 1:
            return failed
        return self.mean_over_processes({"failed": float(failed)})["failed"] > 0

    def check_finite(self) -> None:
        """TrainingError unless every trainable parameter and optimizer state tensor is finite
        (each process checks its shard; all stop together)."""
        named = [(n, p) for n, p in self.model.named_parameters() if p.requires_grad]
        bad = non_finite((n, sharding.local(p)) for n, p in named)
        if not bad:
            names = {id(p): n for n, p in named}
            opt = getattr(self.optimizer, "optimizer", self.optimizer)
            bad = non_finite((f"optimizer state '{k}' of {names.get(id(p), '?')}", sharding.local(v))
                             for p, st in opt.state.items() for k, v in st.items() if isinstance(v, torch.Tensor))
        if self.agree(bool(bad)):
            more = f" and {len(bad) - 3} more" if len(bad) > 3 else ""
            what = ", ".join(bad[:3]) + more if bad else "tensors on another process"
            raise TrainingError(f"not saving a checkpoint at step {self.step_count}: {what} "
                                f"hold NaN/inf (lower train.lr?); stopped. {self.checkpoint_hint()}")

    def optimizer_state(self) -> tuple[str, dict[str, Any] | None]:
        """(format, state): 'local' (this process's optimizer.state_dict), 'full' (FSDP2, gathered,
        keyed by name: a collective) or 'deepspeed' (in the engine's folder, none here)."""
        if sharding.is_deepspeed(self.accelerator):
            return "deepspeed", None
        if sharding.is_fsdp2(self.model):
            opt = getattr(self.optimizer, "optimizer", self.optimizer)
            return "full", sharding.full_optimizer_state(self.model, opt)
        return "local", self.optimizer.state_dict()

    def save_checkpoint(self) -> Path | None:
        """Write a complete checkpoint atomically (temp folder, then rename) after checking the
        weights are finite. It is "good" (`last_good_checkpoint`, never rotated away) once the
        next step's loss, computed with its weights, is calm; one taken during a loss spike never is."""
        self.check_finite()
        self.accelerator.wait_for_everyone()
        weights = self.trainable_state() if self.is_main or self.sharded else {}
        fmt, optim = self.optimizer_state()
        tmp = self.run.begin_checkpoint(self.step_count) if self.is_main else None
        error: BaseException | None = None
        if fmt == "deepspeed":  # every process writes its partition into the engine's folder
            self.accelerator.wait_for_everyone()
            tmp = tmp or self.run.checkpoint_tmp(self.step_count)
            try:
                self.model.save_checkpoint(str(tmp / DEEPSPEED_DIR), tag=DEEPSPEED_TAG)
            except _write_errors() as e:
                if not is_write_failure(e):
                    raise
                error = e
        if self.is_main and error is None:
            try:
                save_file(weights, str(tmp / "trainable.safetensors"))
                torch.save(self.trainer_state(fmt, optim), tmp / "trainer_state.pt")
            except _write_errors() as e:
                if not is_write_failure(e):
                    raise
                error = e
        if self.agree(error is not None):
            self.abandon_checkpoint(tmp, error)
        if not self.is_main:
            return None
        spike = self.divergence.suspect
        self.last_checkpoint = self.run.commit_checkpoint(
            tmp, self.step_count, keep=self.cfg.keep_checkpoints, suspect=spike or UNCONFIRMED
        )
        self.unconfirmed = None if spike else self.last_checkpoint
        return self.last_checkpoint

    def trainer_state(self, fmt: str, optim: dict[str, Any] | None) -> dict[str, Any]:
        """Everything but the weights that exact resume needs."""
        return {
            "step": self.step_count,
            "iteration": self.iteration,
            "optimizer_format": fmt,
            "optimizer": optim,
            "scheduler": self.scheduler.state_dict(),
            "rng": {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()},
            "extra": {k: v.state_dict() for k, v in self.extra_state.items()},
            "divergence": self.divergence.state_dict(),
        }

    def abandon_checkpoint(self, tmp: Path | None, error: BaseException | None) -> None:
        """Remove a half-written checkpoint and stop every process, naming the path and the reason."""
        if self.is_main and tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)
        where = self.run.checkpoint_dir(self.step_count)
        why = write_failure(tmp or where, error) if error is not None else "another process failed to write its part"
        raise TrainingError(f"could not write checkpoint {where}: {why}; the partial checkpoint was removed "
                            f"and training stopped. {self.checkpoint_hint()}") from error

    def resume(self, checkpoint: Path | None = None) -> bool:
        """Load the latest (or given) checkpoint; False when there is none."""
        ckpt = checkpoint or self.run.latest_checkpoint()
        if ckpt is None:
            return False
        # under FSDP2 only the main process reads the tensors and broadcasts them (one copy in RAM)
        reads = self.is_main or not sharding.is_fsdp2(self.model)
        weights = load_file(str(ckpt / "trainable.safetensors")) if reads else {}
        state = torch.load(ckpt / "trainer_state.pt", weights_only=False, mmap=True)
        self.load_weights_and_optimizer(ckpt, weights, state.get("optimizer_format", "local"), state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        random.setstate(state["rng"]["python"])
        np.random.set_state(state["rng"]["numpy"])
        torch.set_rng_state(state["rng"]["torch"])
        for k, v in self.extra_state.items():
            if k in state["extra"]:
                v.load_state_dict(state["extra"][k])
        if "divergence" in state:
            self.divergence.load_state_dict(state["divergence"])
        self.step_count = self.resumed_at = int(state["step"])
        self.iteration = int(state.get("iteration", 0))
        self.last_checkpoint = ckpt
        self.last_good_checkpoint = self.run.last_good_checkpoint()
        self.unconfirmed = ckpt if self.run.checkpoint_note(ckpt) == UNCONFIRMED else None
        self.run.truncate_metrics(self.step_count)
        return True

    def load_weights_and_optimizer(self, ckpt: Path, weights: dict[str, torch.Tensor], fmt: str,
                                   optim: dict[str, Any] | None) -> None:
        """Put a checkpoint's weights and optimizer state into the model, however it is laid out now."""
        opt = getattr(self.optimizer, "optimizer", self.optimizer)
        if sharding.is_deepspeed(self.accelerator):
            if fmt != "deepspeed":
                raise TrainingError(f"{ckpt}: written without DeepSpeed; resume it the way it was launched")
            self.model.load_checkpoint(str(ckpt / DEEPSPEED_DIR), tag=DEEPSPEED_TAG, load_module_strict=False,
                                       load_lr_scheduler_states=False)
            return
        if fmt == "deepspeed":
            raise TrainingError(f"{ckpt}: its optimizer state is DeepSpeed's; resume it under DeepSpeed")
        if sharding.is_fsdp2(self.model):
            if fmt != "full":
                raise TrainingError(f"{ckpt}: written without FSDP (optimizer state per parameter id); "
                                    "resume it the way it was launched")
            unexpected = sharding.load_full_state(self.model, opt, weights, optim if self.is_main else {},
                                                  broadcast=self.world > 1)
        else:
            unexpected = self.unwrapped.load_state_dict(weights, strict=False).unexpected_keys
            if fmt == "full":  # gathered under FSDP2, keyed by name: loads into a plain model too
                sharding.load_full_state(self.unwrapped, opt, None, optim)
            else:
                self.optimizer.load_state_dict(optim)
        if unexpected:
            raise TrainingError(f"{ckpt}: checkpoint has unknown weights {list(unexpected)[:3]}")

    def save_final(self, tokenizer=None, out: Path | None = None, card: bool = True) -> Path:
        """Save the trained model in transformers/PEFT format under RUN/final, with its tokenizer
        when given (so the folder loads back with `from_pretrained` alone) and, when `card`, a
        model card README.md (`alignlab.model_card`); then finish the experiment trackers.

        Written to a temp folder, then renamed: a failed write leaves the old folder and the
        checkpoints as they were. Under sharding the weights are gathered first (every process)."""
        out = Path(out or (self.run.path / "final"))
        self.accelerator.wait_for_everyone()
        state = sharding.full_model_state(self.accelerator, self.model) if self.sharded else None
        tmp = out.parent / f".tmp-{out.name}"
        error: BaseException | None = None
        if self.is_main:
            try:
                if tmp.exists():
                    shutil.rmtree(tmp)
                tmp.mkdir(parents=True)
                self.write_model(tmp, state)
                if tokenizer is not None:
                    tokenizer.save_pretrained(tmp)
            except _write_errors() as e:
                if not is_write_failure(e):
                    raise
                error = e
        if self.agree(error is not None):
            if self.is_main:
                shutil.rmtree(tmp, ignore_errors=True)
            why = write_failure(tmp, error) if error is not None else "the main process failed to write it"
            raise TrainingError(f"could not save the final model to {out}: {why}. Nothing there was changed; "
                                f"{self.checkpoint_hint()}") from error
        if self.is_main:
            publish(tmp, out)
            if card:
                self.write_card(out)
        self.end_tracking()
        return out

    def write_model(self, out: Path, state: dict[str, torch.Tensor] | None) -> None:
        """The model into `out` by `save_fn` or `save_pretrained`; `state` (gathered whole weights
        under sharding) replaces the model's own shards."""
        if self.save_fn is None:
            self.unwrapped.save_pretrained(out, safe_serialization=True, **({"state_dict": state} if state else {}))
        elif state is None:
            self.save_fn(self.unwrapped, out)
        elif "state_dict" in inspect.signature(self.save_fn).parameters:
            self.save_fn(self.unwrapped, out, state_dict=state)
        else:
            raise TrainingError("this recipe's save function cannot take gathered weights (a `state_dict` "
                                "argument), so it cannot save a sharded (FSDP / ZeRO-3) model")

    def write_card(self, out: Path) -> None:
        """out/README.md, the model card; a card that cannot be written is a warning, not a lost run."""
        from alignlab.model_card import write_model_card

        try:
            write_model_card(out, self.run.path, recipe=self.recipe)
        except (OSError, ValueError) as e:
            warnings.warn(f"{out}: model card not written ({type(e).__name__}: {e})", stacklevel=2)
