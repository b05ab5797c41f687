"""Tracking and registration as challenger, and the champion (after the checks of ``gate.py``)."""

import json
from pathlib import Path

import dagster as dg

from recsys_assets import settings
from recsys_assets.defs.resources import StorageResource
from recsys_assets.defs.tracking import MlflowResource
from recsys_training.model_metrics import ModelMetrics, RegisteredModel


@dg.asset(group_name="registry", kinds={"mlflow"})
def challenger(context: dg.AssetExecutionContext, mlflow_tracking: MlflowResource, storage: StorageResource,
               model_bundle: str, evaluation_summary: dict, data_quality_report: dict,
               ranking_model: dict) -> RegisteredModel:
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
    measured = ModelMetrics.from_summary(evaluation_summary, data_quality_score=data_quality_report["score"])
    metrics = measured.as_dict()
    record = {
        "version": version,
        "bundle_path": model_bundle,
        "summary_path": str(storage.path("evaluation", "summary.json")),
        "params": {"bundle_version": version, "ranker_rounds": ranking_model["info"]["rounds"],
                   "ranker_patience": ranking_model["info"].get("patience"),
                   "ranker_negative_fraction": ranking_model["info"].get("negative_fraction"),
                   "ranker_race_z": ranking_model["info"].get("race_z"),
                   "seed": settings.seed(), "source": settings.source_kind(), "per_route": manifest.get("per_route"),
                   "items": manifest["items"], "users": manifest["users"],
                   "collaborative_model": manifest.get("collaborative", {}).get("model"),
                   "content_index": manifest.get("content_index", {}).get("kind"),
                   "text_encoder_weights": manifest.get("text_encoder", {}).get("weights"),
                   "state_history": manifest.get("state_history"),
                   **{f"sequential_{k}": v for k, v in (manifest.get("sequential") or {}).items()},
                   **{f"ranker_{k}": v for k, v in ranking_model["info"].get("params", {}).items()},
                   "similar_ranker_rounds": (ranking_model.get("similar_info") or {}).get("rounds")},
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
    return RegisteredModel(version=version, path=model_bundle, metrics=measured, mlflow_status=logged["status"],
                           mlflow_run_id=logged.get("run_id"), mlflow_version=logged.get("mlflow_version"))


@dg.asset(group_name="registry", kinds={"mlflow"})
def champion(context: dg.AssetExecutionContext, mlflow_tracking: MlflowResource, challenger: RegisteredModel) -> dict:
    """Moves the ``champion`` alias to the challenger; runs only when every gate check passed."""
    registry = mlflow_tracking.registry()
    previous = registry.file.champion
    registry.promote(challenger.version, reason="passed the promotion gate")
    registry.record_retraining(context.run_id, context.run.tags.get("recsys/trigger", "manual"), "promoted",
                               challenger.version)
    context.add_output_metadata({"version": challenger.version, "previous": previous or "none",
                                 "ndcg@10": challenger.metrics.ndcg,
                                 "registry": dg.MetadataValue.path(str(mlflow_tracking.registry_path))})
    return {"version": challenger.version, "previous": previous}
