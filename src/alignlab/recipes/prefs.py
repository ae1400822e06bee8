"""Preference-optimisation recipe (`alignlab prefs`): DPO, IPO or Cal-DPO (SPEC §2).

`preference.loss: dpo | ipo | cal_dpo` picks the method (the loss itself lives in
`alignlab.losses.preference`; batches are scored by `alignlab.scoring.pair_logps`); everything else is shared. The reference is
`precomputed` (log-probs computed once before training, cached in the run folder, the
reference freed — the default), a frozen `copy` held in memory, or the base weights with
the LoRA `adapter` disabled. Logged per step: loss, chosen/rejected implicit rewards (β·h),
margin, accuracy; held-out the same, before training (step 0) and after.

Speed (`packing: true`, the default for sdpa/eager attention): each pair is laid out once as
[prompt, chosen, rejected] with a block attention mask, so the shared prompt is computed once
for both responses, pairs are packed into rows with almost no padding, attention runs per pair
(`alignlab.models.segment_attention`, sdpa models; otherwise the row width minimises matmul +
masked-attention work) and the LM head runs only at the scored positions. With `packing: false`
(or another attention kernel) prompts are left-padded and responses right-padded so all
responses start at one column (`logits_to_keep` trims the head there).
"""

from __future__ import annotations

import argparse
import hashlib
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from alignlab.config import ModelSettings, TrainSettings, bounded, recheck
from alignlab.data.preference import read_preferences, split_records
from alignlab.data.tables import ColumnMap
from alignlab.errors import ConfigError, DataError
from alignlab.lazy import no_grad
from alignlab.method_settings import PreferenceLossSettings
from alignlab.recipe import RunResult, default_run_dir, register_recipe
from alignlab.runs import RunDir

if TYPE_CHECKING:
    import torch

    from alignlab.data.preference_batches import EncodedPair
    from alignlab.scoring import PairLogps
    from alignlab.train.loop import Trainer


@dataclass
class PrefsConfig:
    """Preference optimisation (DPO / IPO / Cal-DPO) of a causal LM on chosen/rejected pairs."""

    model: ModelSettings = field(default_factory=ModelSettings)
    preference: PreferenceLossSettings = field(default_factory=PreferenceLossSettings)
    length_normalize: bool = False  # use mean (not summed) token log-probs in h
    packing: bool = True  # one [prompt, chosen, rejected] layout per pair, pairs packed in rows (sdpa/eager)
    reference: Literal["precomputed", "copy", "adapter"] = "precomputed"
    reference_model: str = ""  # empty: the policy's starting weights
    train: TrainSettings = field(default_factory=lambda: TrainSettings(lr=5e-5, batch_size=8, epochs=1))
    data: str = ""  # prompt/chosen/rejected, HH-RLHF dialogues or the ranking export: JSONL/JSON/CSV/parquet or dataset folder
    eval_data: str = ""  # held-out file or folder; empty = split eval_fraction of data by tree/prompt
    data_columns: ColumnMap = field(default_factory=ColumnMap)  # input column of each field; "" = same name
    data_split: str = "train"  # split of a dataset folder given as data
    eval_split: str = "test"  # split of a dataset folder given as eval_data
    eval_fraction: float = bounded(0.1, ge=0, lt=1)
    split_seed: int = 0
    pairs: Literal["all", "best_vs_rest", "best_vs_worst"] = "all"  # from ranking rows
    max_length: int = bounded(512, ge=2)
    max_prompt_length: int = bounded(256, ge=1)  # < max_length
    truncation: Literal["truncate", "error"] = "truncate"  # truncate (counted) | error
    on_bad_row: Literal["error", "skip"] = "error"  # skip: counted and reported
    eval_every: int = bounded(0, ge=0)  # optimiser steps between held-out evaluations (0: before and after only)
    eval_batch_size: int = bounded(16, ge=1)
    output_dir: str = ""

    def check(self, where: str) -> None:
        """Cross-field rules: the prompt budget leaves room for a response; the adapter reference
        needs LoRA and no separate reference model."""
        if self.max_prompt_length >= self.max_length:
            raise ConfigError(f"{where}.max_prompt_length: must be < max_length ({self.max_length}), "
                              f"got {self.max_prompt_length}")
        if self.reference == "adapter" and not self.model.lora.enabled:
            raise ConfigError(f"{where}.reference: 'adapter' needs model.lora.enabled: true "
                              "(the base weights are the reference)")
        if self.reference == "adapter" and self.reference_model:
            raise ConfigError(f"{where}.reference: 'adapter' uses the base weights; leave reference_model empty")


# --- batches and reference log-probs -------------------------------------------------------


def pair_collator(model: torch.nn.Module, pad_id: int, packing: bool = True):
    """The batch layout for `model`: packed pairs when its attention takes a custom mask."""
    from alignlab.data.preference_batches import collate_pairs, collate_pairs_packed
    from alignlab.scoring import packed_row_layout, packing_supported

    if packing and packing_supported(model):
        weight, width = packed_row_layout(model)  # row width: least matmul + attention work
        return lambda items: collate_pairs_packed(items, pad_id, weight, width)
    return lambda items: collate_pairs(items, pad_id)


@no_grad
def _logps_of(model: torch.nn.Module, items: Sequence[EncodedPair], pad_id: int, batch_size: int,
              length_normalize: bool, disable_adapter: bool = False, packing: bool = True) -> torch.Tensor:
    """[N, 2] (chosen, rejected) log-probs of `items` in order, no gradient."""
    import torch

    from alignlab.scoring import core_module, pair_logps
    from alignlab.train.loop import to_device

    core = core_module(model)
    was = core.training
    core.eval()
    collate = pair_collator(core, pad_id, packing)
    out = []
    device = next(core.parameters()).device
    for i in range(0, len(items), batch_size):
        batch = to_device(collate(items[i:i + batch_size]), device)
        if disable_adapter:
            with core.disable_adapter():
                lp = pair_logps(core, batch, length_normalize)
        else:
            lp = pair_logps(core, batch, length_normalize)
        out.append(lp.stacked().float().cpu())
    core.train(was)
    return torch.cat(out) if out else torch.zeros(0, 2)


def _items_key(items: Sequence[EncodedPair], extra: str) -> str:
    h = hashlib.sha256(extra.encode())
    for e in items:
        h.update(repr((e.prompt_ids, e.chosen_ids, e.rejected_ids)).encode())
    return h.hexdigest()[:16]


def rank_share(n: int, world: int, rank: int) -> tuple[list[int], int]:
    """(indices, real count): the items rank, rank+world, … of `n`, padded with repeats of item 0
    to ceil(n / world) so every process runs the same number of batches (a sharded model's forward
    is a collective: uneven shares would deadlock); the first `real` indices are this rank's own."""
    own = list(range(rank, n, world))
    size = -(-n // world) if n else 0
    return own + [0] * (size - len(own)), len(own)


def precompute_reference(model: torch.nn.Module, items: Sequence[EncodedPair], pad_id: int, batch_size: int,
                         length_normalize: bool, trainer: Trainer | None = None, disable_adapter: bool = False,
                         cache: Any = None, key: str = "", packing: bool = True) -> None:
    """Fill `ref_chosen` / `ref_rejected` of every item, once: shards over processes, gathers,
    and reuses a cache file (`cache`, keyed by data + reference) when it matches."""
    import torch

    if cache is not None and cache.exists():
        saved = torch.load(cache, weights_only=True)
        if saved.get("key") == key and saved["logps"].shape[0] == len(items):
            _assign(items, saved["logps"])
            return
    world = trainer.world if trainer is not None else 1
    rank = trainer.rank if trainer is not None else 0
    mine, real = rank_share(len(items), world, rank)
    lp = _logps_of(model, [items[i] for i in mine], pad_id, batch_size, length_normalize, disable_adapter,
                   packing)[:real]
    mine = mine[:real]
    full = torch.zeros(len(items), 2)
    if world > 1:
        import torch.distributed as dist

        parts: list[Any] = [None] * world
        dist.all_gather_object(parts, (mine, lp))
        for idx, vals in parts:
            full[idx] = vals
    else:
        full[mine] = lp
    _assign(items, full)
    if cache is not None and (trainer is None or trainer.is_main):
        tmp = cache.with_name(cache.name + ".tmp")
        torch.save({"key": key, "logps": full}, tmp)
        tmp.replace(cache)


def _assign(items: Sequence[EncodedPair], logps: torch.Tensor) -> None:
    for e, (c, r) in zip(items, logps.tolist()):
        e.ref_chosen, e.ref_rejected = c, r


# --- loss and evaluation --------------------------------------------------------------------


def make_loss_fn(cfg: PrefsConfig, ref_model: torch.nn.Module | None = None):
    """loss_fn(model, batch) for the shared loop; reference from the batch, a copy, or the base weights."""
    import torch

    from alignlab.scoring import PairLogps, core_module, pair_logps


    def reference(model: torch.nn.Module, batch: dict[str, Any]) -> PairLogps:
        if "ref_logps" in batch and cfg.reference == "precomputed":
            return PairLogps.from_halves(batch["ref_logps"])
        with torch.no_grad():
            if cfg.reference == "adapter":
                core = core_module(model)
                with core.disable_adapter():
                    return pair_logps(core, batch, cfg.length_normalize)
            if ref_model is None:
                raise ConfigError("reference: no reference model and no precomputed log-probs in the batch")
            return pair_logps(ref_model, batch, cfg.length_normalize)

    def loss_fn(model: torch.nn.Module, batch: dict[str, Any]) -> tuple[torch.Tensor, dict[str, Any]]:
        pol = pair_logps(model, batch, cfg.length_normalize)
        ref = reference(model, batch)
        return cfg.preference(pol.chosen, pol.rejected, ref.chosen.to(pol.chosen.dtype), ref.rejected.to(pol.chosen.dtype))

    return loss_fn


@no_grad
def evaluate_pairs(model: torch.nn.Module | None, items: Sequence[EncodedPair], pad_id: int, cfg: PrefsConfig,
                   prefix: str = "eval_") -> dict[str, float]:
    """Held-out loss, implicit-reward accuracy, chosen/rejected rewards and margin (items carry ref
    log-probs); `model=None` scores the reference itself (h = 0)."""
    import torch

    if not items:
        return {}
    ref = torch.tensor([[e.ref_chosen, e.ref_rejected] for e in items])
    pol = ref if model is None else _logps_of(model, items, pad_id, cfg.eval_batch_size, cfg.length_normalize,
                                              packing=cfg.packing)
    loss, m = cfg.preference(pol[:, 0], pol[:, 1], ref[:, 0], ref[:, 1])
    out = {f"{prefix}loss": float(loss)}
    out.update({f"{prefix}{k}": float(v) for k, v in m.items() if not k.startswith("logps")})
    return out


# --- the recipe -----------------------------------------------------------------------------


def _check(cfg: PrefsConfig) -> None:
    """The load-time checks again (for a config built in code) and the required data file."""
    recheck(cfg)
    if not cfg.data:
        raise ConfigError("data: give a data file or dataset folder of preference pairs or ranking examples")


def _reward_figure(run_dir: RunDir, title: str) -> Any:
    from alignlab.plots import line_plot

    recs = [r for r in run_dir.metrics() if "chosen_reward" in r and r.get("step", 0) > 0]
    if not recs:
        return None
    steps = [r["step"] for r in recs]
    return line_plot({"chosen reward (β·h_w)": (steps, [r["chosen_reward"] for r in recs]),
                      "rejected reward (β·h_l)": (steps, [r["rejected_reward"] for r in recs])},
                     run_dir.path / "implicit_rewards.png", title=title, ylabel="implicit reward", hline=0.0)


def run(cfg: PrefsConfig) -> RunResult:
    """Train with DPO / IPO / Cal-DPO; returns the run, held-out metrics before/after and time per step."""
    from alignlab.data.preference_batches import encode_pairs
    from alignlab.models import load_model
    from alignlab.train.loop import Trainer, seed_everything

    _check(cfg)
    seed_everything(cfg.train.seed)
    run_dir = RunDir(cfg.output_dir or default_run_dir(cfg.preference.loss))
    model, tok = load_model(cfg.model)
    pairs, read_report = read_preferences(cfg.data, cfg.on_bad_row, cfg.pairs, cfg.data_columns, cfg.data_split)
    if cfg.eval_data:
        train_recs, (eval_recs, _) = pairs, read_preferences(cfg.eval_data, cfg.on_bad_row, cfg.pairs,
                                                              cfg.data_columns, cfg.eval_split)
    else:
        train_recs, eval_recs = split_records(pairs, cfg.eval_fraction, cfg.split_seed)
    if not train_recs:
        raise DataError(f"{cfg.data}: no training pairs left after the validation split")
    train_items, stats = encode_pairs(tok, train_recs, cfg.max_length, cfg.max_prompt_length, cfg.truncation)
    eval_items, eval_stats = encode_pairs(tok, eval_recs, cfg.max_length, cfg.max_prompt_length, cfg.truncation)
    trainer = Trainer(model, cfg.train, run_dir)
    run_dir.save_config(cfg)
    pad = tok.pad_token_id
    device = trainer.accelerator.device

    # The reference: a separate model (copy / reference_model), or the starting policy itself.
    ref_model = None
    if cfg.reference == "copy" or cfg.reference_model:
        ref_name = cfg.reference_model or cfg.model.name_or_path
        ref_model, _ = load_model(ModelSettings(name_or_path=ref_name, dtype=cfg.model.dtype), trainable=False)
        ref_model.to(device)
    ref_for_pre = ref_model if ref_model is not None else trainer.unwrapped
    lora_base = ref_model is None and cfg.model.lora.enabled
    key_extra = f"{cfg.reference_model or cfg.model.name_or_path}|{cfg.length_normalize}|{cfg.max_length}"
    if cfg.reference == "precomputed":
        precompute_reference(ref_for_pre, train_items, pad, cfg.eval_batch_size, cfg.length_normalize, trainer,
                             lora_base, run_dir.path / "reference_logps.pt", _items_key(train_items, key_extra),
                             cfg.packing)
    precompute_reference(ref_for_pre, eval_items, pad, cfg.eval_batch_size, cfg.length_normalize, trainer,
                         lora_base, run_dir.path / "reference_logps_eval.pt", _items_key(eval_items, key_extra),
                         cfg.packing)
    if cfg.reference == "precomputed" and ref_model is not None:
        ref_model = None  # computed once; the reference leaves memory

    eval_seconds = [0.0]

    def evaluate() -> dict[str, float]:
        t = time.time()
        out = evaluate_pairs(trainer.unwrapped, eval_items, pad, cfg)
        eval_seconds[0] += time.time() - t
        return out

    # Before training the policy *is* the reference (same weights; LoRA starts as the identity),
    # so h = 0 exactly: score the held-out set with the reference log-probs instead of a second pass.
    before = evaluate() if cfg.reference_model else evaluate_pairs(None, eval_items, pad, cfg)
    eval_seconds[0] = 0.0
    ref_pref = (sum(1.0 if e.ref_chosen > e.ref_rejected else 0.0 for e in eval_items) / len(eval_items)
                if eval_items else None)
    if run_dir.latest_checkpoint() is None:
        run_dir.log({"step": 0, **before, **({"eval_ref_likelihood_accuracy": ref_pref} if ref_pref is not None else {})})
    t0 = time.time()
    result = trainer.fit(train_items, pair_collator(trainer.unwrapped, pad, cfg.packing), make_loss_fn(cfg, ref_model),
                         evaluate=evaluate, eval_every=cfg.eval_every, desc=cfg.preference.loss)
    seconds = time.time() - t0 - eval_seconds[0]  # training steps only
    final = trainer.save_final(tok)
    metrics: dict[str, Any] = {
        "loss": result.metrics.get("loss"), "train_pairs": len(train_items), "eval_pairs": len(eval_items),
        "seconds_per_step": seconds / max(1, result.steps), "skipped_rows": len(read_report.skipped),
        "truncated": stats.prompt_truncated + stats.response_truncated,
        "eval_accuracy_before": before.get("eval_accuracy"), "eval_ref_likelihood_accuracy": ref_pref,
    }
    for k in ("chosen_reward", "rejected_reward", "margin", "accuracy"):
        metrics[k] = result.metrics.get(k)
    metrics.update({k: v for k, v in result.metrics.items() if k.startswith("eval_")})
    if trainer.is_main:
        from alignlab.report import write_report

        loss = cfg.preference.loss
        fig = _reward_figure(run_dir, f"{loss}: implicit rewards over training")
        notes = [f"loss={loss} beta={cfg.preference.beta} reference={cfg.reference}", f"data: {read_report.summary()}",
                 f"train: {stats.report()}", f"eval: {eval_stats.report()}"]
        write_report(run_dir.path, title=f"Preference optimisation ({loss})", notes=notes,
                     figures=[fig] if fig else [],
                     tables={"Summary": [{k: v for k, v in metrics.items() if v is not None}]},
                     curve_keys=("loss", "accuracy"))
    return RunResult(run_dir.path, metrics, final)


def register(sub: argparse._SubParsersAction) -> None:
    register_recipe(sub, "prefs", "Preference optimisation: preference.loss=dpo | ipo | cal_dpo (DPO, IPO, Cal-DPO)",
                    PrefsConfig, run, title="Preference optimisation")
