"""Steering vectors by contrastive activation addition (CAA).

Train: `v_ℓ = mean over pairs (h_ℓ(x + y⁺) − h_ℓ(x + y⁻))` at the answer position (the
last token of prompt + answer), residual stream after block ℓ.
Apply: `h_ℓ ← h_ℓ + c · v_ℓ` at positions after the prompt (default `after_prompt`: the
last prompt token and every generated token; `all` also steers the prompt).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch

from alignlab.errors import ConfigError, DataError
from alignlab.interventions.artifacts import load_artifact, save_artifact
from alignlab.interventions.hooks import Hooks, Positions, Site, last_token_activations, num_layers


@dataclass(frozen=True)
class ContrastPair:
    """A prompt with a positive and a negative continuation (appended as strings)."""

    prompt: str
    positive: str
    negative: str


@dataclass
class SteeringVector:
    """One vector per layer (residual stream); `with vec.apply(model, c, layer): ...`."""

    vectors: dict[int, torch.Tensor]
    meta: dict = field(default_factory=dict)

    def apply(self, model, coefficient: float, layers: int | Sequence[int] | None = None,
              positions: Positions = "after_prompt") -> Hooks:
        """Hooks adding `coefficient · v_ℓ` at each chosen layer (a context manager)."""
        chosen = list(self.vectors) if layers is None else [layers] if isinstance(layers, int) else list(layers)
        h = Hooks(model)
        try:
            for layer in chosen:
                if layer not in self.vectors:
                    raise ConfigError(f"steering vector has no layer {layer} (has {sorted(self.vectors)})")
                h.add(Site("resid", layer), self.vectors[layer], coefficient, positions)
        except Exception:
            h.remove()
            raise
        return h

    def save(self, path: str | Path) -> Path:
        """Save as <path>/steering.safetensors + steering.json."""
        return save_artifact(path, "steering", {f"layer.{k}": v for k, v in self.vectors.items()},
                             {"layers": sorted(self.vectors), "meta": self.meta})

    @classmethod
    def load(cls, path: str | Path) -> SteeringVector:
        """Load a vector saved by `save`."""
        t, info = load_artifact(path, "steering", "steering vector")
        return cls({int(k.split(".")[1]): v for k, v in t.items()}, info.get("meta", {}))


def train_steering_vector(model, tokenizer, pairs: Sequence[ContrastPair], layers: Sequence[int] | None = None,
                          batch_size: int = 16, progress: bool = False) -> SteeringVector:
    """Mean activation difference (positive − negative) at the answer's last token, per layer."""
    if not pairs:
        raise DataError("train_steering_vector: no contrast pairs")
    for i, p in enumerate(pairs):
        if not p.positive or not p.negative:
            raise DataError(f"contrast pair {i}: empty positive or negative answer")
    layers = list(range(num_layers(model))) if layers is None else list(layers)
    sites = [Site("resid", ly) for ly in layers]
    pos = last_token_activations(model, tokenizer, [p.prompt + p.positive for p in pairs], sites, batch_size, progress)
    neg = last_token_activations(model, tokenizer, [p.prompt + p.negative for p in pairs], sites, batch_size, progress)
    vecs = {s.layer: (pos[s] - neg[s]).mean(0) for s in sites}
    return SteeringVector(vecs, {"n_pairs": len(pairs)})


def steered_texts(model, tokenizer, prompts: Sequence[str], vector: SteeringVector | None, coefficient: float,
                  layer: int | None, max_new_tokens: int = 24, temperature: float = 1.0, seed: int = 0,
                  positions: Positions = "after_prompt", batch_size: int = 64) -> list[str]:
    """Sampled continuations with the vector applied (None or c = 0: the unsteered model)."""
    from alignlab.generation import sample

    g = torch.Generator().manual_seed(seed)
    if vector is None or coefficient == 0:
        return sample(model, tokenizer, list(prompts), max_new_tokens, temperature, batch_size=batch_size, generator=g).texts
    with vector.apply(model, coefficient, layer, positions):
        return sample(model, tokenizer, list(prompts), max_new_tokens, temperature, batch_size=batch_size, generator=g).texts


def sweep(model, tokenizer, vector: SteeringVector, prompts: Sequence[str], layers: Sequence[int],
          coefficients: Sequence[float], score: Callable[[Sequence[str], Sequence[str]], Sequence[float]],
          max_new_tokens: int = 24, temperature: float = 1.0, seed: int = 0, progress: bool = False) -> list[dict]:
    """Mean score of steered generations for every (layer, coefficient); one row each.

    `score(prompts, continuations)` is a reward function (e.g. `alignlab.resolve.reward_fn(...)`).
    """
    from alignlab.progress import progress_bar

    rows = []
    with progress_bar("steering sweep", total=len(layers) * len(coefficients), enabled=progress) as bar:
        for layer in layers:
            for c in coefficients:
                texts = steered_texts(model, tokenizer, prompts, vector, c, layer, max_new_tokens, temperature, seed)
                scores = [float(s) for s in score(list(prompts), texts)]
                rows.append({"layer": layer, "coefficient": float(c), "score": sum(scores) / len(scores)})
                bar.advance(score=rows[-1]["score"])
    return rows


def is_monotonic(values: Sequence[float], increasing: bool = True) -> bool:
    """True when `values` never decreases (or never increases)."""
    pairs = list(zip(values, values[1:]))
    return all(b >= a for a, b in pairs) if increasing else all(b <= a for a, b in pairs)
