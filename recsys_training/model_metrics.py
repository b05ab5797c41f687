"""Typed records passed between the evaluation, the registry and the promotion gate."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class ModelMetrics:
    """A model's offline numbers on one split: what is logged to MLflow, stored in the registry
    and compared by the gate."""

    ndcg: float
    recall: float
    hr: float
    coverage: float
    detail_ndcg: float
    detail_recall: float
    evaluated_users: int
    auc: float | None = None
    data_quality_score: float | None = None
    baseline_ndcg: dict[str, float] = field(default_factory=dict)

    @classmethod
    def from_summary(cls, summary: dict, auc: float | None = None,
                     data_quality_score: float | None = None) -> ModelMetrics:
        """From an ``evaluate`` summary (``auc``: the ranker's, when the summary has none)."""
        user, detail = summary["user"]["model"], summary["detail"]["model"]
        baselines = {name: values["ndcg@10"] for name, values in summary["user"].get("baselines", {}).items()
                     if "ndcg@10" in values}
        return cls(ndcg=user["ndcg@10"], recall=user["recall@10"], hr=user["hr@10"], coverage=user["coverage@10"],
                   detail_ndcg=detail["ndcg@10"], detail_recall=detail["recall@10"],
                   evaluated_users=int(user["users"]), auc=summary.get("ranking_auc", auc),
                   data_quality_score=data_quality_score, baseline_ndcg=baselines)

    def as_dict(self) -> dict[str, float | int | None]:
        """Flat names as MLflow and the registry file show them (``ndcg@10``, ``baseline_ease_ndcg@10``)."""
        out = {"ndcg@10": self.ndcg, "recall@10": self.recall, "hr@10": self.hr, "coverage@10": self.coverage,
               "detail_ndcg@10": self.detail_ndcg, "detail_recall@10": self.detail_recall, "auc": self.auc,
               "evaluated_users": self.evaluated_users}
        if self.data_quality_score is not None:
            out["data_quality_score"] = self.data_quality_score
        out.update({f"baseline_{name}_ndcg@10": value for name, value in self.baseline_ndcg.items()})
        return out


@dataclass(frozen=True)
class RegisteredModel:
    """A bundle registered as challenger: where it is, its numbers, and its MLflow side."""

    version: str
    path: str
    metrics: ModelMetrics
    mlflow_status: str
    mlflow_run_id: str | None = None
    mlflow_version: str | None = None
