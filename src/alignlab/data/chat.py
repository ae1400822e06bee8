"""Encode conversations and (prompt, response) pairs into token ids with loss masks.

Works with any tokenizer that has a chat template: each assistant turn's tokens are
found by rendering the conversation prefix by prefix, so only assistant tokens are
trained on. Plain-string prompts skip the template (prompt + response + EOS).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from alignlab.data.jsonl import iter_jsonl, iter_text_lines
from alignlab.errors import ConfigError, DataError
from alignlab.scoring import pad_batch

Messages = list[dict[str, str]]


@dataclass
class Encoded:
    """Token ids of one example and which of them carry the loss."""

    input_ids: list[int]
    loss_mask: list[int]
    truncated: bool = False


@dataclass
class TruncationStats:
    """Counts of examples cut to max_length, so truncation is reported, never silent."""

    total: int = 0
    truncated: int = 0
    examples: list[int] = field(default_factory=list)

    def add(self, index: int, enc: Encoded) -> None:
        self.total += 1
        if enc.truncated:
            self.truncated += 1
            if len(self.examples) < 5:
                self.examples.append(index)

    def report(self) -> str:
        return f"{self.truncated}/{self.total} examples truncated to max_length" + (
            f" (e.g. #{', #'.join(map(str, self.examples))})" if self.truncated else ""
        )


def require_chat_template(tokenizer, where: str = "") -> None:
    """DataError (prefixed with `where`, e.g. file:line) when chat messages meet a tokenizer
    that has no chat template to render them with."""
    if getattr(tokenizer, "chat_template", None):
        return
    name = getattr(tokenizer, "name_or_path", "") or "this model"
    prefix = f"{where}: " if where else ""
    raise DataError(f"{prefix}chat messages need a chat template, but the model {name} has no chat template "
                    "(its tokenizer_config.json / chat_template.jinja has none); give plain-text prompts or "
                    "use a model with a chat template")


def check_chat_template(tokenizer, queries: Sequence[str | Messages], source: str) -> None:
    """Before any work: DataError naming `source` and the first chat prompt when the model has no
    chat template to render chat prompts with (plain-string prompts need none)."""
    for i, q in enumerate(queries, 1):
        if not isinstance(q, str):
            require_chat_template(tokenizer, f"{source}: prompt {i}")
            return


def format_query(tokenizer, query: str | Messages, where: str = "") -> str:
    """The text a model continues for a prompt: a string as it is, chat messages through the
    chat template with the generation prompt (DataError naming `where` without a template)."""
    if isinstance(query, str):
        return query
    require_chat_template(tokenizer, where)
    return tokenizer.apply_chat_template(list(query), tokenize=False, add_generation_prompt=True)


def render_chat(tokenizer, messages: Messages, add_generation_prompt: bool = False, where: str = "") -> list[int]:
    """Token ids of chat messages through the tokenizer's chat template (DataError naming `where`
    when it has none)."""
    require_chat_template(tokenizer, where)
    out = tokenizer.apply_chat_template(
        messages, tokenize=True, add_generation_prompt=add_generation_prompt, return_dict=False
    )
    if isinstance(out, dict) or hasattr(out, "keys"):
        out = out["input_ids"]
    return list(out)



def _truncate(ids: list[int], mask: list[int], max_length: int) -> Encoded:
    if len(ids) <= max_length:
        return Encoded(ids, mask)
    return Encoded(ids[:max_length], mask[:max_length], truncated=True)


def encode_chat(tokenizer, messages: Messages, max_length: int = 512, where: str = "") -> Encoded:
    """Tokens of a whole conversation; loss on assistant turns only (`where`, e.g. file:line,
    prefixes its errors)."""
    prefix = f"{where}: " if where else ""
    if not messages:
        raise DataError(f"{prefix}empty conversation")
    require_chat_template(tokenizer, where)
    ids: list[int] = []
    mask: list[int] = []
    for i, m in enumerate(messages):
        if m.get("role") not in ("user", "assistant", "system"):
            raise DataError(f"{prefix}message {i}: role must be user/assistant/system, got {m.get('role')!r}")
        upto = render_chat(tokenizer, messages[: i + 1])
        if upto[: len(ids)] != ids:  # template not prefix-stable: fall back to the full render
            ids = upto[: len(ids)]
        new = upto[len(ids) :]
        if m["role"] == "assistant":
            head = render_chat(tokenizer, messages[:i], add_generation_prompt=True) if i else []
            n_head = max(0, len(head) - len(ids)) if head[: len(ids)] == ids else 0
            mask.extend([0] * n_head + [1] * (len(new) - n_head))
        else:
            mask.extend([0] * len(new))
        ids.extend(new)
    return _truncate(ids, mask, max_length)


def encode_pair(tokenizer, prompt: str | Messages, response: str, max_length: int = 512, where: str = "") -> Encoded:
    """Tokens of prompt + response; loss on the response (and its end token) only."""
    if not isinstance(response, str) or not response.strip():
        raise DataError(f"{where}: response is empty" if where else "response is empty")
    if isinstance(prompt, str):
        p = tokenizer(prompt, add_special_tokens=False)["input_ids"]
        r = tokenizer(response, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
        return _truncate(p + r, [0] * len(p) + [1] * len(r), max_length)
    enc = encode_chat(tokenizer, list(prompt) + [{"role": "assistant", "content": response}], 10**9, where)
    # only the final assistant turn carries the loss
    last = len(enc.loss_mask)
    prompt_len = len(render_chat(tokenizer, list(prompt), add_generation_prompt=True))
    mask = [0] * prompt_len + [1] * (last - prompt_len)
    return _truncate(enc.input_ids, mask, max_length)


def collate(items: Sequence[Encoded], pad_id: int) -> dict[str, torch.Tensor]:
    """Right-pad a list of Encoded into input_ids / attention_mask / loss_mask tensors."""
    ids, attn = pad_batch([e.input_ids for e in items], pad_id)
    loss_mask, _ = pad_batch([e.loss_mask for e in items], 0)
    return {"input_ids": ids, "attention_mask": attn, "loss_mask": loss_mask}


def as_messages(value: Any, where: str) -> str | Messages:
    """Validate a prompt field: a non-empty string or a list of {role, content} dicts."""
    if isinstance(value, str):
        if not value.strip():
            raise DataError(f"{where}: prompt is empty")
        return value
    if isinstance(value, list) and value and all(isinstance(m, dict) and "role" in m and "content" in m for m in value):
        return value
    raise DataError(f"{where}: prompt must be a string or a list of {{role, content}} messages")


TABLE_SUFFIXES = (".json", ".csv", ".tsv", ".parquet", ".arrow")


def read_prompts(path: str | Path, setting: str, builtin: str, allow_empty: bool = False) -> list[str | Messages]:
    """Prompts of a .jsonl(.gz) file of {"prompt": str | messages}, a text file (one per line), or
    a JSON / CSV / parquet / arrow file or dataset folder (train split) with a `prompt` or
    `messages` column.

    `setting`/`builtin` name the config key and its built-in value in the error for a path
    that is not a file; a bad row or an unreadable line is an error naming file:line, and a
    file without prompts is an error unless `allow_empty`.
    """
    p = Path(path)
    if p.suffix in (".jsonl", ".gz"):
        rows = [as_messages(row.get("prompt"), where) for where, row in iter_jsonl(p, "prompts file")]
    elif p.is_dir() or p.suffix.lower() in TABLE_SUFFIXES:  # JSON / CSV / parquet / arrow / a dataset folder
        from alignlab.data.tables import read_rows

        rows = [as_messages(row["prompt"] if "prompt" in row else row.get("messages"), where)
                for where, row in read_rows(p, what="prompts file")]
    elif p.is_file():
        rows = [line for _, line in iter_text_lines(p, "prompts file") if line.strip()]
    else:
        raise ConfigError(f"{setting}: '{path}' is neither '{builtin}' nor a file")
    if not rows and not allow_empty:
        raise DataError(f"{p}: no prompts (the file is empty)")
    return rows
