"""Preference and ranking examples as token ids, and their batches (pairs packed or padded).

Pairs share the prompt's tokens (chosen and rejected are scored after one prompt); a
sequence longer than `max_length` is truncated and counted in `EncodeStats`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from alignlab.data.chat import render_chat
from alignlab.data.preference import PreferenceRecord, Prompt, RankingRecord
from alignlab.errors import DataError
from alignlab.scoring import pad_batch


@dataclass
class EncodedPair:
    """Token ids of one preference pair: the prompt once, each response with its end token."""

    prompt_ids: list[int]
    chosen_ids: list[int]
    rejected_ids: list[int]
    where: str = ""
    ref_chosen: float | None = None  # precomputed reference log-probs, when used
    ref_rejected: float | None = None


@dataclass
class EncodedRanking:
    """Full token sequences (prompt + reply) of one ranking example, with ranks."""

    sequences: list[list[int]]
    ranks: list[int]
    where: str = ""


@dataclass
class EncodeStats:
    """How many examples were truncated, and where: truncation is counted and reported."""

    total: int = 0
    prompt_truncated: int = 0
    response_truncated: int = 0
    examples: list[str] = field(default_factory=list)

    def add(self, where: str, prompt_cut: bool, response_cut: bool) -> None:
        self.total += 1
        self.prompt_truncated += int(prompt_cut)
        self.response_truncated += int(response_cut)
        if (prompt_cut or response_cut) and len(self.examples) < 3:
            self.examples.append(where)

    def report(self) -> str:
        cut = self.prompt_truncated + self.response_truncated
        eg = f" (e.g. {', '.join(self.examples)})" if cut else ""
        return (f"{self.total} examples encoded; prompt truncated in {self.prompt_truncated}, "
                f"response truncated in {self.response_truncated}{eg}")


def _common_prefix(a: list[int], b: list[int]) -> int:
    n = 0
    for x, y in zip(a, b):
        if x != y:
            break
        n += 1
    return n


def encode_responses(tokenizer, prompt: Prompt, responses: Sequence[str], where: str = "") -> tuple[list[int], list[list[int]]]:
    """(prompt ids, ids of each response) — chat template for messages, else text + EOS; a
    model without a chat template is a DataError naming `where` (file:line)."""
    if isinstance(prompt, str):
        p = tokenizer(prompt, add_special_tokens=False)["input_ids"]
        rs = [tokenizer(r, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id] for r in responses]
        return list(p), [list(r) for r in rs]
    p = render_chat(tokenizer, prompt, add_generation_prompt=True, where=where)
    fulls = [render_chat(tokenizer, list(prompt) + [{"role": "assistant", "content": r}]) for r in responses]
    k = min(_common_prefix(p, f) for f in fulls)  # templates that re-render the prompt: cut where they diverge
    return p[:k], [f[k:] for f in fulls]


def encode_pairs(
    tokenizer,
    records: Sequence[PreferenceRecord],
    max_length: int,
    max_prompt_length: int,
    truncation: str = "truncate",
) -> tuple[list[EncodedPair], EncodeStats]:
    """Tokenize pairs; overlong ones keep the prompt's end (≥ max_prompt_length tokens) then cut responses."""
    if truncation not in ("truncate", "error"):
        raise DataError(f"truncation must be 'truncate' or 'error', got {truncation!r}")
    if not 0 < max_prompt_length < max_length:
        raise DataError(f"need 0 < max_prompt_length ({max_prompt_length}) < max_length ({max_length})")
    out, stats = [], EncodeStats()
    for rec in records:
        p, (c, r) = encode_responses(tokenizer, rec.prompt, [rec.chosen, rec.rejected], rec.where)
        if not p:
            raise DataError(f"{rec.where}: the prompt encodes to no tokens")
        if not c or not r:
            raise DataError(f"{rec.where}: a response encodes to no tokens")
        longest = max(len(c), len(r))
        p_cut = r_cut = False
        if len(p) + longest > max_length:
            if truncation == "error":
                raise DataError(
                    f"{rec.where}: prompt ({len(p)} tokens) + longest response ({longest}) exceeds "
                    f"max_length {max_length} (set truncation: truncate to cut and count it)"
                )
            keep = max(max_length - longest, min(len(p), max_prompt_length))
            p_cut = keep < len(p)
            p = p[len(p) - keep:]
            room = max_length - len(p)
            r_cut = longest > room
            c, r = c[:room], r[:room]
        stats.add(rec.where, p_cut, r_cut)
        out.append(EncodedPair(p, c, r, rec.where))
    return out, stats


def encode_rankings(
    tokenizer, records: Sequence[RankingRecord], max_length: int, truncation: str = "truncate"
) -> tuple[list[EncodedRanking], EncodeStats]:
    """Tokenize ranking examples for a reward model; overlong sequences keep their end (the scored token)."""
    if truncation not in ("truncate", "error"):
        raise DataError(f"truncation must be 'truncate' or 'error', got {truncation!r}")
    out, stats = [], EncodeStats()
    for rec in records:
        p, rs = encode_responses(tokenizer, rec.prompt, rec.replies, rec.where)
        seqs, p_cut, r_cut = [], False, False
        for r in rs:
            s = p + r
            if len(s) > max_length:
                if truncation == "error":
                    raise DataError(f"{rec.where}: prompt + reply is {len(s)} tokens > max_length {max_length}")
                p_cut = True
                r_cut = r_cut or len(r) > max_length
                s = s[-max_length:]
            seqs.append(s)
        stats.add(rec.where, p_cut, r_cut)
        out.append(EncodedRanking(seqs, list(rec.ranks), rec.where))
    return out, stats


# --- collating -----------------------------------------------------------------------


def collate_pairs(items: Sequence[EncodedPair], pad_id: int) -> dict[str, Any]:
    """Batch of 2B rows (chosen rows first, then rejected): prompts left-padded to a common
    length P so every response starts at column P, responses right-padded to R.

    Keys: input_ids / attention_mask / position_ids [2B, P+R], response_ids / response_mask
    [2B, R], prompt_len P; ref_logps [2B] when every item carries precomputed reference log-probs.
    """
    prompts = [e.prompt_ids for e in items]
    responses = [e.chosen_ids for e in items] + [e.rejected_ids for e in items]
    p_ids, p_mask = pad_batch(prompts, pad_id, side="left")
    r_ids, r_mask = pad_batch(responses, pad_id, side="right")
    p_ids, p_mask = torch.cat([p_ids, p_ids]), torch.cat([p_mask, p_mask])
    attn = torch.cat([p_mask, r_mask], dim=1)
    batch: dict[str, Any] = {
        "input_ids": torch.cat([p_ids, r_ids], dim=1),
        "attention_mask": attn,
        "position_ids": (attn.cumsum(-1) - 1).clamp_min(0),
        "response_ids": r_ids,
        "response_mask": r_mask,
        "prompt_len": p_ids.shape[1],
    }
    if all(e.ref_chosen is not None and e.ref_rejected is not None for e in items):
        batch["ref_logps"] = torch.tensor([e.ref_chosen for e in items] + [e.ref_rejected for e in items],
                                          dtype=torch.float32)
    return batch


def _first_fit(lengths: list[int], width: int) -> list[list[int]]:
    """First-fit-decreasing packing of sequences into rows of `width` (≥ the longest)."""
    rows: list[list[int]] = []
    room: list[int] = []
    for i in sorted(range(len(lengths)), key=lambda i: -lengths[i]):
        for r, free in enumerate(room):
            if lengths[i] <= free:
                rows[r].append(i)
                room[r] -= lengths[i]
                break
        else:
            rows.append([i])
            room.append(width - lengths[i])
    return rows


def pack_rows(lengths: list[int], attn_weight: float | None = None, max_width: int = 2048) -> tuple[list[list[int]], int]:
    """Rows of packed sequences and their width. `attn_weight=None`: rows as wide as the longest
    sequence. Otherwise the width W (longest ≤ W ≤ max(longest, max_width)) minimising the
    work of the padded batch, rows·W·(1 + attn_weight·W) — per-position matmuls plus the
    masked attention a kernel computes over the whole W×W block; attn_weight = attention
    FLOPs per (query, key) over matmul FLOPs per position (about 2·L·d_attn / N_body)."""
    longest = max(lengths)
    if attn_weight is None:
        return _first_fit(lengths, longest), longest
    cap = max(longest, max_width)
    widths = {longest} | {min(cap, max(longest, -(-sum(lengths) // r))) for r in range(1, len(lengths) + 1)}
    best: tuple[float, list[list[int]], int] | None = None
    for w in sorted(widths):
        rows = _first_fit(lengths, w)
        cost = len(rows) * w * (1.0 + attn_weight * w)
        if best is None or cost < best[0]:
            best = (cost, rows, w)
    assert best is not None
    return best[1], best[2]


def collate_pairs_packed(items: Sequence[EncodedPair], pad_id: int, attn_weight: float | None = None,
                         max_width: int = 2048) -> dict[str, Any]:
    """Batch where each pair is laid out once as [prompt, chosen, rejected] and pairs are packed
    into rows; a block mask lets chosen and rejected each see the shared prompt and themselves only.

    Positions restart per pair, and the rejected response continues from the prompt's end as the
    chosen one does, so every response token is scored exactly as in its own unpadded sequence,
    while the prompt is computed once and padding is nearly gone. Keys: input_ids / position_ids
    [rows, W], attention_mask [rows, 1, W, W] (bool, True = may attend), and for each scored
    token its (row, source column) whose logits predict it, its id, and its output slot
    (chosen of pair i → i, rejected → B + i); segments [pairs, 3]: each pair's (row, start, end), for
    attention computed per pair (`alignlab.models.segment_attention`). `attn_weight` and
    `max_width` pick the row width (see `pack_rows`).
    """
    b = len(items)
    lengths = [len(e.prompt_ids) + len(e.chosen_ids) + len(e.rejected_ids) for e in items]
    rows, width = pack_rows(lengths, attn_weight, max_width)
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    pos = torch.zeros((len(rows), width), dtype=torch.long)
    segments: list[tuple[int, int, int]] = []
    pair = torch.full((len(rows), width), -1, dtype=torch.long)
    seg = torch.full((len(rows), width), -1, dtype=torch.long)
    src_row, src_col, tgt, slot = [], [], [], []
    for r, members in enumerate(rows):
        col = 0
        for i in members:
            e = items[i]
            p, n = len(e.prompt_ids), len(e.prompt_ids) + len(e.chosen_ids) + len(e.rejected_ids)
            ids[r, col:col + n] = torch.tensor(e.prompt_ids + e.chosen_ids + e.rejected_ids)
            segments.append((r, col, col + n))
            pair[r, col:col + n] = i
            seg[r, col:col + p] = 0
            start = col + p
            for s, resp in ((1, e.chosen_ids), (2, e.rejected_ids)):
                k = len(resp)
                seg[r, start:start + k] = s
                pos[r, col:col + p] = torch.arange(p)
                pos[r, start:start + k] = torch.arange(p, p + k)
                src_col += [col + p - 1] + list(range(start, start + k - 1))
                src_row += [r] * k
                tgt += resp
                slot += [i if s == 1 else b + i] * k
                start += k
            col += n
    q_idx = torch.arange(width)
    same_pair = (pair[:, :, None] == pair[:, None, :]) & (pair[:, None, :] >= 0)
    visible_seg = (seg[:, None, :] == 0) | (seg[:, None, :] == seg[:, :, None])
    causal = q_idx[None, :, None] >= q_idx[None, None, :]
    mask = same_pair & visible_seg & causal
    mask |= torch.eye(width, dtype=torch.bool)[None]  # padding rows attend to themselves (no empty rows)
    batch: dict[str, Any] = {
        "input_ids": ids,
        "position_ids": pos,
        "attention_mask": mask[:, None],
        "src_row": torch.tensor(src_row),
        "src_col": torch.tensor(src_col),
        "target_ids": torch.tensor(tgt),
        "slot": torch.tensor(slot),
        "segments": torch.tensor(segments, dtype=torch.long),
        "n_pairs": b,
    }
    if all(e.ref_chosen is not None and e.ref_rejected is not None for e in items):
        batch["ref_logps"] = torch.tensor([e.ref_chosen for e in items] + [e.ref_rejected for e in items],
                                          dtype=torch.float32)
    return batch


def collate_rankings(items: Sequence[EncodedRanking], pad_id: int) -> dict[str, Any]:
    """All replies of all examples as one right-padded batch, with group sizes and ranks."""
    seqs = [s for e in items for s in e.sequences]
    ids, attn = pad_batch(seqs, pad_id, side="right")
    return {
        "input_ids": ids,
        "attention_mask": attn,
        "group_sizes": [len(e.sequences) for e in items],
        "ranks": [list(e.ranks) for e in items],
    }
