"""Run claim rows over seeds, put intervals on their numbers and apply the verdict rule."""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from alignlab.claims.row import ClaimRow, RowContext, SeedResult
from alignlab.claims.stats import Interval, outcome, t_interval, verdict
from alignlab.progress import fmt_duration, heartbeat, say


class Untestable(Exception):
    """Raised by a row's `measure` when it cannot run here at all (its model or data is absent):
    the row becomes "untestable here" with the message as its reason, not an error."""


@dataclass
class RowOutcome:
    """A row's per-seed results, the intervals of its numbers, its tests' outcomes and verdict."""

    row: ClaimRow
    seeds: list[int]
    results: list[SeedResult]
    intervals: dict[str, Interval] = field(default_factory=dict)
    outcomes: dict[str, str] = field(default_factory=dict)
    verdict: str = ""
    reason: str = ""
    seconds: float = 0.0
    error: str = ""
    summary: str = ""  # the row's own reading of its intervals (e.g. where steering breaks)

    def measurement(self) -> str:
        """'label: mean [lo, hi]; …' over the row's tests."""
        parts = [f"{t.label}: {self.intervals[t.key].text()}" for t in self.row.tests if t.key in self.intervals]
        return "; ".join(parts + ([self.summary] if self.summary else []))

    def as_dict(self) -> dict[str, Any]:
        r = self.row
        return {"key": r.key, "paper": r.paper, "claim": r.claim, "setup": r.setup, "verdict": self.verdict,
                "reason": self.reason, "summary": self.summary, "seconds": round(self.seconds, 1), "error": self.error,
                "tests": [{"key": t.key, "label": t.label, "direction": t.direction,
                           "outcome": self.outcomes.get(t.key, "unmeasured"),
                           **(self.intervals[t.key].as_dict() if t.key in self.intervals else {})}
                          for t in r.tests],
                "intervals": {k: iv.as_dict() for k, iv in self.intervals.items()},
                "per_seed": {str(s): {"numbers": res.numbers, "note": res.note, "curves": res.curves}
                             for s, res in zip(self.seeds, self.results)}}


def judge(row: ClaimRow, seeds: list[int], results: list[SeedResult]) -> RowOutcome:
    """Intervals for every number measured on all seeds, the tests' outcomes and the verdict.
    A test the row declares untestable here (e.g. the base model has no headroom on it) is
    not judged; its reason joins the verdict's."""
    out = RowOutcome(row, seeds, results)
    keys = [k for k in (results[0].numbers if results else {}) if all(k in r.numbers for r in results)]
    out.intervals = {k: t_interval([r.numbers[k] for r in results]) for k in keys}
    why_not = row.untestable([r.numbers for r in results]) if row.untestable and results else {}
    out.outcomes = {t.key: "untestable" if t.key in why_not else
                    outcome(out.intervals[t.key], t.direction) if t.key in out.intervals else "unmeasured"
                    for t in row.tests}
    out.verdict, out.reason = verdict([out.outcomes[t.key] for t in row.tests])
    labels = {t.key: t.label for t in row.tests}
    out.reason += "".join(f"; untestable here: {labels.get(k, k)} — {why}" for k, why in why_not.items())
    contra = [t.label for t in row.tests if out.outcomes[t.key] == "contradicts"]
    if contra:
        out.reason += "; opposite to the claim: " + ", ".join(contra)
    if row.summary is not None and out.intervals:
        out.summary = row.summary(out.intervals)
    return out


def run_row(row: ClaimRow, ctx: RowContext, seeds: Sequence[int]) -> RowOutcome:
    """Measure every seed (progress lines, a heartbeat in logs) and judge the row. A seed that
    fails makes the row untestable with the error as its reason; the other rows go on."""
    t0, results = time.time(), []
    for i, seed in enumerate(seeds, 1):
        t = time.time()
        label = f"claims: {row.key} seed {seed} ({i}/{len(seeds)})"
        say(f"{label} started")
        try:
            with heartbeat(lambda t=t, label=label: f"{label} running for {fmt_duration(time.time() - t)}"):
                res = row.measure(ctx, seed)
        except Untestable as e:  # nothing to measure on any seed: say why once, no error
            say(f"claims: {row.key} is untestable here: {e}")
            out = RowOutcome(row, [], [], verdict="untestable here", reason=str(e))
            out.seconds = time.time() - t0
            return out
        except Exception as e:  # noqa: BLE001 — one broken row must not lose the others' hour of work
            say(f"{label} failed after {fmt_duration(time.time() - t)}: {type(e).__name__}: {e}")
            out = RowOutcome(row, list(seeds[: len(results)]), results, verdict="untestable here",
                             reason=f"seed {seed} failed: {type(e).__name__}: {e}", error=repr(e))
            out.seconds = time.time() - t0
            return out
        results.append(res)
        shown = ", ".join(f"{tt.key}={res.numbers[tt.key]:+.3f}" for tt in row.tests
                          if isinstance(res.numbers.get(tt.key), float) and math.isfinite(res.numbers[tt.key]))
        say(f"{label} done in {fmt_duration(time.time() - t)}: {shown}")
    out = judge(row, list(seeds), results)
    out.seconds = time.time() - t0
    say(f"claims: {row.key} → {out.verdict} ({out.reason}) in {fmt_duration(out.seconds)}")
    return out


def load_average() -> str:
    """'1.23 / 0.98 / 0.75' (1, 5, 15 min), or 'n/a' where the OS has none."""
    try:
        return " / ".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:
        return "n/a"


class BaseModels(dict):
    """Base model folders by size name, resolved (built once and cached) on first use, so a
    run builds only the sizes its rows ask for."""

    def __missing__(self, size: str) -> str:
        from alignlab.resolve import model_path

        self[size] = model_path(f"{MODEL_SCHEME}{size}")
        return self[size]


MODEL_SCHEME = "testbed:"  # the resolver's name of the built-in base models


def run_all(rows: Sequence[ClaimRow], out_dir: Path, seeds: Sequence[int], quick: bool,
            on_row: Callable[[list[RowOutcome], dict[str, Any]], object] | None = None,
            shared: dict[str, Any] | None = None, done: dict[str, RowOutcome] | None = None
            ) -> tuple[list[RowOutcome], dict[str, Any]]:
    """Run every row; returns the outcomes and the run's facts (time, load, models).
    `on_row(outcomes so far, facts so far)` runs after each row (e.g. to write partial results);
    `shared` seeds the rows' shared dict (e.g. {"data_root": folder of the public data files});
    `done`: rows an earlier run in this folder measured, taken as they are."""
    from alignlab.threads import cpu_threads

    t0, load0 = time.time(), load_average()
    say(f"claims: {len(rows)} row(s) × {len(seeds)} seed(s), {'quick' if quick else 'full'} settings → {out_dir}")
    models = BaseModels()

    def facts() -> dict[str, Any]:
        return {"seconds": round(time.time() - t0, 1), "load_average_start": load0, "load_average_end": load_average(),
                "seeds": list(seeds), "quick": quick, "models": dict(models), "cpu_count": os.cpu_count(),
                "reused": [o.row.key for o in outcomes if o.row.key in (done or {})]}

    ctx_shared: dict[str, Any] = dict(shared or {})
    outcomes = []
    with cpu_threads(1):  # tiny models: one thread per process is fastest, and far faster under load
        for i, row in enumerate(rows, 1):
            if done and row.key in done:
                o = done[row.key]
                say(f"claims: row {i}/{len(rows)} {row.key} — measured by the earlier run in {out_dir} "
                    f"({o.verdict}, {fmt_duration(o.seconds)}); not measured again")
                outcomes.append(o)
            else:
                say(f"claims: row {i}/{len(rows)} {row.key} — {row.paper}")
                ctx = RowContext(out_dir / "runs" / row.key, quick, models, ctx_shared)
                outcomes.append(run_row(row, ctx, seeds))
            if on_row is not None and i < len(rows):
                on_row(outcomes, facts())
    return outcomes, facts()
