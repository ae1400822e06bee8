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
    """A stage's rows for the summary table, figures and notes for the report."""

    name: str
    rows: list[dict[str, Any]] = field(default_factory=list)
    figures: list[Path] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    seconds: float = 0.0
