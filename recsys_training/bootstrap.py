"""Paired bootstrap intervals of a metric's difference between two models on the same users.

Two models evaluated on one split give one number per user each; their difference per user is
what the promotion gate judges. Resampling users (with replacement) gives the spread of its mean,
so a gain smaller than the models' own noise is not mistaken for an improvement.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

RESAMPLES = 2_000
LEVEL = 0.95
_CHUNK_CELLS = 4_000_000  # resamples x users drawn at a time, so memory stays bounded


@dataclass(frozen=True)
class Interval:
    """The mean of a per-user difference and its two-sided bootstrap interval."""

    mean: float
    low: float
    high: float
    users: int
    resamples: int
    level: float

    def as_numbers(self, prefix: str) -> dict[str, float]:
        return {f"{prefix}_diff": self.mean, f"{prefix}_diff_low": self.low, f"{prefix}_diff_high": self.high}

    def describe(self) -> str:
        return f"{self.mean:+.4f} [{self.low:+.4f}, {self.high:+.4f}]"


def paired_interval(challenger: np.ndarray, reference: np.ndarray, resamples: int = RESAMPLES,
                    level: float = LEVEL, seed: int = 0) -> Interval:
    """Percentile interval of ``mean(challenger - reference)`` over users resampled with
    replacement; both arrays hold one value per user, in the same user order."""
    challenger = np.asarray(challenger, dtype=np.float64)
    reference = np.asarray(reference, dtype=np.float64)
    if challenger.shape != reference.shape or challenger.ndim != 1:
        raise ValueError(f"paired values need the same users: shapes {challenger.shape} and {reference.shape}")
    n = len(challenger)
    if n == 0:
        raise ValueError("no users to compare")
    diff = challenger - reference
    rng = np.random.default_rng(seed)
    means = np.empty(resamples)
    step = max(1, _CHUNK_CELLS // n)
    for start in range(0, resamples, step):
        size = min(step, resamples - start)
        means[start : start + size] = diff[rng.integers(0, n, (size, n))].mean(axis=1)
    tail = (1 - level) / 2
    low, high = np.quantile(means, [tail, 1 - tail])
    return Interval(float(diff.mean()), float(low), float(high), n, resamples, level)
