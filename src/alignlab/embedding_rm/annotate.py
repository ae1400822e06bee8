"""Simulated annotators and pairing strategies over a pool of scored responses.

Annotator (SPEC §5): `P(i ≻ j) = σ(q · (r_i − r_j) / s)` with gold reward r, annotation
quality q (10 ≈ an expert, 0.1 ≈ a coin flip) and reward scale s (default: the standard
deviation of the gold rewards). Pairs are drawn by a strategy: `random` (two responses to
the same prompt), `high_diversity` / `low_diversity` (of `candidates` same-prompt partners,
the farthest / nearest in embedding space), `cross_prompt` (responses to different prompts).
"""

from __future__ import annotations

import numpy as np

from alignlab.embedding_rm.data import PairData, check_embeddings
from alignlab.errors import ConfigError, DataError

STRATEGIES = ("random", "high_diversity", "low_diversity", "cross_prompt")


def preference_prob(r_a: np.ndarray, r_b: np.ndarray, quality: float, scale: float = 1.0) -> np.ndarray:
    """P(a ≻ b) = σ(q (r_a − r_b) / s) for a simulated annotator."""
    if scale <= 0 or not np.isfinite(scale):
        raise ConfigError(f"reward scale must be a positive number, got {scale}")
    if quality < 0:
        raise ConfigError(f"annotation quality must be ≥ 0, got {quality}")
    z = quality * (np.asarray(r_a, np.float64) - np.asarray(r_b, np.float64)) / scale
    return 0.5 * (1.0 + np.tanh(z / 2.0))  # σ(z), stable for large |z|


def reward_scale(gold: np.ndarray) -> float:
    """Default reward scale s: the standard deviation of the gold rewards (1 if they are constant)."""
    sd = float(np.std(np.asarray(gold, np.float64)))
    return sd if sd > 0 else 1.0


def annotate(r_a: np.ndarray, r_b: np.ndarray, quality: float, scale: float | None = None,
             seed: int = 0) -> np.ndarray:
    """Sampled hard labels (1.0 = a preferred) from the simulated annotator."""
    s = reward_scale(np.concatenate([np.ravel(r_a), np.ravel(r_b)])) if scale is None else scale
    p = preference_prob(r_a, r_b, quality, s)
    return (np.random.default_rng(seed).random(p.shape) < p).astype(np.float32)


def _group_index(groups: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Items sorted by group, and per item: its group's start in that order, size, own position."""
    order = np.argsort(groups, kind="stable")
    _, start, counts = np.unique(groups[order], return_index=True, return_counts=True)
    size_sorted = np.repeat(counts, counts)
    start_sorted = np.repeat(start, counts)
    pos_sorted = np.arange(len(groups)) - start_sorted
    inv = np.empty_like(order)
    inv[order] = np.arange(len(order))
    return order, start_sorted[inv], size_sorted[inv], pos_sorted[inv]


def make_pairs(groups: np.ndarray, n_pairs: int, strategy: str = "random", emb: np.ndarray | None = None,
               seed: int = 0, candidates: int = 8) -> tuple[np.ndarray, np.ndarray]:
    """(left, right) row indices of n_pairs pairs drawn by `strategy`; groups[i] is row i's prompt."""
    groups = np.asarray(groups)
    if groups.ndim != 1 or len(groups) < 2:
        raise DataError(f"groups: need a 1-D array of at least 2 prompt ids, got shape {groups.shape}")
    if n_pairs < 1:
        raise ConfigError(f"n_pairs must be ≥ 1, got {n_pairs}")
    if strategy not in STRATEGIES:
        raise ConfigError(f"pairing strategy: '{strategy}' is not one of {', '.join(STRATEGIES)}")
    rng = np.random.default_rng(seed)
    n = len(groups)
    if strategy == "cross_prompt":
        if len(np.unique(groups)) < 2:
            raise DataError("cross_prompt pairing needs responses to at least 2 prompts")
        left = rng.integers(0, n, n_pairs)
        right = rng.integers(0, n, n_pairs)
        while (same := groups[left] == groups[right]).any():
            right[same] = rng.integers(0, n, int(same.sum()))
        return left, right
    order, start, size, pos = _group_index(groups)
    eligible = np.flatnonzero(size >= 2)
    if len(eligible) == 0:
        raise DataError("same-prompt pairing needs at least one prompt with 2 or more responses")
    left = eligible[rng.integers(0, len(eligible), n_pairs)]
    k = 1 if strategy == "random" else candidates
    offs = rng.integers(1, size[left][:, None], (n_pairs, k))  # never 0: a partner is not itself
    cand = order[start[left][:, None] + (pos[left][:, None] + offs) % size[left][:, None]]
    if k == 1:
        return left, cand[:, 0]
    if emb is None:
        raise DataError(f"pairing strategy '{strategy}' needs embeddings")
    emb = check_embeddings(emb)
    if emb.shape[0] != n:
        raise DataError(f"embeddings have {emb.shape[0]} rows but groups has {n}")
    e = np.asarray(emb, np.float32)
    dist = np.concatenate([np.linalg.norm(e[cand[c : c + 4096]] - e[left[c : c + 4096]][:, None, :], axis=-1)
                           for c in range(0, n_pairs, 4096)])
    pick = dist.argmax(1) if strategy == "high_diversity" else dist.argmin(1)
    return left, cand[np.arange(n_pairs), pick]


def simulate_preferences(emb: np.ndarray, gold: np.ndarray, groups: np.ndarray, n_pairs: int,
                         quality: float, strategy: str = "random", scale: float | None = None,
                         seed: int = 0) -> PairData:
    """Pairs drawn by `strategy` and labelled by a simulated annotator of quality q."""
    emb = check_embeddings(emb)
    gold = np.asarray(gold, np.float64)
    if gold.shape != (emb.shape[0],):
        raise DataError(f"gold rewards: expected shape ({emb.shape[0]},) to match the embeddings, got {gold.shape}")
    if not np.isfinite(gold).all():
        raise DataError("gold rewards contain NaN/inf")
    left, right = make_pairs(groups, n_pairs, strategy, emb, seed=seed)
    labels = annotate(gold[left], gold[right], quality, reward_scale(gold) if scale is None else scale, seed=seed + 1)
    return PairData(emb, left, right, labels)
