"""Interval maths and the verdict rule of `alignlab claims` (pure functions, hand-checkable).

Every number a claim row measures is one value per seed. Its 95 % interval is Student's t
interval over the seeds (the seeds are the independent repeats: training data draw, model
initialisation order, sampling). A claim is a set of tests, each a quantity (usually a paired
difference, method − baseline within one seed) with the direction the paper claims.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Literal

Direction = Literal["greater", "less"]
Outcome = Literal["supports", "inconclusive", "contradicts", "untestable", "unmeasured"]
Verdict = Literal["reproduced", "partly", "not", "untestable here"]
LEVEL = 0.95


@dataclass(frozen=True)
class Interval:
    """Mean of n values with its t interval [lo, hi]; lo = hi = nan when n < 2."""

    mean: float
    lo: float
    hi: float
    n: int
    sd: float

    def as_dict(self) -> dict[str, float]:
        return asdict(self)

    def text(self, digits: int = 3) -> str:
        """'+0.310 [+0.120, +0.500]' (or the mean alone when there is no interval)."""
        f = f"{{:+.{digits}f}}"
        if math.isnan(self.lo):
            return f.format(self.mean) if not math.isnan(self.mean) else "n/a"
        return f"{f.format(self.mean)} [{f.format(self.lo)}, {f.format(self.hi)}]"


def t_quantile(df: int, level: float = LEVEL) -> float:
    """Two-sided Student t critical value t_{df, (1+level)/2} (12.706 for df=1, 4.303 for df=2)."""
    from scipy.stats import t

    return float(t.ppf((1 + level) / 2, df))


def t_interval(values: Sequence[float], level: float = LEVEL) -> Interval:
    """mean ± t_{n-1,(1+level)/2} · s / √n, s the sample standard deviation (n − 1 divisor).

    Non-finite values (a seed that could not measure) are dropped first."""
    xs = [float(v) for v in values if v is not None and math.isfinite(float(v))]
    n = len(xs)
    if n == 0:
        return Interval(math.nan, math.nan, math.nan, 0, math.nan)
    mean = statistics.fmean(xs)
    if n < 2:
        return Interval(mean, math.nan, math.nan, 1, math.nan)
    sd = statistics.stdev(xs)
    half = t_quantile(n - 1, level) * sd / math.sqrt(n)
    return Interval(mean, mean - half, mean + half, n, sd)


def outcome(iv: Interval, direction: Direction) -> Outcome:
    """supports: the interval lies wholly on the claimed side of 0; contradicts: wholly on the
    other side; inconclusive: it contains 0; unmeasured: no interval (fewer than 2 values)."""
    if math.isnan(iv.lo):
        return "unmeasured"
    if direction == "greater":
        return "supports" if iv.lo > 0 else "contradicts" if iv.hi < 0 else "inconclusive"
    return "supports" if iv.hi < 0 else "contradicts" if iv.lo > 0 else "inconclusive"


def verdict(outcomes: Sequence[Outcome]) -> tuple[Verdict, str]:
    """The rule over the tests that could be judged here (outcome 'untestable': the row found
    the testbed cannot show that effect; 'unmeasured': no interval, fewer than 2 seeds):
    reproduced when every test supports the claim; partly when at least one does (or all
    judged ones do but another test was untestable); not when none does; untestable here when
    no test could be judged. Returns (verdict, the counts that decided it)."""
    n = len(outcomes)
    kinds = ("supports", "inconclusive", "contradicts", "untestable", "unmeasured")
    counts = {o: sum(1 for x in outcomes if x == o) for o in kinds}
    why = ", ".join(f"{c}/{n} {o}" for o, c in counts.items() if c) or "no test"
    if counts["unmeasured"]:
        return "untestable here", f"{why} (a 95 % interval needs ≥ 2 seeds)"
    judged = n - counts["untestable"]
    if judged == 0:
        return "untestable here", why
    if counts["supports"] == n:
        return "reproduced", why
    if counts["supports"]:
        return "partly", why
    return "not", why


def frontier_at(points: Sequence[tuple[float, float]], budget: float) -> float:
    """The best reward reachable within a drift budget along one run's curve.

    `points` = (drift, reward) in training order; the curve is the polyline through them.
    F(b) = max reward over every point of the polyline whose drift ≤ b (linear interpolation
    on a segment that crosses b). nan when even the first point exceeds the budget."""
    best = math.nan
    pts = list(points)
    for d, r in pts:
        if d <= budget and not r <= best:  # 'not <=' so that nan best is replaced
            best = r
    for (d0, r0), (d1, r1) in zip(pts, pts[1:]):
        if (d0 - budget) * (d1 - budget) < 0:  # the segment crosses the budget
            w = (budget - d0) / (d1 - d0)
            r = r0 + w * (r1 - r0)
            if not r <= best:
                best = r
    return best
