"""Scalar-head reward models: `transformers` sequence-classification models with one label.

A reward model is `AutoModelForSequenceClassification(num_labels=1)`: the backbone of any
causal LM plus a linear `score` head read at the last non-pad token (the rightmost token
that is not `pad_token_id`, transformers' own rule, so a model loaded back with plain
`transformers` scores exactly as it did here). Starting from a causal LM folder keeps its
backbone weights and adds a fresh head. LoRA trains adapters plus the head (PEFT
`SEQ_CLS`); the saved adapter loads back with `load_reward_model`.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch
from transformers import AutoModelForSequenceClassification

from alignlab.config import ModelSettings
from alignlab.models.loading import (
    apply_lora,
    default_device,
    load_tokenizer,
    model_files,
    prepare_for_training,
    pretrained_kwargs,
)
from alignlab.resolve.models import model_path


def _is_adapter(path: str) -> bool:
    p = Path(path)
    return p.is_dir() and (p / "adapter_config.json").exists() and not (p / "config.json").exists()


def load_reward_model(settings: ModelSettings | str, trainable: bool = False):
    """(reward model, tokenizer) from a causal LM, a saved reward model, or a saved RM adapter."""
    if isinstance(settings, str):
        settings = ModelSettings(name_or_path=settings)
    name = settings.name_or_path
    path = model_path(name)
    if _is_adapter(path):
        from peft import PeftConfig, PeftModel

        with model_files(path, "reward model adapter"):
            base = PeftConfig.from_pretrained(path).base_model_name_or_path
        with model_files(base, f"adapter's base model (of {path})"):
            model = AutoModelForSequenceClassification.from_pretrained(base, num_labels=1, **pretrained_kwargs(settings))
        with model_files(path, "reward model adapter"):
            model = PeftModel.from_pretrained(model, path, is_trainable=trainable)
        tok_source = path if (Path(path) / "tokenizer_config.json").exists() else base
    else:
        with model_files(path, "reward model"):
            model = AutoModelForSequenceClassification.from_pretrained(path, num_labels=1, **pretrained_kwargs(settings))
        tok_source = name
    tok = load_tokenizer(tok_source)
    if model.config.pad_token_id is None:
        model.config.pad_token_id = tok.pad_token_id
    if trainable:
        model = prepare_for_training(model, settings)
        if settings.lora.enabled and not _is_adapter(path):
            model = apply_lora(model, settings.lora, task_type="SEQ_CLS")
    else:
        model.eval().requires_grad_(False).to(default_device())
    return model, tok


def reward_scores(model: torch.nn.Module, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """Scalar score per sequence [B] (head read at the last non-pad token)."""
    out = model(input_ids=input_ids, attention_mask=attention_mask, use_cache=False)
    return out.logits.squeeze(-1).float()


class RewardModel:
    """A trained reward model as a scoring function: `rm(prompts, responses) -> list[float]`."""

    def __init__(self, model: torch.nn.Module, tokenizer, max_length: int = 512, batch_size: int = 32):
        self.model, self.tokenizer = model, tokenizer
        self.max_length, self.batch_size = max_length, batch_size

    @classmethod
    def load(cls, path: str | Path, max_length: int = 512, batch_size: int = 32) -> RewardModel:
        """Load a saved reward model (full or LoRA adapter) for scoring."""
        model, tok = load_reward_model(str(path), trainable=False)
        return cls(model, tok, max_length, batch_size)

    @torch.no_grad()
    def score(self, prompts: Sequence, responses: Sequence[str]) -> list[float]:
        """Reward of each (prompt, response); prompts are strings or chat messages.

        Encoded as in training (chat template for messages, else prompt + response + EOS);
        an overlong sequence keeps its end, where the score is read.
        """
        from alignlab.data.preference_batches import encode_responses
        from alignlab.scoring import pad_batch

        if len(prompts) != len(responses):
            raise ValueError(f"score: {len(prompts)} prompts but {len(responses)} responses")
        self.model.eval()
        device = next(self.model.parameters()).device
        pad = self.tokenizer.pad_token_id
        seqs = []
        for p, r in zip(prompts, responses):
            pi, (ri,) = encode_responses(self.tokenizer, p, [r])
            seqs.append((pi + ri)[-self.max_length:])
        out: list[float] = []
        for i in range(0, len(seqs), self.batch_size):
            ids, attn = pad_batch(seqs[i:i + self.batch_size], pad, side="right")
            out.extend(reward_scores(self.model, ids.to(device), attn.to(device)).tolist())
        return out

    __call__ = score

    def score_texts(self, texts: Sequence[str]) -> list[float]:
        """Reward of whole texts (no prompt/response split): each text is scored as it stands."""
        from alignlab.scoring import pad_batch

        device = next(self.model.parameters()).device
        out: list[float] = []
        with torch.no_grad():
            for i in range(0, len(texts), self.batch_size):
                enc = [self.tokenizer(t, add_special_tokens=False)["input_ids"][-self.max_length:] or [self.tokenizer.eos_token_id]
                       for t in texts[i:i + self.batch_size]]
                ids, attn = pad_batch(enc, self.tokenizer.pad_token_id, side="right")
                out.extend(reward_scores(self.model, ids.to(device), attn.to(device)).tolist())
        return out
