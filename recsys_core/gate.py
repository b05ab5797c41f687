"""The promotion gate's tests, as plain functions returning (passed, reason, numbers)."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np

from recsys_serving.recommender import Recommender


@dataclass
class GateResult:
    passed: bool
    reason: str
    numbers: dict = field(default_factory=dict)


@dataclass(frozen=True)
class GateThresholds:
    min_ndcg_gain: float = 0.002
    recall_tolerance: float = 0.005
    auc_relative_tolerance: float = 0.05
    min_eval_users: int = 500
    min_quality_score: float = 90.0
    latency_budget_ms: float = 10.0
    latency_requests: int = 1_000


def compare_with_champion(challenger: dict, champion: dict | None, t: GateThresholds) -> GateResult:
    """``challenger`` / ``champion``: {"ndcg@10", "recall@10", "auc"} on the same split."""
    if champion is None:
        return GateResult(True, "no champion yet: the first model is promoted on its other checks",
                          {"challenger_ndcg@10": challenger["ndcg@10"]})
    numbers = {
        "challenger_ndcg@10": challenger["ndcg@10"], "champion_ndcg@10": champion["ndcg@10"],
        "ndcg_gain": challenger["ndcg@10"] - champion["ndcg@10"],
        "challenger_recall@10": challenger["recall@10"], "champion_recall@10": champion["recall@10"],
        "challenger_auc": challenger.get("auc"), "champion_auc": champion.get("auc"),
    }
    failures = []
    if numbers["ndcg_gain"] <= t.min_ndcg_gain:
        failures.append(f"ndcg@10 {challenger['ndcg@10']:.4f} does not beat champion {champion['ndcg@10']:.4f} "
                        f"by more than {t.min_ndcg_gain}")
    if challenger["recall@10"] < champion["recall@10"] - t.recall_tolerance:
        failures.append(f"recall@10 {challenger['recall@10']:.4f} below champion {champion['recall@10']:.4f} "
                        f"- {t.recall_tolerance}")
    if champion.get("auc") and challenger.get("auc") is not None:
        if challenger["auc"] < champion["auc"] * (1 - t.auc_relative_tolerance):
            failures.append(f"ranking AUC {challenger['auc']:.4f} more than {t.auc_relative_tolerance:.0%} below "
                            f"champion {champion['auc']:.4f}")
    if failures:
        return GateResult(False, "; ".join(failures), numbers)
    return GateResult(True, f"ndcg@10 +{numbers['ndcg_gain']:.4f} over the champion", numbers)


def enough_users(evaluated: int, available: int, t: GateThresholds) -> GateResult:
    needed = min(t.min_eval_users, available)
    ok = evaluated >= needed
    return GateResult(ok, f"{evaluated} users evaluated, {needed} needed", {"evaluated": evaluated, "needed": needed})


def quality_ok(score: float, t: GateThresholds) -> GateResult:
    ok = score >= t.min_quality_score
    return GateResult(ok, f"data quality score {score:.1f} {'>=' if ok else '<'} {t.min_quality_score}",
                      {"score": score})


def smoke_queries(recommender: Recommender, k: int = 10) -> GateResult:
    """A known user, an unknown user, a known item and an unknown item answer sensibly."""
    comp = recommender.components
    problems = []
    user = str(comp.histories.users[len(comp.histories.users) // 2])
    seen = set(comp.items[comp.histories.row(len(comp.histories.users) // 2)[0]].tolist())
    known = recommender.recommend(user, k=k)
    if known.fallback or len(known.items) != k or len(set(known.items)) != k or seen & set(known.items):
        problems.append(f"user {user}: fallback={known.fallback}, {len(known.items)} items, seen items returned")
    item = str(comp.items[int(np.argmax(comp.timeline.counts))])
    similar = recommender.similar(item, k=k)
    if similar.fallback or len(similar.items) != k or item in similar.items:
        problems.append(f"similar({item}): fallback={similar.fallback}, {len(similar.items)} items")
    if recommender.recommend("__smoke_unknown_user__", k=k).fallback != "unknown user":
        problems.append("an unknown user does not fall back to popular items")
    if recommender.similar("__smoke_unknown_item__", k=k).fallback != "unknown item":
        problems.append("an unknown item does not fall back to popular items")
    if problems:
        return GateResult(False, "; ".join(problems))
    return GateResult(True, "4 smoke queries answered")


def latency(recommender: Recommender, requests: int, budget_ms: float, seed: int = 0) -> GateResult:
    """p95 of single in-process requests: a mix of user, detail and similar requests on sampled ids."""
    comp = recommender.components
    rng = np.random.default_rng(seed)
    users = comp.histories.users[rng.integers(0, len(comp.histories.users), requests)]
    items = comp.items[rng.integers(0, len(comp.items), requests)]
    kinds = rng.integers(0, 3, requests)
    recommender.recommend(str(users[0]))  # warm-up
    durations = np.empty(requests)
    for i in range(requests):
        started = time.perf_counter()
        if kinds[i] == 0:
            recommender.recommend(str(users[i]))
        elif kinds[i] == 1:
            recommender.recommend_detail(str(items[i]), user_id=str(users[i]))
        else:
            recommender.similar(str(items[i]))
        durations[i] = (time.perf_counter() - started) * 1000
    p50, p95, p99 = np.percentile(durations, [50, 95, 99])
    ok = p95 < budget_ms
    return GateResult(ok, f"p95 {p95:.2f} ms {'<' if ok else '>='} budget {budget_ms} ms over {requests} requests",
                      {"p50_ms": float(p50), "p95_ms": float(p95), "p99_ms": float(p99)})
