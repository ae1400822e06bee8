"""Plots a reader would rather look at than read: curves, reward vs drift, accuracy vs layer."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

Series = Mapping[str, tuple[Sequence[float], Sequence[float]]]


def save_figure(fig, path: str | Path) -> Path:
    """Lay out, write as PNG (creating the folder) and free the figure."""
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path


def line_plot(series: Series, path: str | Path, title: str = "", xlabel: str = "step",
              ylabel: str = "", markers: bool = False, hline: float | None = None) -> Path:
    """One line per named (xs, ys) series, saved as PNG."""
    fig, ax = plt.subplots(figsize=(6, 4), dpi=110)
    for name, (xs, ys) in series.items():
        ax.plot(list(xs), list(ys), marker="o" if markers else None, ms=3, label=name)
    if hline is not None:
        ax.axhline(hline, color="grey", lw=0.8, ls="--")
    ax.set_title(title)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    if len(series) > 1:
        ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    return save_figure(fig, path)


def metric_curves(records: Sequence[Mapping], keys: Sequence[str], path: str | Path, title: str = "") -> Path | None:
    """Plot the given metrics.jsonl keys against step; None when none of them was logged."""
    series = {}
    for k in keys:
        pts = [(r["step"], r[k]) for r in records if isinstance(r.get(k), (int, float)) and "step" in r]
        if pts:
            series[k] = ([p[0] for p in pts], [p[1] for p in pts])
    if not series:
        return None
    return line_plot(series, path, title=title, ylabel="value")
