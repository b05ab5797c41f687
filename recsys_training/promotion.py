"""The promotion gate's decisions on evaluation numbers, as plain functions returning a ``GateResult``."""

from __future__ import annotations

from dataclasses import dataclass

from recsys_runtime.bundle_checks import GateResult
from recsys_training.model_metrics import ModelMetrics


@dataclass(frozen=True)
class GateThresholds:
    """What a challenger must reach; the Dagster layer fills it from the ``promotion_gate`` resource."""

    min_ndcg_gain: float = 0.002
    recall_tolerance: float = 0.005
    auc_relative_tolerance: float = 0.05
    min_eval_users: int = 500
    min_quality_score: float = 90.0
    latency_budget_ms: float = 10.0
    latency_requests: int = 1_000


def compare_with_champion(challenger: ModelMetrics, champion: ModelMetrics | None, t: GateThresholds) -> GateResult:
    """Both measured on the same split (the champion's AUC on the same ranker labels)."""
    if champion is None:
        return GateResult(True, "no champion yet: the first model is promoted on its other checks",
                          {"challenger_ndcg@10": challenger.ndcg})
    numbers = {
        "challenger_ndcg@10": challenger.ndcg, "champion_ndcg@10": champion.ndcg,
        "ndcg_gain": challenger.ndcg - champion.ndcg,
        "challenger_recall@10": challenger.recall, "champion_recall@10": champion.recall,
        "challenger_auc": challenger.auc, "champion_auc": champion.auc,
    }
    failures = []
    if numbers["ndcg_gain"] <= t.min_ndcg_gain:
        failures.append(f"ndcg@10 {challenger.ndcg:.4f} does not beat champion {champion.ndcg:.4f} "
                        f"by more than {t.min_ndcg_gain}")
    if challenger.recall < champion.recall - t.recall_tolerance:
        failures.append(f"recall@10 {challenger.recall:.4f} below champion {champion.recall:.4f} "
                        f"- {t.recall_tolerance}")
    if champion.auc and challenger.auc is not None:
        if challenger.auc < champion.auc * (1 - t.auc_relative_tolerance):
            failures.append(f"ranking AUC {challenger.auc:.4f} more than {t.auc_relative_tolerance:.0%} below "
                            f"champion {champion.auc:.4f}")
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
