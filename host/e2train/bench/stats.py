"""Confidence intervals across seeds.

A benchmark grid has few seeds (2--5), so the interval is Student's t on the seed means:
mean +- t_{1-a/2, n-1} * s / sqrt(n), with s the sample standard deviation (ddof=1). A
bootstrap needs many more samples than that to cover its nominal level; the t interval is
exact when the per-seed results are normal and is the usual choice in the literature at this
n. With one seed there is no interval: the half-width is NaN and the report says "n=1".
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

from scipy import stats as _st


@dataclass(frozen=True)
class Interval:
    mean: float
    half: float        # half-width; NaN when n < 2
    n: int
    level: float = 0.95

    @property
    def lo(self) -> float:
        return self.mean - self.half

    @property
    def hi(self) -> float:
        return self.mean + self.half

    def fmt(self, scale: float = 1.0, digits: int = 2) -> str:
        if self.n == 0:
            return "-"
        if math.isnan(self.half):
            return f"{self.mean * scale:.{digits}f} (n=1)"
        return f"{self.mean * scale:.{digits}f} ± {self.half * scale:.{digits}f}"


def t_interval(samples: Sequence[float], level: float = 0.95) -> Interval:
    """Student-t confidence interval of the mean of ``samples`` (one value per seed)."""
    if not 0 < level < 1:
        raise ValueError(f"confidence level must lie in (0, 1), not {level}")
    xs = [float(x) for x in samples]
    if any(math.isnan(x) for x in xs):
        raise ValueError("t_interval: NaN among the samples; drop or report missing runs first")
    n = len(xs)
    if n == 0:
        return Interval(math.nan, math.nan, 0, level)
    mean = math.fsum(xs) / n
    if n == 1:
        return Interval(mean, math.nan, 1, level)
    s = math.sqrt(math.fsum((x - mean) ** 2 for x in xs) / (n - 1))
    t = float(_st.t.ppf(0.5 + level / 2, n - 1))
    return Interval(mean, t * s / math.sqrt(n), n, level)
