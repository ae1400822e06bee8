"""Preference pairs over an embedding matrix: the one input every head and ensemble takes.

`PairData(emb, left, right, label)`: `emb` [n, D] vectors (numpy, may be memory-mapped),
pair k compares rows `left[k]` and `right[k]`, `label[k]` = P(left ≻ right) (1, 0 or soft).
Researchers bring their own embeddings by filling these four arrays.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from alignlab.errors import DataError


def check_embeddings(emb: np.ndarray, what: str = "embeddings") -> np.ndarray:
    """A finite float 2-D array [n, D] with n ≥ 1, or a DataError saying what is wrong."""
    if not isinstance(emb, np.ndarray):
        emb = np.asarray(emb)
    if emb.ndim != 2:
        raise DataError(f"{what}: expected a 2-D array [n, dim], got shape {emb.shape}")
    if emb.shape[0] == 0 or emb.shape[1] == 0:
        raise DataError(f"{what}: empty (shape {emb.shape})")
    if not np.issubdtype(emb.dtype, np.number):
        raise DataError(f"{what}: expected numbers, got dtype {emb.dtype}")
    finite = np.isfinite(emb).all(axis=1)
    if not finite.all():
        bad = np.flatnonzero(~finite)
        raise DataError(f"{what}: {len(bad)} row(s) contain NaN/inf (first rows: {bad[:5].tolist()})")
    return emb


@dataclass
class PairData:
    """Preference pairs over rows of an embedding matrix (label = P(left ≻ right))."""

    emb: np.ndarray
    left: np.ndarray
    right: np.ndarray
    label: np.ndarray

    def __post_init__(self) -> None:
        self.left = np.asarray(self.left, dtype=np.int64).reshape(-1)
        self.right = np.asarray(self.right, dtype=np.int64).reshape(-1)
        self.label = np.asarray(self.label, dtype=np.float32).reshape(-1)
        self.validate()

    @property
    def dim(self) -> int:
        return int(self.emb.shape[1])

    def __len__(self) -> int:
        return len(self.left)

    def validate(self) -> None:
        """Raise DataError on NaN, out-of-range indices, mismatched lengths or no pairs."""
        check_embeddings(self.emb)
        if not (len(self.left) == len(self.right) == len(self.label)):
            raise DataError(f"pairs: left ({len(self.left)}), right ({len(self.right)}) and label "
                            f"({len(self.label)}) must have the same length")
        if len(self.left) == 0:
            raise DataError("pairs: no preference pairs (empty split)")
        n = self.emb.shape[0]
        for name, idx in (("left", self.left), ("right", self.right)):
            if idx.min() < 0 or idx.max() >= n:
                raise DataError(f"pairs: {name} index out of range [0, {n}) (min {idx.min()}, max {idx.max()})")
        if not np.isfinite(self.label).all() or (self.label < 0).any() or (self.label > 1).any():
            raise DataError("pairs: labels must be probabilities in [0, 1] (1 = left preferred)")

    def subset(self, idx: np.ndarray) -> PairData:
        """The pairs at positions idx (same embedding matrix)."""
        idx = np.asarray(idx)
        if idx.size == 0:
            raise DataError("pairs: the requested split is empty")
        return PairData(self.emb, self.left[idx], self.right[idx], self.label[idx])

    def split(self, frac: float, seed: int = 0) -> tuple[PairData, PairData]:
        """(rest, held-out) with a `frac` share held out at random; both must be non-empty."""
        if not 0 < frac < 1:
            raise DataError(f"split fraction must be in (0, 1), got {frac}")
        perm = np.random.default_rng(seed).permutation(len(self))
        k = int(round(frac * len(self)))
        if k == 0 or k == len(self):
            raise DataError(f"splitting {len(self)} pairs with fraction {frac} leaves an empty split")
        return self.subset(np.sort(perm[k:])), self.subset(np.sort(perm[:k]))


def pairs_from_arrays(chosen: np.ndarray, rejected: np.ndarray) -> PairData:
    """PairData from row-aligned chosen and rejected embedding arrays (chosen preferred)."""
    chosen = check_embeddings(chosen, "chosen embeddings")
    rejected = check_embeddings(rejected, "rejected embeddings")
    if chosen.shape != rejected.shape:
        raise DataError(f"chosen {chosen.shape} and rejected {rejected.shape} embeddings differ in shape")
    n = chosen.shape[0]
    emb = np.concatenate([chosen, rejected]).astype(np.float32, copy=False)
    return PairData(emb, np.arange(n), np.arange(n, 2 * n), np.ones(n, dtype=np.float32))
