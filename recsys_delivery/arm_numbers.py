"""The per-arm counters a rollout judges, read from the replicas' Prometheus text and summed.

A snapshot is a plain dict (it is stored in the rollout's state file): counters by arm, the latency
histogram's cumulative bucket counts by arm, and the shadow scorer's counts. A stage judges the
difference between the snapshot taken when it began and the latest one.
"""

from __future__ import annotations

import math

from prometheus_client.parser import text_string_to_metric_families

ARMS = ("primary", "candidate")
COUNTERS = {"recsys_exposures": "lists", "recsys_arm_clicked_lists": "clicked"}


def _empty() -> dict:
    arms = {arm: {"lists": 0.0, "clicked": 0.0, "error": 0.0, "fallback": 0.0, "latency": {}} for arm in ARMS}
    return {"arms": arms, "shadow": {"scored": 0.0, "errors": 0.0, "latency": {}}}


def snapshot(texts: list[str]) -> dict:
    """The replicas' counters summed into one snapshot."""
    out = _empty()
    for text in texts:
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                _add(out, sample.name, sample.labels, sample.value)
    return out


def _add(out: dict, name: str, labels: dict, value: float) -> None:
    arm = out["arms"].get(labels.get("arm", ""))
    if name.endswith("_total") and name.removesuffix("_total") in COUNTERS and arm is not None:
        arm[COUNTERS[name.removesuffix("_total")]] += value
    elif name == "recsys_arm_degraded_total" and arm is not None and labels.get("kind") in ("error", "fallback"):
        arm[labels["kind"]] += value
    elif name == "recsys_arm_latency_seconds_bucket" and arm is not None:
        arm["latency"][labels["le"]] = arm["latency"].get(labels["le"], 0.0) + value
    elif name == "recsys_shadow_latency_seconds_count":
        out["shadow"]["scored"] += value
    elif name == "recsys_shadow_errors_total":
        out["shadow"]["errors"] += value
    elif name == "recsys_shadow_latency_seconds_bucket":
        out["shadow"]["latency"][labels["le"]] = out["shadow"]["latency"].get(labels["le"], 0.0) + value


def difference(now: dict, start: dict) -> tuple[dict, bool]:
    """``now - start``, and whether a counter went down (a replica restarted: the caller starts
    counting the stage again from ``now``)."""
    out, reset = _empty(), False

    def minus(a: float, b: float) -> float:
        nonlocal reset
        if a < b:
            reset = True
        return a - b

    for arm in ARMS:
        for key in ("lists", "clicked", "error", "fallback"):
            out["arms"][arm][key] = minus(now["arms"][arm][key], start["arms"][arm][key])
        out["arms"][arm]["latency"] = {le: minus(c, start["arms"][arm]["latency"].get(le, 0.0))
                                       for le, c in now["arms"][arm]["latency"].items()}
    for key in ("scored", "errors"):
        out["shadow"][key] = minus(now["shadow"][key], start["shadow"][key])
    out["shadow"]["latency"] = {le: minus(c, start["shadow"]["latency"].get(le, 0.0))
                                for le, c in now["shadow"]["latency"].items()}
    return out, reset


def quantile_ms(buckets: dict[str, float], q: float) -> float | None:
    """The upper bound (ms) of the histogram bucket holding the q-quantile; None without
    observations; inf when it lies past the last finite bucket."""
    ordered = sorted(((math.inf if le == "+Inf" else float(le)), count) for le, count in buckets.items())
    total = ordered[-1][1] if ordered else 0.0
    if total <= 0:
        return None
    for bound, count in ordered:
        if count >= q * total:
            return bound * 1000
    return math.inf
