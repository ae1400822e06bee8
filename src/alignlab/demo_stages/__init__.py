"""Stages of `alignlab demo`; each is `run(ctx: DemoContext) -> StageResult`.

Stages run in order (sft, prefs, rlhf, psle, inference, embedding_rm, akd) and pass models along
through `ctx.artifacts`. Each must finish in about a minute on a 2-core CPU.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from alignlab.testbed.world import World


@dataclass
class DemoContext:
    """What a demo stage gets: the world, the base model, a folder, shared artifacts."""

    world: World
    base_model: str  # folder of the pretrained testbed student
    out_dir: Path  # this demo run's root; a stage writes under out_dir / <stage>
    seed: int = 0
    quick: bool = False  # tests: smallest settings that still exercise every step
    artifacts: dict[str, Any] = field(default_factory=dict)  # e.g. "sft_model", "rm_model"


@dataclass
class StageResult:
    """A stage's rows (its own metrics), figures and notes, plus for the report a one-line verdict
    and headline rows (method → the gold measure that matters, before → after; keys as in
    `alignlab.report.headline_table`)."""

    name: str
    rows: list[dict[str, Any]] = field(default_factory=list)
    figures: list[Path] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    seconds: float = 0.0
    verdict: str = ""
    headline: list[dict[str, Any]] = field(default_factory=list)

    def tables(self) -> dict[str, list[dict[str, Any]]]:
        """The rows as small tables: a row joins the table above when they share a metric,
        else starts a new one (so a reward model's row does not widen the policies' table).
        Rows may name their table with a 'table' key; empty cells and 'stage' are dropped."""
        groups: list[tuple[str, list[dict[str, Any]], set[str]]] = []
        for row in self.rows:
            r = {k: v for k, v in row.items() if k not in ("stage", "table") and v is not None and v != ""}
            name, metrics = str(row.get("table", "")), set(r) - {"method"}
            if groups and (groups[-1][0] == name if name else not groups[-1][0] and groups[-1][2] & metrics):
                groups[-1][1].append(r)
                groups[-1][2].update(metrics)
            else:
                groups.append((name, [r], metrics))
        return {name or " " * i: rows for i, (name, rows, _) in enumerate(groups)}
