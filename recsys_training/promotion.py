"""The promotion gate's decisions on evaluation numbers, as plain functions returning a ``GateResult``."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from recsys_runtime.bundle_checks import GateResult
from recsys_training.bootstrap import RESAMPLES, paired_interval
from recsys_training.evaluation import PER_USER
from recsys_training.model_metrics import ModelMetrics


@dataclass(frozen=True)
class GateThresholds:
    """What a challenger must reach; the Dagster layer fills it from the ``promotion_gate`` resource.

    Model comparisons are paired bootstraps over the evaluated users: the lower end of the 95%
    interval of the ndcg@10 difference must exceed ``min_ndcg_gain``, the recall@10 difference's
    interval must not lie wholly below ``-recall_tolerance``, and against the champion the
    next-item detail page's ndcg@10 difference must not lie wholly below ``-detail_next_tolerance``."""

    min_ndcg_gain: float = 0.0
    recall_tolerance: float = 0.005
    detail_next_tolerance: float = 0.005
    auc_relative_tolerance: float = 0.05
    min_eval_users: int = 200
    allow_small_eval: bool = False
    bootstrap_resamples: int = RESAMPLES
    min_quality_score: float = 90.0
    latency_budget_ms: float = 10.0
    latency_requests: int = 1_000
    max_bundle_mb: float = 4_096.0
    max_loaded_memory_mb: float = 8_192.0


@dataclass(frozen=True)
class PairedMetrics:
    """One model's ndcg@10 and recall@10 per evaluated user (users sorted), from an evaluation."""

    users: np.ndarray
    ndcg: np.ndarray
    recall: np.ndarray

    @classmethod
    def from_summary(cls, summary: dict, baseline: str | None = None, view: str = "user") -> PairedMetrics | None:
        """The model's values, or a baseline's (None when that baseline was not computed), on the
        user lists or (``view="detail_next"``) on the next-item detail page."""
        per_user = summary[PER_USER] if view == "user" else summary[PER_USER].get(view)
        if per_user is None:
            return None
        values = per_user["model"] if baseline is None else per_user.get("baselines", {}).get(baseline)
        if values is None:
            return None
        return cls(np.asarray(per_user["users"]), np.asarray(values["ndcg@10"]), np.asarray(values["recall@10"]))


def paired_difference(challenger: PairedMetrics, reference: PairedMetrics, label: str,
                      t: GateThresholds) -> tuple[list[str], dict]:
    """Failures (empty when the challenger wins) and the intervals of the challenger against
    ``reference`` on the same users."""
    if not np.array_equal(challenger.users, reference.users):
        raise ValueError(f"{label}: the two evaluations cover different users; a paired comparison needs the same")
    ndcg = paired_interval(challenger.ndcg, reference.ndcg, t.bootstrap_resamples)
    recall = paired_interval(challenger.recall, reference.recall, t.bootstrap_resamples)
    failures = []
    if not ndcg.low > t.min_ndcg_gain:
        failures.append(f"ndcg@10 vs {label} {ndcg.describe()}: the 95% interval's lower end is not above "
                        f"{t.min_ndcg_gain}")
    if recall.high < -t.recall_tolerance:
        failures.append(f"recall@10 vs {label} {recall.describe()}: wholly below -{t.recall_tolerance}")
    return failures, {**ndcg.as_numbers(f"{label}_ndcg@10"), **recall.as_numbers(f"{label}_recall@10"),
                      "users_compared": ndcg.users, "bootstrap_resamples": ndcg.resamples,
                      "min_ndcg_gain": t.min_ndcg_gain, "recall_tolerance": t.recall_tolerance}


def compare_with_champion(challenger: ModelMetrics, champion: ModelMetrics | None, t: GateThresholds,
                          challenger_users: PairedMetrics | None = None,
                          champion_users: PairedMetrics | None = None,
                          challenger_next: PairedMetrics | None = None,
                          champion_next: PairedMetrics | None = None) -> GateResult:
    """Both measured on the same split and users (the champion's AUC on the same ranker labels);
    the ``*_next`` values: the next-item detail page, which must not be clearly worse."""
    if champion is None:
        return GateResult(True, "no champion yet: the first model is promoted on its other checks",
                          {"challenger_ndcg@10": challenger.ndcg})
    if challenger_users is None or champion_users is None:
        raise ValueError("comparing with the champion needs both models' per-user values")
    failures, numbers = paired_difference(challenger_users, champion_users, "champion", t)
    numbers.update({
        "challenger_ndcg@10": challenger.ndcg, "champion_ndcg@10": champion.ndcg,
        "challenger_recall@10": challenger.recall, "champion_recall@10": champion.recall,
        "challenger_auc": challenger.auc, "champion_auc": champion.auc,
    })
    if challenger_next is not None and champion_next is not None and len(challenger_next.users):
        if not np.array_equal(challenger_next.users, champion_next.users):
            raise ValueError("detail_next: the two evaluations cover different users")
        detail = paired_interval(challenger_next.ndcg, champion_next.ndcg, t.bootstrap_resamples)
        numbers.update({**detail.as_numbers("champion_detail_next_ndcg@10"),
                        "detail_next_tolerance": t.detail_next_tolerance})
        if detail.high < -t.detail_next_tolerance:
            failures.append(f"detail_next ndcg@10 vs champion {detail.describe()}: wholly below "
                            f"-{t.detail_next_tolerance}")
    if champion.auc and challenger.auc is not None:
        if challenger.auc < champion.auc * (1 - t.auc_relative_tolerance):
            failures.append(f"ranking AUC {challenger.auc:.4f} more than {t.auc_relative_tolerance:.0%} below "
                            f"champion {champion.auc:.4f}")
    if failures:
        return GateResult(False, "; ".join(failures), numbers)
    diff, low = numbers["champion_ndcg@10_diff"], numbers["champion_ndcg@10_diff_low"]
    return GateResult(True, f"ndcg@10 {diff:+.4f} over the champion (95% interval from {low:+.4f})", numbers)


GATED_BASELINES = ("most_pop", "ease")


def beats_baselines(challenger: PairedMetrics, baselines: dict[str, PairedMetrics | None],
                    t: GateThresholds) -> GateResult:
    """The challenger beats each of ``GATED_BASELINES`` that was computed, by the same paired rule."""
    failures, numbers, compared = [], {}, []
    for name in GATED_BASELINES:
        reference = baselines.get(name)
        if reference is None:
            numbers[f"{name}_skipped"] = 1
            continue
        lost, found = paired_difference(challenger, reference, name, t)
        failures += lost
        numbers.update(found)
        compared.append(name)
    if not compared:
        return GateResult(False, "no baseline was computed to compare with", numbers)
    if failures:
        return GateResult(False, "; ".join(failures), numbers)
    gains = ", ".join(f"{name} {numbers[f'{name}_ndcg@10_diff']:+.4f}" for name in compared)
    return GateResult(True, f"beats {', '.join(compared)} on ndcg@10 ({gains})", numbers)


def enough_users(evaluated: int, t: GateThresholds) -> GateResult:
    """At least ``min_eval_users`` evaluated users, whatever the data set's size; below it only
    ``allow_small_eval`` lets a model through (the caller records that override)."""
    numbers = {"evaluated": evaluated, "needed": t.min_eval_users, "override": int(t.allow_small_eval)}
    if evaluated >= t.min_eval_users:
        return GateResult(True, f"{evaluated} users evaluated, {t.min_eval_users} needed", numbers)
    if t.allow_small_eval:
        return GateResult(True, f"only {evaluated} users evaluated ({t.min_eval_users} needed): passed by the "
                                "RECSYS_ALLOW_SMALL_EVAL override", numbers)
    return GateResult(False, f"only {evaluated} users evaluated, {t.min_eval_users} needed (a small data set does "
                             "not waive it; RECSYS_ALLOW_SMALL_EVAL=1 overrides, and is recorded)", numbers)


def cost_ok(bundle_mb: float, loaded_memory_mb: float, t: GateThresholds) -> GateResult:
    """The bundle's size on disk and the memory of a process that loaded it, against budgets."""
    numbers = {"bundle_mb": bundle_mb, "loaded_memory_mb": loaded_memory_mb,
               "max_bundle_mb": t.max_bundle_mb, "max_loaded_memory_mb": t.max_loaded_memory_mb}
    failures = []
    if bundle_mb > t.max_bundle_mb:
        failures.append(f"bundle {bundle_mb:.0f} MB over the {t.max_bundle_mb:.0f} MB budget")
    if loaded_memory_mb > t.max_loaded_memory_mb:
        failures.append(f"{loaded_memory_mb:.0f} MB after loading, over the {t.max_loaded_memory_mb:.0f} MB budget")
    if failures:
        return GateResult(False, "; ".join(failures), numbers)
    return GateResult(True, f"bundle {bundle_mb:.1f} MB, {loaded_memory_mb:.0f} MB after loading", numbers)


def quality_ok(score: float, t: GateThresholds) -> GateResult:
    ok = score >= t.min_quality_score
    return GateResult(ok, f"data quality score {score:.1f} {'>=' if ok else '<'} {t.min_quality_score}",
                      {"score": score, "min_score": t.min_quality_score})
