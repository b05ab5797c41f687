"""MLflow through dagster-mlflow: one MLflow run per Dagster run, and the model registry."""

from pathlib import Path
from types import SimpleNamespace

import dagster as dg

from recsys_registry.registry import MlflowRegistry, ModelRegistry
from recsys_training import tracking


class MlflowResource(dg.ConfigurableResource):
    """Where training runs are tracked and bundles registered (MLFLOW_TRACKING_URI; default a
    SQLite store in the models directory)."""

    tracking_uri: str
    experiment_name: str = "recsys"
    registered_model: str = "recsys"
    models_dir: str

    @property
    def backlog_dir(self) -> Path:
        return Path(self.models_dir) / "mlflow_backlog"

    @property
    def registry_path(self) -> Path:
        return Path(self.models_dir) / "model_registry.json"

    def _artifact_root(self) -> Path | None:
        if self.tracking_uri.startswith(("sqlite:", "file:")) or "://" not in self.tracking_uri:
            return Path(self.models_dir) / "mlartifacts"
        return None

    def mlflow_registry(self) -> MlflowRegistry:
        return MlflowRegistry(self.tracking_uri, self.registered_model)

    def registry(self, with_mlflow: bool = True) -> ModelRegistry:
        """The JSON registry, joined to MLflow when it answers."""
        if not with_mlflow:
            return ModelRegistry(self.registry_path)
        try:
            mlflow_side = self.mlflow_registry()
            mlflow_side.ensure_model()
        except Exception:  # noqa: BLE001 - an unreachable MLflow must not stop the registry file
            mlflow_side = None
        return ModelRegistry(self.registry_path, mlflow_side)

    def log_gate_numbers(self, run_id: str, check: str, numbers: dict) -> None:
        """A gate check's numbers (intervals, thresholds) as metrics of the challenger's MLflow run."""
        tracking.configure_client(self.tracking_uri)
        tracking.log_metrics(run_id, {f"gate.{check}.{k}": v for k, v in numbers.items()
                                      if isinstance(v, int | float) and not isinstance(v, bool)})

    def log_training(self, context: dg.AssetExecutionContext, record: dict) -> dict:
        """Log ``record`` into this Dagster run's MLflow run (dagster-mlflow's ``MlFlow``) and
        create a registered model version. On any MLflow failure the record goes to the backlog."""
        from dagster_mlflow.resources import MlFlow

        try:
            tracking.configure_client(self.tracking_uri)
            tracking.ensure_experiment(self.experiment_name, self._artifact_root())
            adapter = SimpleNamespace(
                log=context.log, dagster_run=SimpleNamespace(job_name=context.run.job_name), run_id=context.run_id,
                resource_config={"experiment_name": self.experiment_name, "mlflow_tracking_uri": self.tracking_uri,
                                 "env_to_tag": [], "extra_tags": {}},
            )
            run = MlFlow(adapter)
            try:
                run_id, artifact_uri = tracking.log_active_run(record)
            finally:
                run.end_run()
            mlflow_version = self.mlflow_registry().create_version(run_id, artifact_uri, {"bundle_version": record["version"]})
            return {"status": "logged", "run_id": run_id, "mlflow_version": mlflow_version}
        except Exception as error:  # noqa: BLE001 - training must finish when MLflow is down
            path = tracking.write_backlog(self.backlog_dir, record["version"], record, repr(error))
            context.log.warning(f"MLflow unreachable ({error!r}); recorded to {path} for a later upload")
            return {"status": "pending", "backlog": str(path), "error": repr(error)}

    def upload_backlog(self, context: dg.AssetExecutionContext, registry: ModelRegistry) -> int:
        """Upload records left by runs during an outage; each becomes a run and a model version."""
        pending = tracking.backlog(self.backlog_dir)
        if not pending or registry.mlflow is None:
            return 0
        import json

        uploaded = 0
        experiment_id = tracking.ensure_experiment(self.experiment_name, self._artifact_root())
        for path in pending:
            record = json.loads(path.read_text())
            if not Path(record["bundle_path"]).exists():
                context.log.warning(f"backlog {path.name}: bundle {record['bundle_path']} is gone; kept for inspection")
                continue
            try:
                run_id, artifact_uri = tracking.log_record_in_new_run(record, experiment_id)
                mlflow_version = registry.mlflow.create_version(run_id, artifact_uri, {"bundle_version": record["version"]})
            except Exception as error:  # noqa: BLE001 - keep the record for the next run
                context.log.warning(f"backlog {path.name} not uploaded: {error!r}")
                continue
            entry = registry.file.data["versions"].get(record["version"])
            if entry is not None:
                entry.update({"run_id": run_id, "mlflow_version": mlflow_version, "mlflow_status": "logged"})
                for alias, version in registry.file.data["aliases"].items():
                    if version == record["version"]:
                        registry.mlflow.set_alias(alias, mlflow_version)
            registry.file.save()
            path.unlink()
            uploaded += 1
        return uploaded

