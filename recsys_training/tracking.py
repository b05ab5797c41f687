"""Logging a trained bundle to MLflow, with a local backlog when MLflow cannot be reached."""

from __future__ import annotations

import json
import time
from pathlib import Path

MAX_PARAM_LENGTH = 500


def metric_name(name: str) -> str:
    """MLflow names allow no '@': ``ndcg@10`` is logged as ``ndcg_at_10``."""
    return name.replace("@", "_at_")


def configure_client(tracking_uri: str) -> None:
    """Point MLflow at ``tracking_uri`` (how fast it gives up on a server that is down is the
    process settings' ``configure_libraries``)."""
    import mlflow

    mlflow.set_tracking_uri(tracking_uri)


def ensure_experiment(name: str, artifact_root: Path | None) -> str:
    """The experiment id, creating it with a local artifact root for file/SQLite stores."""
    import mlflow

    experiment = mlflow.get_experiment_by_name(name)
    if experiment is not None:
        return experiment.experiment_id
    location = artifact_root.resolve().as_uri() if artifact_root is not None else None
    return mlflow.create_experiment(name, artifact_location=location)


def log_active_run(record: dict) -> tuple[str, str]:
    """Log params, metrics, tags and the bundle into the active run; (run_id, bundle artifact uri)."""
    import mlflow

    params = {k: str(v)[:MAX_PARAM_LENGTH] for k, v in record["params"].items()}
    mlflow.log_params(params)
    mlflow.log_metrics({metric_name(k): float(v) for k, v in record["metrics"].items() if v is not None})
    mlflow.set_tags({k: str(v) for k, v in record["tags"].items()})
    mlflow.log_artifacts(record["bundle_path"], artifact_path="bundle")
    if record.get("summary_path") and Path(record["summary_path"]).exists():
        mlflow.log_artifact(record["summary_path"], artifact_path="evaluation")
    run = mlflow.active_run()
    return run.info.run_id, mlflow.get_artifact_uri("bundle")


def log_record_in_new_run(record: dict, experiment_id: str) -> tuple[str, str]:
    """For the backlog: a fresh run tagged with the Dagster run it came from."""
    import mlflow

    with mlflow.start_run(experiment_id=experiment_id, run_name=record["tags"].get("dagster_job", "backlog"),
                          tags={"dagster_run_id": record["tags"].get("dagster_run_id", ""), "uploaded_from": "backlog"}):
        return log_active_run(record)


def log_metrics(run_id: str, metrics: dict[str, float]) -> None:
    """Numbers added to an existing run (names through ``metric_name``)."""
    import mlflow
    from mlflow.entities import Metric

    stamp = int(time.time() * 1000)
    entities = [Metric(metric_name(k), float(v), stamp, 0) for k, v in metrics.items()]
    mlflow.MlflowClient().log_batch(run_id, metrics=entities)


def write_backlog(directory: Path, version: str, record: dict, error: str) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{version}.json"
    path.write_text(json.dumps({**record, "version": version, "error": error}, indent=2, default=str))
    return path


def backlog(directory: Path) -> list[Path]:
    return sorted(directory.glob("*.json")) if directory.exists() else []
