"""Function vectors (Todd et al., 2024): a task carried by a few attention heads, added zero-shot.

1. mean activation of every head at the last token over N few-shot prompts (10 shots);
2. causal indirect effect (CIE) of each head = mean gain in P(correct first token) when
   its mean activation is patched into prompts whose in-context labels are shuffled;
3. top heads (10 by default) → each projected through its layer's output projection
   (bias excluded) → summed = v;
4. v added to the residual stream after block ℓ at the last token of zero-shot prompts;
   accuracy (top-1 first token) vs ℓ.
Patching only the last token leaves the prefix unchanged, so each head's effect is one
single-token forward on a cached prefix. Prompts start with BOS exactly when the tokenizer's
default encoding adds one (`prompt_ids`), as in the reference implementation.
"""

from __future__ import annotations

import copy
import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch

from alignlab.errors import DataError
from alignlab.interventions.artifacts import load_artifact, save_artifact
from alignlab.interventions.hooks import (
    Hooks,
    Site,
    cache_kwarg,
    head_shape,
    head_to_residual,
    last_token_activations,
    num_layers,
)
from alignlab.scoring import pad_batch

Pair = tuple[str, str]


@dataclass(frozen=True)
class ICLTemplate:
    """How pairs become a prompt: shots, then the query; answers follow `answer_prefix`."""

    shot: str = "{x} -> {y} ; "
    query: str = "{x} ->"
    answer_prefix: str = " "

    def prompt(self, shots: Sequence[Pair], query: str) -> str:
        """Shots then the query, e.g. 'a -> b ; c -> d ; e ->'."""
        return "".join(self.shot.format(x=x, y=y) for x, y in shots) + self.query.format(x=query)


QA_TEMPLATE = ICLTemplate(shot="Q: {x}\nA: {y}\n\n", query="Q: {x}\nA:", answer_prefix=" ")


def icl_prompts(pairs: Sequence[Pair], n_prompts: int, n_shots: int, template: ICLTemplate, seed: int = 0,
                shuffle_labels: bool = False, queries: Sequence[Pair] | None = None) -> list[tuple[str, str]]:
    """(prompt, answer) with `n_shots` demonstrations; `shuffle_labels` permutes the shots' outputs."""
    if len(pairs) < n_shots + 1:
        raise DataError(f"need at least {n_shots + 1} pairs for {n_shots}-shot prompts, got {len(pairs)}")
    rng = random.Random(seed)
    out = []
    for i in range(n_prompts):
        q = queries[i % len(queries)] if queries else rng.choice(pairs)
        shots = rng.sample([p for p in pairs if p != q], n_shots)
        if shuffle_labels and n_shots > 1:
            ys = [y for _, y in shots]
            for _ in range(10):  # a derangement when one is easy to find
                rng.shuffle(ys)
                if all(y != s[1] for y, s in zip(ys, shots)):
                    break
            shots = [(x, y) for (x, _), y in zip(shots, ys)]
        out.append((template.prompt(shots, q[0]), q[1]))
    return out


def first_token_ids(tokenizer, answers: Sequence[str], prefix: str = " ") -> list[int]:
    """Id of the first token of each answer as it follows the prompt."""
    ids = []
    for a in answers:
        t = tokenizer(prefix + a, add_special_tokens=False)["input_ids"]
        if not t:
            raise DataError(f"answer {a!r} encodes to no tokens")
        ids.append(t[0])
    return ids


def adds_bos(tokenizer) -> bool:
    """Whether the tokenizer's default encoding starts with its BOS token (Llama-style
    tokenizers do; GPT-2-, Qwen- and SmolLM-style ones do not)."""
    bos = getattr(tokenizer, "bos_token_id", None)
    if bos is None:
        return False
    ids = tokenizer("")["input_ids"]
    return bool(ids) and ids[0] == bos


def prompt_ids(tokenizer, prompts: Sequence[str]) -> list[list[int]]:
    """Token ids of each ICL prompt as the reference implementation feeds them (it encodes
    with the tokenizer's defaults): BOS first exactly when the tokenizer's default adds it,
    and no other special token (a trailing EOS would move the last position)."""
    bos = [tokenizer.bos_token_id] if adds_bos(tokenizer) else []
    return [bos + tokenizer(p, add_special_tokens=False)["input_ids"] for p in prompts]


def _encode(tokenizer, prompts: Sequence[str]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    ids, mask = pad_batch(prompt_ids(tokenizer, prompts), pad, side="left")
    return ids, mask, (mask.cumsum(-1) - 1).clamp_min(0)


@torch.no_grad()
def next_token_logprobs(model, tokenizer, prompts: Sequence[str], batch_size: int = 16) -> torch.Tensor:
    """log p(next token) at the end of each prompt -> [N, V]."""
    model.eval()
    dev = next(model.parameters()).device
    out = []
    for s in range(0, len(prompts), batch_size):
        ids, mask, pos = _encode(tokenizer, prompts[s : s + batch_size])
        logits = model(input_ids=ids.to(dev), attention_mask=mask.to(dev), position_ids=pos.to(dev), use_cache=False).logits
        out.append(logits[:, -1].float().log_softmax(-1).cpu())
    return torch.cat(out)


def mean_head_activations(model, tokenizer, prompts: Sequence[str], batch_size: int = 16) -> torch.Tensor:
    """Mean output of every head at the last token -> [layers, heads, head_dim]."""
    sites = [Site("heads", ly) for ly in range(num_layers(model))]
    acts = last_token_activations(model, tokenizer, prompt_ids(tokenizer, prompts), sites, batch_size)
    return torch.stack([acts[s].mean(0) for s in sites])


def _patch_head(head: int, value: torch.Tensor):
    def fn(x: torch.Tensor) -> torch.Tensor:
        x = x.clone()
        x[..., head, :] = value.to(x.dtype)
        return x

    return fn


class _LastStep:
    """The last prompt token run on a cached prefix; the cache is cropped back after each run."""

    def __init__(self, model, ids, mask, pos, target, past):
        self.model, self.ids, self.mask, self.pos, self.target, self.past = model, ids, mask, pos, target, past
        self.croppable = callable(getattr(past, "crop", None))

    def prob(self) -> torch.Tensor:
        """P(target first token) for each prompt under the hooks active now."""
        cache = self.past if self.croppable else copy.deepcopy(self.past)
        out = self.model(input_ids=self.ids[:, -1:], attention_mask=self.mask, position_ids=self.pos[:, -1:],
                         use_cache=True, **{cache_kwarg(self.model): cache})
        if self.croppable:
            self.past.crop(-1)  # drop the last token again (negative = tokens to remove; 4.x and 5.x)
        return out.logits[:, -1].float().softmax(-1).gather(1, self.target[:, None])[:, 0]


@torch.no_grad()
def indirect_effects(model, tokenizer, corrupted: Sequence[tuple[str, str]], mean_acts: torch.Tensor,
                     template: ICLTemplate, batch_size: int = 16, progress: bool = False) -> torch.Tensor:
    """CIE [layers, heads]: mean P(correct) gain when a head's mean activation is patched in."""
    from alignlab.progress import progress_bar

    model.eval()
    dev = next(model.parameters()).device
    n_layers, (n_heads, _) = num_layers(model), head_shape(model)
    targets = torch.tensor(first_token_ids(tokenizer, [a for _, a in corrupted], template.answer_prefix))
    total = torch.zeros(n_layers, n_heads, dtype=torch.float64)
    batches = range(0, len(corrupted), batch_size)
    with progress_bar("head effects", total=len(batches) * n_layers * n_heads, enabled=progress) as bar:
        for s in batches:
            ids, mask, pos = _encode(tokenizer, [p for p, _ in corrupted[s : s + batch_size]])
            ids, mask, pos = ids.to(dev), mask.to(dev), pos.to(dev)
            tgt = targets[s : s + batch_size].to(dev)
            prefix = model(input_ids=ids[:, :-1], attention_mask=mask[:, :-1], position_ids=pos[:, :-1], use_cache=True)
            cache = prefix["cache"] if "cache" in prefix else prefix["past_key_values"]
            step = _LastStep(model, ids, mask, pos, tgt, cache)
            base = step.prob()
            for layer in range(n_layers):
                for head in range(n_heads):
                    with Hooks(model) as h:
                        h.edit(Site("heads", layer), _patch_head(head, mean_acts[layer, head].to(dev)), "last")
                        patched = step.prob()
                    total[layer, head] += float((patched - base).sum())
                    bar.advance()
    return (total / len(corrupted)).float()


@dataclass
class FunctionVector:
    """The summed head contributions and how they were chosen."""

    vector: torch.Tensor  # [d]
    heads: list[tuple[int, int]]
    effects: torch.Tensor  # CIE [layers, heads]
    meta: dict = field(default_factory=dict)

    def apply(self, model, layer: int, coefficient: float = 1.0, positions="last") -> Hooks:
        """Hooks adding the vector after block `layer` at the last token."""
        return Hooks(model).add(Site("resid", layer), self.vector, coefficient, positions)

    def save(self, path: str | Path) -> Path:
        """Save as <path>/function_vector.safetensors + .json."""
        return save_artifact(path, "function_vector", {"vector": self.vector, "effects": self.effects},
                             {"heads": self.heads, "meta": self.meta})

    @classmethod
    def load(cls, path: str | Path) -> FunctionVector:
        """Load a vector saved by `save`."""
        t, info = load_artifact(path, "function_vector", "function vector")
        return cls(t["vector"], [tuple(h) for h in info["heads"]], t["effects"], info.get("meta", {}))


def build_function_vector(model, mean_acts: torch.Tensor, effects: torch.Tensor, top_k: int = 10) -> FunctionVector:
    """Sum of the top-k heads' mean outputs, each through its layer's output projection."""
    n_heads = effects.shape[1]
    order = torch.argsort(effects.flatten(), descending=True)[: min(top_k, effects.numel())]
    heads = [(int(i) // n_heads, int(i) % n_heads) for i in order]
    v = sum(head_to_residual(model, ly, hd, mean_acts[ly, hd]) for ly, hd in heads)
    return FunctionVector(v.cpu(), heads, effects, {"top_k": top_k})


def extract(model, tokenizer, pairs: Sequence[Pair], template: ICLTemplate = ICLTemplate(), n_prompts: int = 32,
            n_shots: int = 10, top_k: int = 10, seed: int = 0, progress: bool = False) -> FunctionVector:
    """Mean head activations on clean prompts + CIE on label-shuffled prompts -> FunctionVector."""
    clean = icl_prompts(pairs, n_prompts, n_shots, template, seed)
    corrupted = icl_prompts(pairs, n_prompts, n_shots, template, seed + 1, shuffle_labels=True)
    mean_acts = mean_head_activations(model, tokenizer, [p for p, _ in clean])
    effects = indirect_effects(model, tokenizer, corrupted, mean_acts, template, progress=progress)
    fv = build_function_vector(model, mean_acts, effects, top_k)
    fv.meta.update({"n_prompts": n_prompts, "n_shots": n_shots, "seed": seed})
    return fv


def accuracy(model, tokenizer, prompts: Sequence[str], answers: Sequence[str], prefix: str = " ",
             batch_size: int = 16) -> float:
    """Share of prompts whose top-1 next token is the answer's first token."""
    lp = next_token_logprobs(model, tokenizer, prompts, batch_size)
    tgt = torch.tensor(first_token_ids(tokenizer, answers, prefix))
    return float((lp.argmax(-1) == tgt).float().mean())


def accuracy_by_layer(model, tokenizer, fv: FunctionVector, queries: Sequence[Pair], template: ICLTemplate = ICLTemplate(),
                      layers: Sequence[int] | None = None, coefficient: float = 1.0, n_shots_baseline: int = 10,
                      shot_pool: Sequence[Pair] | None = None, seed: int = 0) -> dict:
    """Zero-shot accuracy with the FV added at each layer, plus zero- and few-shot baselines."""
    layers = list(range(num_layers(model))) if layers is None else list(layers)
    zs_prompts = [template.query.format(x=x) for x, _ in queries]
    answers = [y for _, y in queries]
    pool = list(shot_pool) if shot_pool is not None else list(queries)
    few = icl_prompts(pool, len(queries), n_shots_baseline, template, seed, queries=list(queries))
    out = {"zero_shot": accuracy(model, tokenizer, zs_prompts, answers, template.answer_prefix),
           "few_shot": accuracy(model, tokenizer, [p for p, _ in few], answers, template.answer_prefix),
           "by_layer": {}}
    for layer in layers:
        with fv.apply(model, layer, coefficient):
            out["by_layer"][layer] = accuracy(model, tokenizer, zs_prompts, answers, template.answer_prefix)
    return out
