"""Response pools for best-of-N: K sampled responses per prompt, scored by a gold reward."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from alignlab.generation import sample


@dataclass
class Pool:
    """Row i is response i to prompt prompts[i]; groups[i] numbers its prompt; gold[i] its gold reward."""

    prompts: list[str]
    responses: list[str]
    groups: np.ndarray
    gold: np.ndarray

    def records(self) -> list[dict]:
        """JSONL rows for `alignlab embed` ({prompt, response, gold, group})."""
        return [{"prompt": p, "response": r, "gold": float(g), "group": int(k)}
                for p, r, g, k in zip(self.prompts, self.responses, self.gold, self.groups)]


def sample_pool(model: torch.nn.Module, tokenizer, prompts: Sequence[str], k: int,
                reward: Callable[[str], float], max_new_tokens: int = 16, temperature: float = 1.0,
                seed: int = 0, batch_size: int = 128) -> Pool:
    """Sample k responses for each prompt and score each with the gold `reward`."""
    flat = [p for p in prompts for _ in range(k)]
    g = torch.Generator().manual_seed(seed)
    out = sample(model, tokenizer, flat, max_new_tokens=max_new_tokens, temperature=temperature,
                 batch_size=batch_size, generator=g)
    texts = [" " + t.strip() if t.strip() else "" for t in out.texts]
    gold = np.array([reward(t) for t in texts], dtype=np.float64)
    return Pool(flat, texts, np.repeat(np.arange(len(prompts)), k), gold)
