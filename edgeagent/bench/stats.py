"""Order statistics for benchmark timings: `percentile(values, q)`.

Nearest rank on the sorted values (no interpolation), so a reported p95 is a
time that was actually measured. Not covered: confidence intervals.
"""

from __future__ import annotations

from collections.abc import Sequence


def percentile(values: Sequence[float], q: float) -> float:
    """The value at quantile `q` (0..1) of `values` (nearest rank; not empty)."""
    ordered = sorted(values)
    k = min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))
    return ordered[k]
