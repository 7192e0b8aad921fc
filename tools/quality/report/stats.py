"""The report's statistics of paired changes: spread, the exact sign test, the bootstrap interval, their wording."""

from __future__ import annotations

import math
import statistics

import numpy as np

from .judges import RowCells, paired

BOOTSTRAP_DRAWS = 10_000


def sign_test(changes: list[float]) -> float:
    """Two-sided exact sign test of paired changes against "no change": P(a split at least this uneven) under
    Binomial(n, 1/2); ties (exactly 0) are dropped. 1.0 for no untied pair."""
    untied = [change for change in changes if change != 0]
    n, k = len(untied), sum(change < 0 for change in untied)
    if n == 0:
        return 1.0
    tail = sum(math.comb(n, i) for i in range(min(k, n - k) + 1)) / 2 ** n
    return min(1.0, 2 * tail)


def bootstrap_interval(changes: list[float], draws: int = BOOTSTRAP_DRAWS, seed: int = 0) -> tuple[float, float]:
    """95 % percentile bootstrap interval of the mean paired change (the pairs resampled with replacement)."""
    values = np.asarray(changes, dtype=np.float64)
    means = np.random.default_rng(seed).choice(values, size=(draws, len(values))).mean(axis=1)
    low, high = np.percentile(means, [2.5, 97.5])
    return float(low), float(high)


def spread(values: list[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (0 for a single value)."""
    return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else 0.0


def mean_change(changes: list[float], digits: int = 2) -> str:
    return "-" if not changes else f"{round(statistics.fmean(changes), digits) + 0.0:+.{digits}f}"


def describe_change(changes: list[float]) -> str:
    """"−0.74 ± 0.05 (5 of 5 better)": mean ± sd over seeds, and on how many seeds FD fell (below 0.005: a tie)."""
    if not changes:
        return "-"
    mean, sd = spread(changes)
    better, worse = sum(c < -0.005 for c in changes), sum(c > 0.005 for c in changes)
    return f"{round(mean, 2) + 0.0:+.2f} ± {sd:.2f} ({better} better, {worse} worse of {len(changes)})"


def pooled_changes(per_seed: dict[str, dict[str, RowCells]], row: str, base: str, judge: str) -> list[float]:
    """Every paired change of `row` from `base` under `judge`, over every trained model and sampling seed."""
    return [change for found in per_seed.values() if row in found and base in found
            for change in paired(found[row], found[base], judge)]
