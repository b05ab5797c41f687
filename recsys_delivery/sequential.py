"""An always-valid confidence sequence for the difference of two click rates.

The normal-mixture boundary (Robbins; Howard et al. 2021, "Time-uniform, nonparametric,
nonasymptotic confidence sequences") applied to the plug-in estimate of the difference, as in
Waudby-Smith et al. 2023 ("Time-uniform central limit theory"): with ``I = 1 / Var(d)`` the
information gathered so far, the interval

    d  +-  sqrt(Var(d)) * sqrt((1 + 1 / (tau2 * I)) * log((1 + tau2 * I) / alpha**2))

covers the true difference at every look simultaneously with probability ``1 - alpha``
(asymptotically), so a rollout may look at every tick and stop whenever it likes without
inflating its false alarms. ``tau2`` only moves where the interval is tightest; it is fixed in
advance from ``planned_lists``, never from the data.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

BERNOULLI_MAX_VARIANCE = 0.25


@dataclass(frozen=True)
class Interval:
    estimate: float
    low: float
    high: float
    candidate_rate: float
    primary_rate: float
    candidate_lists: int
    primary_lists: int

    def as_dict(self) -> dict:
        return {k: (round(v, 6) if isinstance(v, float) else v) for k, v in self.__dict__.items()}


def mixture_scale(alpha: float, planned_lists: int) -> float:
    """``tau2`` that makes the boundary tightest when each arm has ``planned_lists`` lists at the
    largest Bernoulli variance (a constant, so the sequence stays valid)."""
    planned_information = planned_lists / (2 * BERNOULLI_MAX_VARIANCE)
    log_term = -2 * math.log(alpha)
    return (log_term + math.log(log_term + 1)) / planned_information


def click_rate_difference(candidate_clicked: int, candidate_lists: int, primary_clicked: int, primary_lists: int,
                          alpha: float = 0.05, planned_lists: int = 10_000) -> Interval:
    """The candidate's list click rate minus the primary's, with its (1 - alpha) confidence sequence.
    With no lists in an arm the interval is (-1, 1)."""
    if candidate_lists <= 0 or primary_lists <= 0:
        return Interval(0.0, -1.0, 1.0, 0.0, 0.0, max(candidate_lists, 0), max(primary_lists, 0))
    p_c, p_p = candidate_clicked / candidate_lists, primary_clicked / primary_lists
    # rates shrunk towards 1/2 by half a list keep the variance above 0 while the counts are small
    s_c, s_p = (candidate_clicked + 0.5) / (candidate_lists + 1), (primary_clicked + 0.5) / (primary_lists + 1)
    variance = s_c * (1 - s_c) / candidate_lists + s_p * (1 - s_p) / primary_lists
    information = 1.0 / variance
    tau2 = mixture_scale(alpha, planned_lists)
    radius = math.sqrt(variance) * math.sqrt((1 + 1 / (tau2 * information))
                                             * math.log((1 + tau2 * information) / alpha**2))
    estimate = p_c - p_p
    return Interval(estimate, max(-1.0, estimate - radius), min(1.0, estimate + radius), p_c, p_p,
                    candidate_lists, primary_lists)
