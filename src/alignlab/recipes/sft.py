"""SFT recipe: next-token loss on assistant tokens of chat threads (or prompt/response pairs).

Input rows: `{"messages": [{role, content}, ...]}` (as `alignlab data export --mode sft`
writes) or `{"prompt": ..., "response": ...}`, from JSONL, JSON, CSV, parquet or a dataset
folder (see alignlab.data.tables; `data_columns` maps other column names).
"""

from __future__ import annotations

import argparse
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from alignlab.config import ModelSettings, TrainSettings, bounded
from alignlab.data.tables import ColumnMap, read_rows
from alignlab.errors import DataError
from alignlab.recipe import RunResult, default_run_dir, register_recipe
from alignlab.runs import RunDir

if TYPE_CHECKING:
    from alignlab.data.chat import Encoded, TruncationStats


@dataclass
class SFTConfig:
    """Supervised fine-tuning of a causal LM."""

    model: ModelSettings = field(default_factory=ModelSettings)
    train: TrainSettings = field(default_factory=lambda: TrainSettings(lr=5e-4, batch_size=16, epochs=1))
    data: str = ""  # rows of {"messages": [...]} or {"prompt", "response"}: JSONL/JSON/CSV/parquet or dataset folder
    data_columns: ColumnMap = field(default_factory=ColumnMap)  # input column of each field; "" = same name
    data_split: str = "train"  # split of a dataset folder
    max_length: int = bounded(256, ge=2)
    packing: bool = True  # several sequences per row with a block-diagonal mask (sdpa/eager): exact, little padding
    output_dir: str = ""


def encode_sft_rows(tokenizer, rows: Iterable[tuple[str, dict[str, Any]]],
                    max_length: int) -> tuple[list[Encoded], TruncationStats]:
    """Encode ('where', row) pairs (as `read_rows` yields them); every bad row, and chat
    messages for a model without a chat template, is a DataError naming its file:line / row."""
    from alignlab.data.chat import TruncationStats, as_messages, encode_chat, encode_pair

    out, stats = [], TruncationStats()
    for i, (where, row) in enumerate(rows, 1):
        if "messages" in row:
            msgs = as_messages(row["messages"], where)
            if isinstance(msgs, str) or not any(m["role"] == "assistant" for m in msgs):
                raise DataError(f"{where}: 'messages' needs at least one assistant turn")
            enc = encode_chat(tokenizer, msgs, max_length, where=where)
        elif "prompt" in row and "response" in row:
            enc = encode_pair(tokenizer, as_messages(row["prompt"], where), row["response"], max_length, where=where)
        else:
            raise DataError(f"{where}: needs 'messages' or 'prompt' + 'response' (has {sorted(row)})")
        if sum(enc.loss_mask) == 0:
            raise DataError(f"{where}: no response tokens left after truncation to {max_length}")
        stats.add(i, enc)
        out.append(enc)
    return out, stats


def collate_packed(items: Sequence[Encoded], pad_id: int, attn_weight: float | None = None,
                   max_width: int = 2048) -> dict[str, Any]:
    """Sequences packed into rows (width chosen as for preference pairs, `pack_rows`), each with
    positions from 0 and a causal mask confined to itself; for every loss token its (row, source
    column) whose logits predict it and its id. attention_mask is [rows, 1, W, W] bool; segments
    [sequences, 3] each sequence's (row, start, end), for attention computed per sequence."""
    import torch

    from alignlab.data.preference_batches import pack_rows

    rows, width = pack_rows([len(e.input_ids) for e in items], attn_weight, max_width)
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    pos = torch.zeros((len(rows), width), dtype=torch.long)
    seq = torch.full((len(rows), width), -1, dtype=torch.long)
    src_row: list[int] = []
    src_col: list[int] = []
    tgt: list[int] = []
    segments: list[tuple[int, int, int]] = []
    for r, members in enumerate(rows):
        col = 0
        for i in members:
            e = items[i]
            n = len(e.input_ids)
            ids[r, col:col + n] = torch.tensor(e.input_ids)
            pos[r, col:col + n] = torch.arange(n)
            seq[r, col:col + n] = i
            segments.append((r, col, col + n))
            for t in range(1, n):
                if e.loss_mask[t]:
                    src_row.append(r)
                    src_col.append(col + t - 1)
                    tgt.append(e.input_ids[t])
            col += n
    q = torch.arange(width)
    mask = (seq[:, :, None] == seq[:, None, :]) & (seq[:, None, :] >= 0) & (q[None, :, None] >= q[None, None, :])
    mask |= torch.eye(width, dtype=torch.bool)[None]  # padding attends to itself (no empty rows)
    return {"input_ids": ids, "position_ids": pos, "attention_mask": mask[:, None],
            "src_row": torch.tensor(src_row, dtype=torch.long), "src_col": torch.tensor(src_col, dtype=torch.long),
            "target_ids": torch.tensor(tgt, dtype=torch.long), "segments": torch.tensor(segments, dtype=torch.long)}


def run(cfg: SFTConfig) -> RunResult:
    """Fine-tune cfg.model on cfg.data; returns the run dir and final loss."""
    from alignlab.data.chat import collate
    from alignlab.losses.lm import causal_lm_loss, packed_lm_loss
    from alignlab.models import load_model
    from alignlab.resolve import require
    from alignlab.train.loop import Trainer, seed_everything

    require(cfg.data, "data", "a data file or dataset folder of chat threads or prompt/response pairs")
    seed_everything(cfg.train.seed)
    run_dir = RunDir(cfg.output_dir or default_run_dir("sft"))
    model, tok = load_model(cfg.model)
    examples, stats = encode_sft_rows(tok, read_rows(cfg.data, cfg.data_columns, cfg.data_split), cfg.max_length)
    if not examples:
        raise DataError(f"{cfg.data}: no examples (the file has no JSON rows)")
    trainer = Trainer(model, cfg.train, run_dir)
    run_dir.save_config(cfg)
    from alignlab.scoring import packed_row_layout, packing_supported

    if cfg.packing and packing_supported(trainer.unwrapped):
        weight, width = packed_row_layout(trainer.unwrapped)
        result = trainer.fit(examples, lambda b: collate_packed(b, tok.pad_token_id, weight, width), packed_lm_loss,
                             desc="sft")
    else:
        result = trainer.fit(examples, lambda b: collate(b, tok.pad_token_id), causal_lm_loss, desc="sft")
    final = trainer.save_final(tok)
    if trainer.is_main:
        from alignlab.report import write_report

        write_report(run_dir.path, title="SFT", notes=[stats.report()])
    return RunResult(run_dir.path, {"loss": result.metrics.get("loss"), "truncated": stats.truncated}, final)


def register(sub: argparse._SubParsersAction) -> None:
    register_recipe(sub, "sft", "Supervised fine-tuning on chat threads or prompt/response pairs", SFTConfig, run,
                    title="SFT")
