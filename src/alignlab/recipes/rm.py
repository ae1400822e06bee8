"""Reward-model recipe (`alignlab rm`): a scalar head trained on ranking examples (SPEC §1).

Input: the ranking export `{"prompt", "replies" (best-first), "ranks"}` or preference pairs
(see alignlab.data.preference). Loss per ranking example: mean over its pairs of
`−log σ(s_i − s_j) + 0.001·0.5 (s_i² + s_j²)`. Held-out metrics: pairwise accuracy and
Kendall τ. The result is a `transformers` sequence-classification model (or a LoRA
adapter) that `alignlab.models.reward.RewardModel.load` turns into a reward function.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from alignlab.config import ModelSettings, TrainSettings, bounded
from alignlab.data.preference import read_rankings, split_records
from alignlab.data.tables import ColumnMap
from alignlab.errors import ConfigError, DataError
from alignlab.eval.preference import mean_kendall_tau, ranking_accuracy
from alignlab.lazy import no_grad
from alignlab.recipe import RunResult, default_run_dir, register_recipe
from alignlab.runs import RunDir

if TYPE_CHECKING:
    import torch

    from alignlab.data.preference_batches import EncodedRanking


@dataclass
class RewardConfig:
    """Train a scalar-head reward model on ranking examples or preference pairs."""

    model: ModelSettings = field(default_factory=ModelSettings)
    train: TrainSettings = field(default_factory=lambda: TrainSettings(lr=1e-4, batch_size=8, epochs=1))
    data: str = ""  # ranking export rows or prompt/chosen/rejected pairs: JSONL/JSON/CSV/parquet or dataset folder
    eval_data: str = ""  # held-out file or folder; empty = split eval_fraction of data by tree/prompt
    data_columns: ColumnMap = field(default_factory=ColumnMap)  # input column of each field; "" = same name
    data_split: str = "train"  # split of a dataset folder given as data
    eval_split: str = "test"  # split of a dataset folder given as eval_data
    eval_fraction: float = bounded(0.1, ge=0, lt=1)
    split_seed: int = 0
    max_length: int = bounded(256, ge=2)
    score_penalty: float = bounded(0.001, ge=0)  # λ of the SPEC's 0.5·λ·(s_i² + s_j²) term
    truncation: Literal["truncate", "error"] = "truncate"  # truncate: counted, keeps the sequence end
    on_bad_row: Literal["error", "skip"] = "error"  # skip: counted and reported
    eval_every: int = bounded(0, ge=0)  # optimiser steps between held-out evaluations (0 = only at the end)
    eval_batch_size: int = bounded(32, ge=1)
    output_dir: str = ""


def make_loss_fn(penalty: float):
    """loss_fn(model, batch) for the shared loop: ranking loss + in-batch pair accuracy."""
    from alignlab.losses.preference import reward_ranking_loss
    from alignlab.models.reward import reward_scores


    def loss_fn(model: torch.nn.Module, batch: dict[str, Any]) -> tuple[torch.Tensor, dict[str, Any]]:
        scores = reward_scores(model, batch["input_ids"], batch["attention_mask"])
        loss, _ = reward_ranking_loss(scores, batch["group_sizes"], batch["ranks"], penalty)
        groups = _split(scores.detach().tolist(), batch["group_sizes"])
        return loss, {"accuracy": ranking_accuracy(groups, batch["ranks"]), "score_mean": scores.detach().mean()}

    return loss_fn


def _split(flat: list[float], sizes: list[int]) -> list[list[float]]:
    out, i = [], 0
    for n in sizes:
        out.append(flat[i:i + n])
        i += n
    return out


@no_grad
def score_rankings(model: torch.nn.Module, items: list[EncodedRanking], pad_id: int, batch_size: int = 32) -> list[list[float]]:
    """Scores of every reply of every ranking example, grouped per example."""
    from alignlab.data.preference_batches import collate_rankings
    from alignlab.models.reward import reward_scores

    was = model.training
    model.eval()
    device = next(model.parameters()).device
    out: list[list[float]] = []
    for i in range(0, len(items), batch_size):
        batch = collate_rankings(items[i:i + batch_size], pad_id)
        s = reward_scores(model, batch["input_ids"].to(device), batch["attention_mask"].to(device)).tolist()
        out.extend(_split(s, batch["group_sizes"]))
    model.train(was)
    return out


def evaluate_rankings(model: torch.nn.Module, items: list[EncodedRanking], pad_id: int, batch_size: int = 32,
                      prefix: str = "eval_") -> dict[str, float]:
    """Held-out pairwise accuracy and mean Kendall τ of a reward model."""
    scores = score_rankings(model, items, pad_id, batch_size)
    ranks = [e.ranks for e in items]
    return {f"{prefix}pairwise_accuracy": ranking_accuracy(scores, ranks),
            f"{prefix}kendall_tau": mean_kendall_tau(scores, ranks)}


def _check(cfg: RewardConfig) -> None:
    if not cfg.data:
        raise ConfigError("data: give a data file or dataset folder of ranking examples or preference pairs")


def run(cfg: RewardConfig) -> RunResult:
    """Train a reward model; returns its folder and held-out accuracy / Kendall τ."""
    from alignlab.data.preference_batches import collate_rankings, encode_rankings
    from alignlab.models.reward import load_reward_model
    from alignlab.train.loop import Trainer, seed_everything

    _check(cfg)
    seed_everything(cfg.train.seed)
    run_dir = RunDir(cfg.output_dir or default_run_dir("rm"))
    model, tok = load_reward_model(cfg.model, trainable=True)
    records, read_report = read_rankings(cfg.data, cfg.on_bad_row, cfg.data_columns, cfg.data_split)
    if cfg.eval_data:
        train_recs, (eval_recs, _) = records, read_rankings(cfg.eval_data, cfg.on_bad_row, cfg.data_columns, cfg.eval_split)
    else:
        train_recs, eval_recs = split_records(records, cfg.eval_fraction, cfg.split_seed)
    if not train_recs:
        raise DataError(f"{cfg.data}: no training examples left after the validation split")
    train_items, stats = encode_rankings(tok, train_recs, cfg.max_length, cfg.truncation)
    eval_items, eval_stats = encode_rankings(tok, eval_recs, cfg.max_length, cfg.truncation)
    trainer = Trainer(model, cfg.train, run_dir)
    run_dir.save_config(cfg)
    pad = tok.pad_token_id

    def evaluate() -> dict[str, float]:
        return evaluate_rankings(trainer.unwrapped, eval_items, pad, cfg.eval_batch_size) if eval_items else {}

    result = trainer.fit(train_items, lambda b: collate_rankings(b, pad), make_loss_fn(cfg.score_penalty),
                         evaluate=evaluate, eval_every=cfg.eval_every, desc="rm")
    final = trainer.save_final(tok)
    metrics = {"loss": result.metrics.get("loss"), "train_examples": len(train_items),
               "eval_examples": len(eval_items), "truncated": stats.prompt_truncated + eval_stats.prompt_truncated,
               "skipped_rows": len(read_report.skipped)}
    metrics.update({k: v for k, v in result.metrics.items() if k.startswith("eval_")})
    if trainer.is_main:
        from alignlab.report import write_report

        notes = [f"data: {read_report.summary()}", f"train: {stats.report()}", f"eval: {eval_stats.report()}",
                 f"Reward model saved to {final} (AutoModelForSequenceClassification, num_labels=1"
                 f"{', LoRA adapter' if cfg.model.lora.enabled else ''})."]
        write_report(run_dir.path, title="Reward model", notes=notes,
                     tables={"Held-out": [{k: v for k, v in metrics.items() if v is not None}]},
                     curve_keys=("loss", "accuracy", "eval_pairwise_accuracy"))
    return RunResult(run_dir.path, metrics, final)


def register(sub: argparse._SubParsersAction) -> None:
    register_recipe(sub, "rm", "Train a scalar-head reward model on ranking examples / preference pairs",
                    RewardConfig, run, title="Reward model")
