"""How much two ranked lists agree (the shadow model's against the served one)."""

from __future__ import annotations


def overlap_at_k(a: list, b: list, k: int = 10) -> float:
    return len(set(a[:k]) & set(b[:k])) / max(1, min(k, max(len(a[:k]), len(b[:k]))))


def rank_biased_overlap(a: list, b: list, p: float = 0.9, k: int = 10) -> float:
    """Truncated RBO (Webber et al. 2010) normalised to 1 for identical lists of length k."""
    total, weight_sum = 0.0, 0.0
    for d in range(1, k + 1):
        weight = p ** (d - 1)
        total += weight * len(set(a[:d]) & set(b[:d])) / d
        weight_sum += weight
    return total / weight_sum
