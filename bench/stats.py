"""Order statistics for latencies and repeated runs (no numpy: the harness adds no dependency)."""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence


def percentile(values: Sequence[float], pct: float) -> float:
    """The nearest-rank percentile: an observed value, so p99 of 100 samples is the worst but one.

    Returns NaN for no samples, which the report prints as a dash.
    """
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = max(1, math.ceil(pct / 100 * len(ordered)))
    return ordered[rank - 1]


def median(values: Sequence[float]) -> float:
    """Median of the repeats that produced a number (NaN runs are failures, left out)."""
    finite = [v for v in values if not math.isnan(v)]
    return statistics.median(finite) if finite else math.nan
