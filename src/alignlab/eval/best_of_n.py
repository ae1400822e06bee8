"""Reward-model evaluation against a gold reward: best-of-N, per-prompt Spearman, pairwise accuracy.

Best-of-N (SPEC §5): for each prompt, draw N of its K pooled responses at random, keep the
one the proxy scores highest, and record its gold reward; average over prompts, repeat for
`n_draws` random subsamplings, report mean ± std over the draws. Plain functions of numpy
arrays [P prompts, K responses]; usable with any reward model.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from alignlab.errors import DataError


@dataclass
class BoNCurve:
    """Gold reward of the best-of-N pick: mean and std over random subsamplings, per N."""

    ns: list[int]
    mean: list[float]
    std: list[float]

    def at(self, n: int) -> tuple[float, float]:
        i = self.ns.index(n)
        return self.mean[i], self.std[i]


def _check_pool(proxy: np.ndarray, gold: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    proxy, gold = np.asarray(proxy, np.float64), np.asarray(gold, np.float64)
    if proxy.ndim != 2 or proxy.shape != gold.shape:
        raise DataError(f"proxy {proxy.shape} and gold {gold.shape} must both be [prompts, responses]")
    if proxy.size == 0:
        raise DataError("best-of-N needs at least one prompt with one response")
    if not (np.isfinite(proxy).all() and np.isfinite(gold).all()):
        raise DataError("proxy or gold rewards contain NaN/inf")
    return proxy, gold


def default_ns(k: int) -> list[int]:
    """N = 1, 2, 4, … up to the pool size K (K itself included)."""
    ns, n = [], 1
    while n < k:
        ns.append(n)
        n *= 2
    return ns + [k]


def best_of_n(proxy: np.ndarray, gold: np.ndarray, ns: Sequence[int] | None = None, n_draws: int = 50,
              seed: int = 0) -> BoNCurve:
    """Gold reward of the proxy's best-of-N pick, averaged over prompts; mean ± std over draws."""
    proxy, gold = _check_pool(proxy, gold)
    p, k = proxy.shape
    ns = list(ns) if ns is not None else default_ns(k)
    if any(n < 1 or n > k for n in ns):
        raise DataError(f"every N must be in [1, {k}] (the pool size), got {ns}")
    rng = np.random.default_rng(seed)
    rows = np.arange(p)[:, None]
    vals = np.zeros((len(ns), n_draws))
    for d in range(n_draws):
        perm = np.argsort(rng.random((p, k)), axis=1)  # a random order of each prompt's pool
        sp, sg = proxy[rows, perm], gold[rows, perm]
        for i, n in enumerate(ns):
            pick = sp[:, :n].argmax(1)
            vals[i, d] = sg[np.arange(p), pick].mean()
    return BoNCurve(list(ns), vals.mean(1).tolist(), vals.std(1).tolist())


def _ranks(x: np.ndarray) -> np.ndarray:
    """Ranks along the last axis with ties given their average rank."""
    from scipy.stats import rankdata

    return rankdata(x, axis=-1)


def spearman_per_prompt(proxy: np.ndarray, gold: np.ndarray) -> tuple[float, np.ndarray]:
    """Spearman correlation of proxy and gold within each prompt: (mean over prompts, per prompt).

    Prompts where either reward is constant have no correlation (NaN) and are left out of the mean.
    """
    proxy, gold = _check_pool(proxy, gold)
    if proxy.shape[1] < 2:
        raise DataError("Spearman correlation needs at least 2 responses per prompt")
    rp, rg = _ranks(proxy), _ranks(gold)
    rp, rg = rp - rp.mean(1, keepdims=True), rg - rg.mean(1, keepdims=True)
    den = np.sqrt((rp**2).sum(1) * (rg**2).sum(1))
    with np.errstate(invalid="ignore", divide="ignore"):
        rho = np.where(den > 0, (rp * rg).sum(1) / np.where(den > 0, den, 1), np.nan)
    ok = ~np.isnan(rho)
    return (float(rho[ok].mean()) if ok.any() else float("nan")), rho


def pairwise_accuracy(score_a: np.ndarray, score_b: np.ndarray, label: np.ndarray | None = None) -> float:
    """Share of pairs ordered as labelled (label 1 = a preferred; default all 1); ties count ½."""
    a, b = np.asarray(score_a, np.float64).ravel(), np.asarray(score_b, np.float64).ravel()
    if a.shape != b.shape or a.size == 0:
        raise DataError(f"pairwise accuracy needs equal, non-empty score arrays (got {a.shape} and {b.shape})")
    y = np.ones_like(a) if label is None else np.asarray(label, np.float64).ravel()
    if y.shape != a.shape:
        raise DataError(f"labels {y.shape} do not match scores {a.shape}")
    want = np.where(y >= 0.5, 1.0, -1.0)
    agree = np.sign(a - b) * want
    return float(np.mean(np.where(agree > 0, 1.0, np.where(agree == 0, 0.5, 0.0))))


def plot_bon(curves: Mapping[str, BoNCurve], path: str | Path, title: str = "best-of-N under the gold reward") -> Path:
    """Overlay best-of-N curves (mean ± std band) of several methods on a log-N axis."""
    from alignlab.plots import plt, save_figure

    fig, ax = plt.subplots(figsize=(6.5, 4.2), dpi=110)
    for name, c in curves.items():
        m, s = np.array(c.mean), np.array(c.std)
        ax.plot(c.ns, m, marker="o", ms=3, label=name)
        ax.fill_between(c.ns, m - s, m + s, alpha=0.15)
    ax.set_xscale("log", base=2)
    ax.set_xlabel("N (responses sampled per prompt)")
    ax.set_ylabel("gold reward of the best-of-N pick")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    return save_figure(fig, path)
