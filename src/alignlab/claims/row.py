"""What a claim row is: a paper's headline claim, the tests that decide it, and the function
that measures one seed. The runner (`alignlab.claims.runner`) calls `measure` once per seed,
puts a t interval on every number and applies the verdict rule of `alignlab.claims.stats`."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from alignlab.claims.stats import Direction, Interval


@dataclass(frozen=True)
class ClaimTest:
    """One quantity measured per seed (a key of the seed's numbers) and the claimed direction
    of its difference from 0."""

    key: str
    direction: Direction
    label: str  # what a reader sees, e.g. "Cal-DPO − DPO gold reward at equal drift"


@dataclass
class RowContext:
    """What a row gets: where its runs go, the size preset, the base model folders and an
    artifact cache shared by the rows of one command (e.g. the SFT model of each seed)."""

    out_dir: Path  # DIR/runs/<row>
    quick: bool
    models: dict[str, str]  # size name → model folder (resolved on first use)
    shared: dict[str, Any] = field(default_factory=dict)

    def seed_dir(self, seed: int) -> Path:
        path = self.out_dir / str(seed)
        path.mkdir(parents=True, exist_ok=True)
        return path


@dataclass
class SeedResult:
    """One seed's numbers (scalars, every test key among them), optional curves to plot
    ({name: (xs, ys)}) and a note (e.g. which model pair was used)."""

    numbers: dict[str, float]
    curves: dict[str, tuple[list[float], list[float]]] = field(default_factory=dict)
    note: str = ""


@dataclass(frozen=True)
class ClaimRow:
    """A seed paper's headline claim as something the testbed can measure.

    `untestable(per_seed_numbers)` may return {test key: reason} for tests the testbed cannot
    decide (e.g. the base model has no headroom on the measure); `summary(intervals)` may add
    the row's own reading (e.g. where steering breaks); `curve_axes` labels the curves."""

    key: str
    paper: str
    claim: str
    tests: tuple[ClaimTest, ...]
    measure: Callable[[RowContext, int], SeedResult]
    setup: str = ""  # one line: model, data, steps (filled by the row from its size preset)
    untestable: Callable[[list[dict[str, float]]], dict[str, str]] | None = None
    summary: Callable[[dict[str, Interval]], str] | None = None
    curve_axes: tuple[str, str] = ("", "")
    extra_keys: tuple[str, ...] = ()  # numbers worth a line in CLAIMS.md besides the tests
