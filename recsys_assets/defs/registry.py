"""Tracking, registration as challenger, the promotion gate and the champion."""

import json
from pathlib import Path

import dagster as dg

from recsys_assets import settings
from recsys_assets.defs.resources import StorageResource
from recsys_assets.defs.tracking import MlflowResource
from recsys_runtime import bundle_checks
from recsys_runtime.bundle import BundleError, load_bundle
from recsys_training import promotion
from recsys_training.evaluation import evaluate
from recsys_training.ranker import TrainingSet, ranking_auc
from recsys_training.split import SERVING, Split


def _metrics(summary: dict) -> dict:
    user, detail = summary["user"]["model"], summary["detail"]["model"]
    return {
        "ndcg@10": user["ndcg@10"], "recall@10": user["recall@10"], "hr@10": user["hr@10"],
        "coverage@10": user["coverage@10"], "detail_ndcg@10": detail["ndcg@10"],
        "detail_recall@10": detail["recall@10"], "auc": summary.get("ranking_auc"), "evaluated_users": user["users"],
    }


@dg.asset(group_name="registry", kinds={"mlflow"})
def challenger(context: dg.AssetExecutionContext, mlflow_tracking: MlflowResource, storage: StorageResource,
               model_bundle: str, evaluation_summary: dict, data_quality_report: dict, ranking_model: dict) -> dict:
    """Tracks the training run in MLflow (params, metrics, quality score, code and data versions,
    the bundle as artifacts), registers the bundle and points the ``challenger`` alias at it."""
    registry = mlflow_tracking.registry()
    uploaded = mlflow_tracking.upload_backlog(context, registry)
    manifest = json.loads((Path(model_bundle) / "manifest.json").read_text())
    version = manifest["version"]
    data_versions = {}
    for key in ("raw_items", "raw_interactions"):
        record = context.instance.get_latest_materialization_event(dg.AssetKey(key))
        if record is not None and record.asset_materialization is not None:
            data_versions[key] = record.asset_materialization.tags.get("dagster/data_version", "")
    metrics = {**_metrics(evaluation_summary), "data_quality_score": data_quality_report["score"]}
    for name, values in evaluation_summary["user"]["baselines"].items():
        if "ndcg@10" in values:
            metrics[f"baseline_{name}_ndcg@10"] = values["ndcg@10"]
    record = {
        "version": version,
        "bundle_path": model_bundle,
        "summary_path": str(storage.path("evaluation", "summary.json")),
        "params": {"bundle_version": version, "ranker_rounds": ranking_model["info"]["rounds"],
                   "seed": settings.seed(), "source": settings.source_kind(), "per_route": manifest.get("per_route"),
                   "items": manifest["items"], "users": manifest["users"],
                   "collaborative_model": manifest.get("collaborative", {}).get("model"),
                   "content_index": manifest.get("content_index", {}).get("kind")},
        "metrics": metrics,
        "tags": {"code_version": manifest.get("code_version", "unknown"), "dagster_run_id": context.run_id,
                 "dagster_job": context.run.job_name, **{f"data_version.{k}": v for k, v in data_versions.items()}},
    }
    logged = mlflow_tracking.log_training(context, record)
    registry.register(version, {"path": model_bundle, "metrics": metrics, "run_id": logged.get("run_id"),
                                "mlflow_version": logged.get("mlflow_version"), "mlflow_status": logged["status"],
                                "dagster_run_id": context.run_id, "data_versions": data_versions})
    context.add_output_metadata({
        "version": version, "mlflow_status": logged["status"], "mlflow_run_id": logged.get("run_id") or "",
        "mlflow_model_version": logged.get("mlflow_version") or "", "backlog_uploaded": uploaded,
        "ndcg@10": metrics["ndcg@10"], "data_quality_score": metrics["data_quality_score"],
    })
    return {"version": version, "path": model_bundle, "metrics": metrics, **logged}


def _record_gate(mlflow_tracking: MlflowResource, challenger: dict, check: str, result: bundle_checks.GateResult) -> None:
    """Each gate outcome is a tag on the challenger's MLflow model version, when there is one."""
    if not challenger.get("mlflow_version"):
        return
    try:
        mlflow_tracking.mlflow_registry().tag_version(
            challenger["mlflow_version"], f"gate.{check}", ("passed: " if result.passed else "failed: ") + result.reason)
    except Exception:  # noqa: BLE001 - tags are a convenience; the check result is the record
        pass


def _check_result(mlflow_tracking: MlflowResource, challenger: dict, check: str,
                  result: bundle_checks.GateResult) -> dg.AssetCheckResult:
    _record_gate(mlflow_tracking, challenger, check, result)
    return dg.AssetCheckResult(passed=bool(result.passed), description=result.reason,
                               metadata={"reason": result.reason, **{k: v for k, v in result.numbers.items() if v is not None}})


@dg.asset_check(asset=challenger, blocking=True,
                additional_ins={"interactions_split": dg.AssetIn(), "recall_candidates": dg.AssetIn()},
                description="Beats the champion on the same split and the same ranker labels: ndcg gain, recall "
                            "tolerance, AUC within 5%.")
def beats_champion(challenger: dict, interactions_split: dict[str, Split], recall_candidates: TrainingSet,
                   mlflow_tracking: MlflowResource) -> dg.AssetCheckResult:
    registry = mlflow_tracking.registry(with_mlflow=False)
    champion_version = registry.file.champion
    champion = None
    if champion_version and champion_version != challenger["version"]:
        entry = registry.file.version(champion_version)
        try:
            model = load_bundle(entry["path"], ranker_cache=settings.ranker_cache())
            summary = evaluate(model, interactions_split[SERVING], with_baselines=False)
            champion = {**_metrics(summary), "auc": ranking_auc(model.ranker, recall_candidates)}
        except (BundleError, OSError) as error:
            champion = None
            result = bundle_checks.GateResult(False, f"champion {champion_version} cannot be evaluated: {error}")
            return _check_result(mlflow_tracking, challenger, "beats_champion", result)
    result = promotion.compare_with_champion(challenger["metrics"], champion, settings.gate_thresholds())
    return _check_result(mlflow_tracking, challenger, "beats_champion", result)


@dg.asset_check(asset=challenger, blocking=True, additional_ins={"interactions_split": dg.AssetIn()},
                description="At least RECSYS_MIN_EVAL_USERS (500) users evaluated, or all when fewer.")
def enough_evaluated_users(challenger: dict, interactions_split: dict[str, Split],
                           mlflow_tracking: MlflowResource) -> dg.AssetCheckResult:
    available = int(interactions_split[SERVING].test["user_id"].nunique())
    result = promotion.enough_users(int(challenger["metrics"]["evaluated_users"]), available, settings.gate_thresholds())
    return _check_result(mlflow_tracking, challenger, "enough_evaluated_users", result)


@dg.asset_check(asset=challenger, blocking=True,
                description="The data it was trained on scored at least RECSYS_MIN_QUALITY_SCORE (90).")
def trained_on_quality_data(challenger: dict, mlflow_tracking: MlflowResource) -> dg.AssetCheckResult:
    result = promotion.quality_ok(challenger["metrics"]["data_quality_score"], settings.gate_thresholds())
    return _check_result(mlflow_tracking, challenger, "trained_on_quality_data", result)


@dg.asset_check(asset=challenger, blocking=True,
                description="The bundle loads, matches its checksums and answers smoke queries.")
def bundle_loads_and_answers(challenger: dict, mlflow_tracking: MlflowResource) -> dg.AssetCheckResult:
    try:
        result = bundle_checks.smoke_queries(load_bundle(challenger["path"], ranker_cache=settings.ranker_cache()))
    except (BundleError, OSError, ValueError) as error:
        result = bundle_checks.GateResult(False, f"bundle does not load: {error}")
    return _check_result(mlflow_tracking, challenger, "bundle_loads_and_answers", result)


@dg.asset_check(asset=challenger, blocking=True,
                description="p95 of in-process requests under RECSYS_LATENCY_BUDGET_MS (10 ms).")
def latency_within_budget(challenger: dict, mlflow_tracking: MlflowResource) -> dg.AssetCheckResult:
    thresholds = settings.gate_thresholds()
    model = load_bundle(challenger["path"], ranker_cache=settings.ranker_cache())
    result = bundle_checks.latency(model, thresholds.latency_requests, thresholds.latency_budget_ms)
    return _check_result(mlflow_tracking, challenger, "latency_within_budget", result)


@dg.asset(group_name="registry", kinds={"mlflow"})
def champion(context: dg.AssetExecutionContext, mlflow_tracking: MlflowResource, challenger: dict) -> dict:
    """Moves the ``champion`` alias to the challenger; runs only when every gate check passed."""
    registry = mlflow_tracking.registry()
    previous = registry.file.champion
    registry.promote(challenger["version"], reason="passed the promotion gate")
    context.add_output_metadata({"version": challenger["version"], "previous": previous or "none",
                                 "ndcg@10": challenger["metrics"]["ndcg@10"],
                                 "registry": dg.MetadataValue.path(str(mlflow_tracking.registry_path))})
    return {"version": challenger["version"], "previous": previous}
